"""The FHIR test server (tests/fhir_server/server.mjs: @medplum/fhir-router + MemoryRepository) as a
process the tests start, stop, restart and tune.

One server per test session (`shared_server()`); each test empties it with `reset()`.
"""

from __future__ import annotations

import atexit
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVER_DIR = Path(__file__).resolve().parents[1] / "fhir_server"
INSTALL_HINT = "npm ci --prefix tests/fhir_server"
TEST_AUTH = "bearer:fhir-test-token"
TEST_BASIC_AUTH = "basic:registry:s3cr:et"  # also accepted by the shared server


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (>= 20) is required for the FHIR tests and is not on PATH")
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        pytest.fail(f"the FHIR test server is not installed: run `{INSTALL_HINT}` (from the repository root)")
    return node


class FhirTestServer:
    """A running tests/fhir_server/server.mjs."""

    def __init__(
        self,
        *,
        auths: tuple[str, ...] = (TEST_AUTH, TEST_BASIC_AUTH),
        base: str = "/fhir",
        data_file: Path | None = None,
        smart: bool = False,
    ):
        self.auths, self.base, self.data_file, self.smart = auths, base, data_file, smart
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._admin_client: httpx.Client | None = None

    @property
    def auth(self) -> str | None:
        """REGISTRY_AUTH for this server (its first accepted credential)."""
        return self.auths[0] if self.auths else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/__admin"

    def start(self, timeout: float = 20.0) -> FhirTestServer:
        args = [_node(), "server.mjs", "--port", str(self.port), "--host", "127.0.0.1", "--base", self.base]
        for auth in self.auths:
            args += ["--auth", auth]
        if self.data_file is not None:
            args += ["--data-file", str(self.data_file)]
        if self.smart:
            args.append("--smart")
        self.process = subprocess.Popen(
            args, cwd=SERVER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ}
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"FHIR test server did not start (output so far: {line!r})")
            if selector.select(timeout=0.2):
                line += os.read(self.process.stdout.fileno(), 1)
        selector.close()
        self.port = int(line.decode().strip().split("=", 1)[1])
        return self

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL); the port number is kept for a restart."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _admin(self, call: str, json: Any = None, method: str = "POST") -> Any:
        if self._admin_client is None:
            self._admin_client = httpx.Client(timeout=5)
        response = self._admin_client.request(method, f"{self.admin_url}/{call}", json=json)
        response.raise_for_status()
        return response.json()

    def seed(self, name: str = "registry") -> int:
        """Stores tests/fhir_server/seeds/<name>.json (a registry's own data); returns how many resources."""
        return int(self._admin(f"seed?name={name}")["seeded"])

    def written(self, clear: bool = False) -> list[dict[str, Any]]:
        """Every resource body a client POSTed or PUT since the last reset (or clear), once the
        server carried it out."""
        return list(self._admin("written?clear=1" if clear else "written", method="POST")["written"])

    def requests(self, clear: bool = False) -> dict[str, int]:
        """FHIR requests since the last reset (or clear), by "METHOD ResourceType"."""
        return dict(self._admin("requests?clear=1" if clear else "requests", method="POST")["requests"])

    def register_smart_client(self, client_id: str, jwks: dict[str, Any], scope: str = "system/*.*") -> None:
        """The registry's record of a SMART backend client: its public keys and allowed scopes."""
        self._admin("smart/client", json={"client_id": client_id, "jwks": jwks, "scope": scope})

    def revoke_tokens(self) -> None:
        self._admin("smart/revoke")

    def set_token_ttl(self, seconds: int) -> None:
        self._admin(f"smart/ttl?seconds={seconds}")

    def smart_stats(self) -> dict[str, Any]:
        """token_requests, issued, refused, refusals (reasons), rejected_tokens, live_tokens."""
        return dict(self._admin("smart/stats", method="GET"))

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/auth/token"

    def reset(self) -> None:
        """Empties the server's store; no delay, no injected failure."""
        self._admin("reset")

    def fail_next(self, status: int | str = 503, count: int = 1, method: str = "") -> None:
        """The next `count` FHIR answers (of `method`, if given) fail with `status` ("reset": dropped)."""
        self._admin(f"fail?status={status}&count={count}&method={method}")

    def set_delay(self, ms: int, method: str = "", resource_type: str = "") -> None:
        """Delays FHIR answers by `ms` milliseconds (0: none); only `method` / `resource_type` if given.
        The request is still carried out after the delay, even when the client gave up."""
        self._admin(f"delay?ms={ms}&method={method}&type={resource_type}")

    def client(self) -> httpx.Client:
        """A plain HTTP client on the FHIR base, authenticated like the registry."""
        headers = {"Accept": "application/fhir+json"}
        if self.auth and self.auth.startswith("bearer:"):
            headers["Authorization"] = "Bearer " + self.auth.split(":", 1)[1]
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)


_shared: FhirTestServer | None = None


def shared_server() -> FhirTestServer:
    """The session's server, started on first use and stopped at exit."""
    global _shared
    if _shared is None or _shared.process is None or _shared.process.poll() is not None:
        _shared = FhirTestServer().start()
        atexit.register(_shared.stop)
    return _shared
