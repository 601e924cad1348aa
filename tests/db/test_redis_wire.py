"""`db.redis_wire.PipelinedRedis` against the real Redis: replies reach the caller that asked, in
order, however many callers share the connection; error replies are errors; a lost connection
fails the waiting callers and the next call connects again; a caller that gives up closes the
connection (no late reply reaches anyone else); the URL's database and password are used."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ResponseError

from db.redis_wire import PipelinedRedis, RedisPyAdapter, redis_client

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"vaxwire{uuid.uuid4().hex[:10]}"
    yield name
    for db in (0, 7):
        client = redis_asyncio.Redis.from_url(f"redis://127.0.0.1:6379/{db}")
        keys = [key async for key in client.scan_iter(f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_replies_in_order_and_errors_as_errors(prefix: str) -> None:
    wire = PipelinedRedis.from_url(REDIS_URL)
    key = f"{prefix}:a"
    assert await wire.execute(
        ("SET", key, "1", "EX", 60), ("INCR", key), ("MGET", key, f"{prefix}:none")
    ) == [
        b"OK",
        2,
        [b"2", None],
    ]
    await wire.execute(("SET", key, "not a number"))
    with pytest.raises(ResponseError):
        await wire.execute(("INCR", key))
    assert await wire.execute(("GET", key)) == [b"not a number"]  # the connection goes on
    await wire.aclose()


async def test_many_callers_on_one_connection_each_get_their_own_reply(prefix: str) -> None:
    wire = PipelinedRedis.from_url(REDIS_URL)

    async def round_trip(n: int) -> bytes:
        key = f"{prefix}:{n}"
        await wire.execute(("SET", key, f"value {n}", "EX", 60))
        ((value,),) = await wire.execute(("MGET", key))
        return bytes(value)

    values = await asyncio.gather(*(round_trip(n) for n in range(300)))
    assert values == [f"value {n}".encode() for n in range(300)]
    ((clients,),) = [await wire.execute(("CLIENT", "ID"))]
    assert isinstance(clients, int)
    await wire.aclose()


async def test_a_killed_connection_fails_then_reconnects(prefix: str) -> None:
    wire = PipelinedRedis.from_url(REDIS_URL)
    (first_id,) = await wire.execute(("CLIENT", "ID"))
    admin = redis_asyncio.Redis.from_url(REDIS_URL)
    blocked = asyncio.create_task(wire.execute(("BLPOP", f"{prefix}:never", 5)))  # waits on the server
    await asyncio.sleep(0.1)
    await admin.execute_command("CLIENT", "KILL", "ID", first_id)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(blocked, 5)
    (second_id,) = await wire.execute(("CLIENT", "ID"))  # a new connection
    assert second_id != first_id
    await admin.aclose()
    await wire.aclose()


async def test_a_caller_that_gives_up_closes_the_connection(prefix: str) -> None:
    wire = PipelinedRedis.from_url(REDIS_URL)
    (first_id,) = await wire.execute(("CLIENT", "ID"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await wire.execute(("BLPOP", f"{prefix}:never", 2))  # its reply would come in 2 s
    # the next caller is not handed the late reply: it gets its own, on a new connection
    (second_id,) = await wire.execute(("CLIENT", "ID"))
    assert isinstance(second_id, int) and second_id != first_id
    await wire.aclose()


async def test_the_urls_database_and_password(prefix: str) -> None:
    wire = redis_client("redis://127.0.0.1:6379/7")
    assert isinstance(wire, PipelinedRedis)
    await wire.execute(("SET", f"{prefix}:in7", "yes", "EX", 60))
    seven = redis_asyncio.Redis.from_url("redis://127.0.0.1:6379/7")
    assert await seven.get(f"{prefix}:in7") == b"yes"
    await seven.aclose()
    await wire.aclose()
    # this Redis has no password: AUTH is refused, which shows it was sent
    with pytest.raises(ResponseError):
        await PipelinedRedis.from_url("redis://:secret@127.0.0.1:6379/0").execute(("PING",))
    assert isinstance(redis_client("unix:///var/run/redis.sock"), RedisPyAdapter)


async def test_the_redis_py_adapter_answers_alike(prefix: str) -> None:
    adapter = RedisPyAdapter(REDIS_URL)
    key = f"{prefix}:adapter"
    replies = await adapter.execute(("SET", key, "1", "EX", 60), ("INCR", key), ("MGET", key))
    assert replies[1:] == [2, [b"2"]]
    await adapter.aclose()
