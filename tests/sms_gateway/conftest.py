from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import create_app
from settings import Settings
from tests.conversations.conftest import demo_template, demo_url  # noqa: F401 (shared fixtures)

PAYLOADS = Path(__file__).parent / "payloads"
PUBLIC = "https://vax.example.org"
AUTH_TOKEN = "standin-auth-token"


def payload(name: str, **replace: str) -> bytes:
    text = (PAYLOADS / name).read_text()
    for key, value in replace.items():
        text = text.replace(f"__{key.upper()}__", value)
    return text.encode()


@pytest.fixture
def make_client(demo_url: str, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:  # noqa: F811
    """A TestClient over the real app (demo identities, no background workers). It sends the
    gateway token with every request, as the honest USSD/SMS gateway does (the SMS webhook needs
    it only without TWILIO_AUTH_TOKEN); a test of its absence removes the header."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "database_url": demo_url,
            "data_dir": tmp_path,
            "public_base_url": PUBLIC,
            "run_workers": False,
            "secret_key": "test-secret-key",
        }
        values.update(overrides)
        settings = Settings(**values)
        client = TestClient(create_app(settings))
        client.headers["X-Gateway-Token"] = settings.resolved_gateway_token
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
