"""Hot session state and counters shared by worker processes (REDIS_URL set): USSD navigation kept
in Redis only, durable changes in SQL, binding caches renewed when another worker changes a
binding, SQL when Redis is down; the Redis and SQL counters under concurrent hits; the batched
audit queue; the session state's JSON form."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio
from sqlalchemy import func, select

from conversations.audit_queue import AuditQueue
from conversations.hot_state import RedisHotState
from conversations.limits import Hit, RateCounters
from conversations.model import Channel
from conversations.redis_limits import RedisRateCounters
from conversations.service import ConversationService
from conversations.state import Page, SessionState
from conversations.tables import ConversationSessionRow
from db.base import make_async_engine, make_sessionmaker
from db.redis_wire import redis_client
from registry_client.embedded.tables import AuditRow
from registry_client.models import AuditEntry
from tests.conversations.harness import PINNED_CODE, Phone, Stack, build_stack

REDIS_URL = "redis://127.0.0.1:6379/0"
AN = ("001085012345", "14031985", "+84901234567")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"vaxtest{uuid.uuid4().hex[:10]}"
    yield name
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def with_redis(stack: Stack, prefix: str, url: str = REDIS_URL) -> ConversationService:
    """The stack's service with hot state in Redis, as conversations.wiring builds it."""
    service = stack.service
    service.hot = RedisHotState(redis_client(url), service.store, prefix)
    service.services.bindings.on_change = service.hot.bindings_changed
    return service


async def sql_session(stack: Stack, address: str) -> ConversationSessionRow | None:
    async with stack.sessions() as db:
        return await db.scalar(
            select(ConversationSessionRow).where(
                ConversationSessionRow.channel == "ussd", ConversationSessionRow.address == address
            )
        )


async def login_ussd(phone: Phone) -> str:
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    await phone.send(AN[1])
    return await phone.send(PINNED_CODE)


async def test_navigation_stays_in_redis_and_durable_changes_reach_sql(stack: Stack, prefix: str) -> None:
    service = with_redis(stack, prefix)
    phone = Phone(stack, Channel.USSD, "+84911000111")
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")
    assert (await phone.send("5")).startswith("CON Chon ngon ngu")
    assert await sql_session(stack, phone.address) is None  # menus only: nothing in SQL
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        raw = await client.get(f"{prefix}:conv:ussd:{phone.address}")
        assert raw is not None and json.loads(raw)["s"]["flow"] == "language"
    finally:
        await client.aclose()
    assert (await phone.send("2")).startswith("CON Language: English.")  # a durable field changed
    row = await sql_session(stack, phone.address)
    assert row is not None and row.language == "en"
    assert service.hot is not None
    await service.hot.close()


async def test_a_login_over_redis_holds_and_a_binding_removed_elsewhere_is_not_used(
    stack: Stack, prefix: str, demo_url: str, tmp_path: Path
) -> None:
    with_redis(stack, prefix)
    phone = Phone(stack, Channel.USSD, AN[2])
    assert "Da xac thuc: Nguyen Van An" in await login_ussd(phone)
    await phone.dial()
    assert (await phone.send("1")).startswith("CON Nguyen Van An, CCCD")  # bindings from the cache

    # another worker: its own service on the same database and Redis logs the phone out
    other = build_stack(demo_url, tmp_path / "other-worker")
    try:
        with_redis(other, prefix)
        assert await other.service.bindings.unbind("ussd", AN[2]) == 1
        await phone.dial()
        assert "Nhap so CCCD" in await phone.send("1")  # the cached binding was not used
    finally:
        await other.close()


async def test_redis_down_means_sql(stack: Stack, prefix: str) -> None:
    with_redis(stack, prefix, url="redis://127.0.0.1:9/0")  # nothing listens there
    phone = Phone(stack, Channel.USSD, AN[2])
    assert "Da xac thuc: Nguyen Van An" in await login_ussd(phone)
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")
    assert (await phone.send("1")).startswith("CON Nguyen Van An, CCCD")
    row = await sql_session(stack, AN[2])
    assert row is not None and row.state["ussd_chain"] == ["1"]


def summarise(hits: list[Hit], limit: int) -> tuple[int, int, int]:
    allowed = [h for h in hits if not h.was_blocked]
    return len(allowed), sum(1 for h in allowed if h.blocked), sum(1 for h in hits if h.was_blocked)


async def test_redis_counters_block_once_under_concurrent_hits(stack: Stack, prefix: str) -> None:
    counters = RedisRateCounters(REDIS_URL, prefix, RateCounters(stack.sessions, stack.clock))
    window = timedelta(minutes=15)
    hits = await asyncio.gather(
        *(counters.hit_now("otp-fail:p1", limit=5, window=window, block=window) for _ in range(20))
    )
    assert summarise(list(hits), 5) == (5, 1, 15)  # 4 counted, the 5th blocks, 15 refused
    count, blocked = await counters.read("otp-fail:p1", window)
    assert blocked > 14 * 60
    reset = counters.reset("otp-fail:p1")
    assert reset.after_commit is not None
    await reset.after_commit()
    assert await counters.read("otp-fail:p1", window) == (0, 0)
    assert [await counters.take("otp-sent:x", limit=2, window=timedelta(hours=1)) for _ in range(3)] == [
        True,
        True,
        False,
    ]


async def test_sql_counters_block_once_under_concurrent_hits_on_postgresql(pg_url: str) -> None:
    engine = make_async_engine(pg_url)
    try:
        counters = RateCounters(make_sessionmaker(engine))
        window = timedelta(minutes=15)
        hits = await asyncio.gather(
            *(counters.hit_now("otp-fail:p2", limit=5, window=window, block=window) for _ in range(20))
        )
        assert summarise(list(hits), 5) == (5, 1, 15)
        assert (await counters.read("otp-fail:p2", window))[1] > 14 * 60
    finally:
        await engine.dispose()


async def test_audit_lines_are_written_in_batches_and_on_close(stack: Stack) -> None:
    queue = AuditQueue(stack.registry, interval=0.02, clock=stack.clock)

    async def audit_rows() -> int:
        async with stack.sessions() as db:
            return int(await db.scalar(select(func.count()).select_from(AuditRow)) or 0)

    before = await audit_rows()
    queue.put([AuditEntry("ussd:09******67", "doses.view", None) for _ in range(30)])
    for _ in range(100):
        if await audit_rows() == before + 30:
            break
        await asyncio.sleep(0.02)
    assert await audit_rows() == before + 30
    queue.put([AuditEntry("ussd:09******67", "doses.view", None)])
    await queue.close()  # shutdown: written at once
    assert await audit_rows() == before + 31


async def test_audit_lines_go_to_the_durable_queue_while_the_registry_is_down(stack: Stack) -> None:
    import time

    queue = AuditQueue(stack.registry, interval=0.01, clock=stack.clock)
    stack.registry.breaker.opened_at = time.monotonic()  # the registry is down
    queue.put([AuditEntry("sms:09******67", "doses.view", None, "same line") for _ in range(3)])
    await queue.close()
    pending = [i for i in await stack.registry.pending.open_items() if i.operation == "audit"]
    assert len(pending) == 3  # alike in every field, none lost


def test_the_state_json_is_what_dataclasses_asdict_gave() -> None:
    state = SessionState(
        person_id="7",
        flow="report",
        step="date",
        data={"kind": "missing", "doses": [1, 2]},
        back=["kind"],
        pages=[Page("second page", [("0", "Menu")], end=True)],
        ussd_chain=["3", "1"],
        resume={"flow": "report", "step": "kind", "data": {}, "back": []},
        code_until="2024-06-03T09:05:00+00:00",
    )
    assert json.loads(json.dumps(state.to_json())) == json.loads(json.dumps(dataclasses.asdict(state)))
    assert SessionState.from_json(state.to_json()) == state
