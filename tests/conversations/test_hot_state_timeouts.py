"""A Redis that accepts connections but never answers (hung, or a network that drops replies):
the hot-state client has no socket timeout of its own (redis-py's costs a task per call), so
RedisHotState bounds every call itself and answers the caller from SQL within that bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from conversations.hot_state import RedisHotState
from conversations.model import Channel
from db.redis_wire import redis_client
from tests.conversations.harness import Phone, Stack


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A TCP server that reads whatever it is sent and never replies."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_redis_that_never_answers_costs_one_bound_per_call_then_sql(
    stack: Stack, silent_redis: str
) -> None:
    client = redis_client(silent_redis)
    stack.service.hot = RedisHotState(client, stack.service.store, "vaxsilent", timeout_seconds=0.3)
    phone = Phone(stack, Channel.USSD, "+84911000555")
    started = time.monotonic()
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")  # read and write: 2 bounds
    assert (await phone.send("5")).startswith("CON Chon ngon ngu")  # from the SQL copy
    assert time.monotonic() - started < 4 * 0.3 + 1.0
    await stack.service.hot.close()
