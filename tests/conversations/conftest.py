from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db.base import make_async_engine
from db.migrate import migrate
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from tests.conversations.harness import Stack, build_stack


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with the demo identities (no ordinary filler), built once."""
    import asyncio

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    url = f"sqlite:///{path}"
    migrate(url)

    async def load() -> None:
        engine = make_async_engine(url)
        await load_demo(EmbeddedRegistry(engine), ordinary=0)
        await engine.dispose()

    asyncio.run(load())
    return path


@pytest.fixture
def demo_url(demo_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "vax.db"
    shutil.copy(demo_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
async def stack(demo_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = build_stack(demo_url, tmp_path)
    yield s
    await s.close()
