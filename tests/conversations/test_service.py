"""The host around the engine: duplicate deliveries, USSD replays, idle flows, registry outages,
and the whole thing on PostgreSQL as well as SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from conversations.model import Channel, Inbound
from db.base import make_async_engine
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from tests.conversations.harness import PINNED_CODE, Phone, Stack, build_stack

AN = ("001085012345", "14031985", "+84901234567")


async def login(phone: Phone) -> None:
    await phone.send(f"DK {AN[0]} {AN[1]}")
    assert "Da xac thuc" in await phone.send(PINNED_CODE)


async def test_a_repeated_delivery_is_answered_once_and_processed_once(stack: Stack) -> None:
    inbound = Inbound(Channel.SMS, AN[2], text=f"DK {AN[0]} {AN[1]}", dedup_key="twilio:SM123")
    first = await stack.service.handle(inbound)
    again = await stack.service.handle(inbound)
    assert [r.text for r in again.replies] == [r.text for r in first.replies]
    assert len(await stack.sent_sms(AN[2])) == 1
    assert await stack.service.seen("twilio:SM123")


async def test_a_replayed_ussd_request_gets_the_same_screen_without_processing(stack: Stack) -> None:
    phone = Phone(stack, Channel.USSD, AN[2])
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    screen = await phone.send(AN[1])  # sends the code
    assert "Ma 6 so da gui" in screen
    assert await phone._ussd() == screen  # the gateway repeats the request
    assert len(await stack.sent_sms(AN[2])) == 1


async def test_ussd_inputs_whose_answers_were_lost_are_processed_in_order(stack: Stack) -> None:
    phone = Phone(stack, Channel.USSD, AN[2])
    await phone.dial()
    phone.chain = ["1", AN[0], AN[1]]  # two screens never reached the caller
    assert "Ma 6 so da gui" in await phone._ussd()


async def test_an_idle_flow_is_forgotten_after_30_minutes(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN[2])
    assert "Nhap so CCCD" in await phone.send("DK")
    stack.clock.advance(minutes=31)
    assert "MUI: mui da tiem" in await phone.send("hello")  # help, not "invalid ID"


async def test_registry_down_reads_come_from_cache_with_their_age(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN[2])
    await login(phone)
    assert "Mui 3" in await phone.send("MUI")
    stack.registry.breaker.opened_at = time.monotonic()  # the registry is down
    reply = await phone.send("MUI")
    assert "Mui 3" in reply and "(du lieu luc 1 phut truoc)" in reply


async def test_registry_down_without_cache_is_a_friendly_answer(stack: Stack) -> None:
    phone = Phone(stack, Channel.USSD, AN[2])
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    stack.registry.breaker.opened_at = time.monotonic()
    screen = await phone.send(AN[1])
    assert screen.startswith("CON He thong du lieu tiem chung dang gian doan")
    assert "Traceback" not in screen and "Error" not in screen


async def test_registry_down_a_report_is_saved_with_its_reference(stack: Stack) -> None:
    phone = Phone(stack, Channel.SMS, AN[2])
    await login(phone)
    for answer in ("PA", "2", "4", "9", "9", "9", "9", "1"):
        await phone.send(answer)
    stack.registry.breaker.opened_at = time.monotonic()
    reply = await phone.send("1")
    assert reply.startswith("Da luu phan anh PA-") and "gian doan" in reply
    queued = [i.key for i in await stack.registry.pending.open_items() if i.operation == "submit_correction"]
    assert len(queued) == 1 and queued[0] in reply


async def test_logout_forgets_the_binding(stack: Stack) -> None:
    phone = Phone(stack, Channel.TELEGRAM, "555001")
    await phone.command("login", f"{AN[0]} {AN[1]}")
    await phone.send(PINNED_CODE)
    assert await stack.service.bindings.persons_for(Channel.TELEGRAM, "555001")
    assert "Đã đăng xuất" in await phone.command("logout")  # Telegram keeps diacritics
    assert await stack.service.bindings.persons_for(Channel.TELEGRAM, "555001") == []


async def test_works_the_same_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    engine = make_async_engine(pg_url)
    await load_demo(EmbeddedRegistry(engine), ordinary=0)
    await engine.dispose()
    stack = build_stack(pg_url, tmp_path)
    try:
        phone = Phone(stack, Channel.USSD, AN[2])
        await phone.dial()
        await phone.send("1")
        await phone.send(AN[0])
        assert "Ma 6 so da gui" in await phone.send(AN[1])
        assert "Nguyen Van An, CCCD 001******345" in await phone.send(PINNED_CODE)
        assert len(await stack.sent_sms(AN[2])) == 1
    finally:
        await stack.close()


async def test_resume_is_offered_only_for_a_few_minutes(stack: Stack) -> None:
    phone = Phone(stack, Channel.USSD, AN[2])
    await phone.dial()
    await phone.send("1")
    await phone.send(AN[0])
    stack.clock.advance(minutes=6)
    assert (await phone.dial()).startswith("CON Tiem chung COVID-19")
