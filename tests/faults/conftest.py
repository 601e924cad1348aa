"""Fixtures of the fault tests: demo databases (SQLite file, PostgreSQL), the FHIR test server."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from db.base import make_async_engine
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.fakes.tcp_proxy import TcpProxy
from tests.fhir.fixtures import fhir_server  # noqa: F401 - shared fixture


@pytest.fixture
def demo_db(demo_template: Path, tmp_path: Path) -> str:  # noqa: F811
    """A SQLite file with the demo identities, for this test."""
    shutil.copy(demo_template, tmp_path / "vax.db")
    return f"sqlite:///{tmp_path / 'vax.db'}"


def load_demo_into(url: str) -> None:
    async def load() -> None:
        engine = make_async_engine(url)
        try:
            await load_demo(EmbeddedRegistry(engine), ordinary=0)
        finally:
            await engine.dispose()

    asyncio.run(load())


@pytest.fixture
def pg_demo(pg_url: str) -> str:
    """The session's PostgreSQL database, emptied, with the demo identities."""
    load_demo_into(pg_url)
    return pg_url


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of the PostgreSQL server: `cut()` is the database stopping."""
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield proxy
    proxy.close()
