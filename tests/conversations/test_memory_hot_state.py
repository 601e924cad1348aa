"""USSD navigation in a single-process service's memory (`MemoryHotState`): menus never reach SQL
(a flow in progress does, to be offered again after a restart),
durable changes do at once, cached bindings are dropped by every change the process commits (and
re-read after their time to live), a restarted process continues from the SQL copy without applying a
turn twice, a failed turn leaves the kept copy as it was, and idle entries are dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from conversations.hot_state import MemoryHotState
from conversations.model import Channel
from conversations.service import ConversationService
from conversations.tables import ConversationSessionRow, OtpChallengeRow
from tests.conversations.harness import PINNED_CODE, Phone, Stack, build_stack

AN = ("001085012345", "14031985", "+84901234567")


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def in_memory(stack: Stack, ticks: Ticks | None = None) -> MemoryHotState:
    """The stack's service with the session in memory, as conversations.wiring builds it."""
    hot = MemoryHotState(stack.service.store, monotonic=ticks or Ticks())
    stack.service.hot = hot
    stack.service.services.bindings.on_change = hot.bindings_changed
    return hot


async def sql_session(stack: Stack, address: str) -> ConversationSessionRow | None:
    async with stack.sessions() as db:
        return await db.scalar(
            select(ConversationSessionRow).where(
                ConversationSessionRow.channel == "ussd", ConversationSessionRow.address == address
            )
        )


async def codes_sent(stack: Stack) -> int:
    async with stack.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(OtpChallengeRow)) or 0)


async def test_navigation_stays_in_memory_and_durable_changes_reach_sql(stack: Stack) -> None:
    hot = in_memory(stack)
    phone = Phone(stack, Channel.USSD, "+84911000111")
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")
    assert await sql_session(stack, phone.address) is None  # menus only: nothing in SQL
    assert ("ussd", phone.address) in hot.sessions
    assert (await phone.send("5")).startswith("CON Chon ngon ngu")  # a flow: kept in SQL too
    row = await sql_session(stack, phone.address)
    assert row is not None and row.state["flow"] == "language"
    assert (await phone.send("2")).startswith("CON Language: English.")  # a durable field changed
    row = await sql_session(stack, phone.address)
    assert row is not None and row.language == "en"


async def login(phone: Phone) -> None:
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    await phone.send(AN[1])
    assert "Da xac thuc: Nguyen Van An" in await phone.send(PINNED_CODE)
    await phone.dial()
    assert (await phone.send("1")).startswith("CON Nguyen Van An, CCCD")


async def test_a_login_holds_and_a_binding_removed_in_the_process_is_seen_at_once(stack: Stack) -> None:
    hot = in_memory(stack)
    phone = Phone(stack, Channel.USSD, AN[2])
    await login(phone)
    assert hot.bound[("ussd", AN[2])][1]  # the new binding, cached after the login's commit
    # the console (same process) logs the phone out: the cached list is dropped with the commit
    assert await stack.service.bindings.unbind("ussd", AN[2]) == 1
    assert ("ussd", AN[2]) not in hot.bound
    await phone.dial()
    assert "Nhap so CCCD" in await phone.send("1")


async def test_a_binding_removed_by_another_process_is_seen_once_re_read(
    stack: Stack, demo_url: str, tmp_path: Path
) -> None:
    ticks = Ticks()
    hot = in_memory(stack, ticks)
    phone = Phone(stack, Channel.USSD, AN[2])
    await login(phone)
    other = build_stack(demo_url, tmp_path / "elsewhere")
    try:
        assert await other.service.bindings.unbind("ussd", AN[2]) == 1
    finally:
        await other.close()
    ticks.now += hot.bindings_ttl + 1
    await phone.dial()
    assert "Nhap so CCCD" in await phone.send("1")


async def test_a_restart_continues_from_sql_without_applying_a_turn_twice(stack: Stack) -> None:
    in_memory(stack)
    phone = Phone(stack, Channel.USSD, AN[2])
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    sent = await phone.send(AN[1])  # a code goes out: a durable turn, in SQL
    assert await codes_sent(stack) == 1
    in_memory(stack)  # the process restarted: its memory is empty
    # the gateway repeats the last request (its answer was lost): answered again, no second code
    assert await phone._ussd() == sent
    assert await codes_sent(stack) == 1
    assert "Da xac thuc: Nguyen Van An" in await phone.send(PINNED_CODE)


async def test_a_failed_turn_leaves_the_kept_copy_as_it_was(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot = in_memory(stack)
    phone = Phone(stack, Channel.USSD, "+84911000222")
    await phone.dial()
    kept = hot.sessions[("ussd", phone.address)][1]

    async def broken(self: ConversationService, *args: object) -> None:
        raise RuntimeError("engine failure")

    monkeypatch.setattr(ConversationService, "_run", broken)
    with pytest.raises(RuntimeError):
        await phone.send("5")
    assert hot.sessions[("ussd", phone.address)][1] == kept
    monkeypatch.undo()
    assert (await phone._ussd()).startswith("CON Chon ngon ngu")  # the gateway retries: processed once


async def test_idle_sessions_are_dropped_and_the_count_is_bounded(stack: Stack) -> None:
    ticks = Ticks()
    hot = in_memory(stack, ticks)
    hot.max_sessions = 3
    for n in range(5):
        await Phone(stack, Channel.USSD, f"+8491100030{n}").dial()
    assert [address for _, address in hot.sessions] == [f"+8491100030{n}" for n in (2, 3, 4)]
    ticks.now += hot.idle + 1
    await Phone(stack, Channel.USSD, "+84911000399").dial()
    assert list(hot.sessions) == [("ussd", "+84911000399")]
