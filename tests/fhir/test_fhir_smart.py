"""REGISTRY_AUTH=smart:<client_id> (SMART Backend Services) against the test registry's token
endpoint, which checks the client assertion the way a national registry does (signature with the
registered JWKS, iss/sub/aud/exp, jti used once) and refuses FHIR calls without a live token."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from registry_client.check import registry_check_cli
from registry_client.errors import RegistryUnavailable
from registry_client.fhir.http import parse_auth, smart_client_id
from registry_client.fhir.registry import FhirRegistry
from registry_client.fhir.smart import ASSERTION_TYPE, client_assertion, load_client_key
from settings import Settings
from tests.fhir.server import FhirTestServer
from tests.fhir.smart_keys import jwks, write_key
from tests.registry_client.contract import seed_person

REPO = Path(__file__).resolve().parents[2]
CLIENT = "vaxchannel-test"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key(tmp_path / "registry_private_key.pem")


@pytest.fixture
def registered(fhir_server: FhirTestServer, key_file: Path) -> FhirTestServer:
    fhir_server.register_smart_client(CLIENT, jwks(key_file))
    return fhir_server


@pytest.fixture
async def smart_registry(registered: FhirTestServer, key_file: Path) -> AsyncIterator[FhirRegistry]:
    registry = FhirRegistry(
        registered.base_url,
        auth=f"smart:{CLIENT}",
        private_key_file=key_file,
        scopes="system/Patient.* system/Immunization.* system/Location.* system/Organization.read",
    )
    yield registry
    await registry.close()


async def test_first_call_fetches_a_token_later_calls_reuse_it(
    registered: FhirTestServer, smart_registry: FhirRegistry
) -> None:
    assert registered.smart_stats()["token_requests"] == 0
    person = await seed_person(smart_registry)
    for _ in range(3):
        assert (await smart_registry.get_person(person.id)).national_id == person.national_id
    await smart_registry.list_sites()
    stats = registered.smart_stats()
    assert (stats["token_requests"], stats["issued"], stats["refused"]) == (1, 1, 0), stats


async def test_rsa_key_signs_rs384(registered: FhirTestServer, tmp_path: Path) -> None:
    rsa_key = write_key(tmp_path / "rsa.pem", kind="RSA")
    registered.register_smart_client("rsa-client", jwks(rsa_key))
    registry = FhirRegistry(
        registered.base_url, auth="smart:rsa-client", private_key_file=rsa_key, scopes="system/*.*"
    )
    try:
        await seed_person(registry)
    finally:
        await registry.close()
    assert registered.smart_stats()["issued"] == 1


async def test_a_token_about_to_expire_is_replaced_before_use(
    registered: FhirTestServer, smart_registry: FhirRegistry
) -> None:
    registered.set_token_ttl(1)
    person = await seed_person(smart_registry)
    await asyncio.sleep(1.2)
    await smart_registry.get_person(person.id)
    stats = registered.smart_stats()
    assert stats["issued"] == 2 and stats["rejected_tokens"] == 0, stats  # renewed, never refused


async def test_a_revoked_token_is_renewed_once(
    registered: FhirTestServer, smart_registry: FhirRegistry
) -> None:
    person = await seed_person(smart_registry)
    registered.revoke_tokens()
    assert (await smart_registry.get_person(person.id)).id == person.id  # 401, new token, same call again
    stats = registered.smart_stats()
    assert (stats["issued"], stats["rejected_tokens"]) == (2, 1), stats


async def test_renewal_is_tried_once_not_forever(
    registered: FhirTestServer, smart_registry: FhirRegistry
) -> None:
    person = await seed_person(smart_registry)
    registered.fail_next(401, count=5)
    with pytest.raises(RegistryUnavailable, match="credentials") as caught:
        await smart_registry.get_person(person.id)
    assert not caught.value.retryable
    assert registered.smart_stats()["token_requests"] == 2  # the first token, one renewal, no more
    registered.reset()


async def test_an_unregistered_key_is_refused_clearly(
    registered: FhirTestServer, tmp_path: Path, key_file: Path
) -> None:
    other = write_key(tmp_path / "other.pem")
    registry = FhirRegistry(
        registered.base_url, auth=f"smart:{CLIENT}", private_key_file=other, scopes="system/*.*"
    )
    try:
        with pytest.raises(
            RegistryUnavailable, match=r"refused \(invalid_client: no registered key"
        ) as caught:
            await registry.find_person("001085001234", date(1985, 3, 14))
        assert not caught.value.retryable
        info = await registry.info()
        assert not info.reachable and "SMART token request refused (invalid_client" in info.detail
    finally:
        await registry.close()


async def test_no_token_or_a_made_up_one_gets_401(registered: FhirTestServer) -> None:
    async with httpx.AsyncClient(base_url=registered.base_url) as client:
        assert (await client.get("Patient")).status_code == 401
        made_up = await client.get("Patient", headers={"Authorization": "Bearer not-a-token"})
        assert made_up.status_code == 401


async def test_a_scope_that_does_not_cover_the_call_gets_403(
    registered: FhirTestServer, key_file: Path
) -> None:
    registered.register_smart_client("reader", jwks(key_file), scope="system/Patient.read")
    registry = FhirRegistry(
        registered.base_url, auth="smart:reader", private_key_file=key_file, scopes="system/Patient.read"
    )
    try:
        await registry.find_persons_by_phone("+84901234567")  # a read: allowed
        with pytest.raises(RegistryUnavailable, match="403"):
            await seed_person(registry)  # a write: refused by scope
    finally:
        await registry.close()


# -- the token endpoint checks what a registry checks (so the tests above can fail) ------------------


def _token_request(server: FhirTestServer, assertion: str, scope: str = "system/*.*") -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return httpx.post(server.token_url, data=form, timeout=5)


def _signed(key_file: Path, **claims: Any) -> str:
    key, _ = load_client_key(key_file)
    now = int(time.time())
    body = {"iss": CLIENT, "sub": CLIENT, "exp": now + 240, "jti": os.urandom(8).hex(), **claims}
    return jwt.encode(body, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})


def test_token_endpoint_checks_the_assertion(registered: FhirTestServer, key_file: Path) -> None:
    key, _ = load_client_key(key_file)
    good = client_assertion(CLIENT, registered.token_url, key, time.time())
    first = _token_request(registered, good)
    assert first.status_code == 200 and first.json()["token_type"] == "bearer"
    replay = _token_request(registered, good)
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
    aud = registered.token_url
    cases = {
        "aud must be": _signed(key_file, aud="https://elsewhere.example/token"),
        "expired": _signed(key_file, aud=aud, exp=int(time.time()) - 60),
        "more than 5 minutes": _signed(key_file, aud=aud, exp=int(time.time()) + 3600),
        "sub must equal iss": _signed(key_file, aud=aud, sub="someone-else"),
        "unknown client": _signed(key_file, aud=aud, iss="intruder", sub="intruder"),
    }
    for reason, assertion in cases.items():
        answer = _token_request(registered, assertion)
        assert answer.status_code == 401, (reason, answer.text)
        assert answer.json()["error"] == "invalid_client" and reason in answer.json()["error_description"]
    fresh = client_assertion(CLIENT, registered.token_url, key, time.time())
    unsigned = fresh.rsplit(".", 1)[0] + ".AAAA"
    assert "signature" in _token_request(registered, unsigned).json()["error_description"]


def test_a_registry_that_demands_smart_refuses_everything_else(tmp_path: Path) -> None:
    server = FhirTestServer(auths=(), smart=True).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=5) as client:
            assert client.get("metadata").status_code == 200  # public
            conf = client.get(".well-known/smart-configuration").json()
            assert conf["token_endpoint"] == server.token_url
            refused = client.get("Patient")
            assert refused.status_code == 401 and "invalid_token" in refused.headers["WWW-Authenticate"]
    finally:
        server.stop()


# -- secrets stay out of logs; the key file is checked ---------------------------------------------


async def test_neither_token_nor_assertion_is_logged(
    registered: FhirTestServer, smart_registry: FhirRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sent: list[str] = []
    original = httpx.AsyncClient.request

    async def spy(self: httpx.AsyncClient, method: str, url: Any, **kwargs: Any) -> httpx.Response:
        if kwargs.get("data"):
            sent.append(kwargs["data"]["client_assertion"])
        if (kwargs.get("headers") or {}).get("Authorization"):
            sent.append(kwargs["headers"]["Authorization"].split(" ", 1)[1])
        return await original(self, method, url, **kwargs)

    httpx.AsyncClient.request = spy  # type: ignore[method-assign]
    try:
        await seed_person(smart_registry)
        registered.revoke_tokens()
        await smart_registry.find_persons_by_phone("+84901234567")
    finally:
        httpx.AsyncClient.request = original  # type: ignore[method-assign]
    assert len(set(sent)) >= 4  # two assertions, two access tokens
    for secret in set(sent):
        assert secret not in caplog.text


def _check(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", "registry", "check"],
        cwd=REPO,
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path}/check.db",
            "DATA_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_registry_check_with_smart(registered: FhirTestServer, key_file: Path, tmp_path: Path) -> None:
    env = {
        "REGISTRY_BACKEND": "fhir",
        "REGISTRY_URL": registered.base_url,
        "REGISTRY_AUTH": f"smart:{CLIENT}",
    }
    done = _check(env, tmp_path)  # the key is DATA_DIR/registry_private_key.pem
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reachable        : yes" in done.stdout
    kid = jwks(key_file)["keys"][0]["kid"]
    assert f"SMART Backend Services, client {CLIENT}, ES384 key kid {kid}" in done.stdout

    key_file.chmod(0o644)
    loose = _check(env, tmp_path)
    assert "accessible to others" in loose.stdout and "chmod 600" in loose.stdout

    other = write_key(tmp_path / "other.pem")
    bad = _check({**env, "REGISTRY_PRIVATE_KEY_FILE": str(other)}, tmp_path)
    assert bad.returncode == 1
    assert "reachable        : NO" in bad.stdout
    assert "SMART token request refused (invalid_client: no registered key with kid" in bad.stdout
    assert f"check that client {CLIENT} is registered with the public key kid" in bad.stdout


def test_registry_check_without_a_key_file(
    registered: FhirTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        registry_backend="fhir",
        registry_url=registered.base_url,
        registry_auth=f"smart:{CLIENT}",
        database_url=f"sqlite:///{tmp_path}/check.db",
        data_dir=tmp_path / "empty",
    )
    assert registry_check_cli(settings) == 1
    out = capsys.readouterr().out
    assert "registry_private_key.pem cannot be read" in out


def test_smart_auth_setting_parsing(tmp_path: Path) -> None:
    assert smart_client_id("smart:vaxchannel") == "vaxchannel"
    assert smart_client_id("bearer:abc") is None and smart_client_id(None) is None
    assert parse_auth("smart:vaxchannel") == (None, {})  # its header comes with each access token
    for bad in ("smart:", "smart:  "):
        with pytest.raises(ValueError, match="smart:<client_id>"):
            parse_auth(bad)
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    (tmp_path / "not-a-key.pem").chmod(0o600)
    with pytest.raises(RegistryUnavailable, match="unusable"):
        load_client_key(tmp_path / "not-a-key.pem")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "p256.pem").write_bytes(p256)
    with pytest.raises(RegistryUnavailable, match="EC P-384 key"):
        load_client_key(tmp_path / "p256.pem")


async def test_concurrent_first_calls_share_one_token(
    registered: FhirTestServer, smart_registry: FhirRegistry
) -> None:
    await asyncio.gather(*(smart_registry.find_persons_by_phone(f"+8490123456{i}") for i in range(8)))
    assert registered.smart_stats()["token_requests"] == 1
