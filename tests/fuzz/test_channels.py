"""Hypothesis fuzz of the conversation engine, extending tests/conversations/test_properties.py
(which drives the engine directly with random texts on every channel):

1. the same kind of random sequences, but through the real HTTP adapters (/ussd as Africa's
   Talking calls it, /sms/twilio as Twilio does): any text — control characters, `*` inside an
   input, 2,000-character bodies, every Unicode plane — gets a 200 with `CON`/`END` within 182
   characters, or TwiML within two SMS segments; never silence, never the "sorry, busy" of a bug;
2. Telegram's other inputs (commands with arguments, button presses, a shared contact, a rejected
   file) mixed with text;
3. the registry's database going down and coming back at random moments (a TCP proxy in front of
   PostgreSQL): the caller sees data, a queued report or the "records system unavailable" text,
   never the "busy" text of an unexpected exception.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conversations.model import Channel
from conversations.rendering import USSD_MAX_CHARS
from conversations.text import sms_segments
from db.base import make_async_engine
from registry_client.embedded.registry import EmbeddedRegistry
from tests.conversations.harness import PINNED_CODE, Phone, Stack, build_stack
from tests.conversations.test_properties import MEANINGFUL, PHONES
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.conftest import load_demo_into, through
from tests.faults.service import Service, base_settings, expected, running

BUSY = ("he thong dang ban", "hệ thống đang bận", "service is busy")
TEXT = st.one_of(
    st.sampled_from(MEANINGFUL),
    st.text(max_size=60),
    st.text(alphabet="0123456789*#", max_size=20),
    st.text(min_size=300, max_size=2000),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "So", "Lo"]), max_size=30),
)


def is_busy(text: str) -> bool:
    return any(marker in text.lower() for marker in BUSY)


@pytest.fixture(scope="module")
def http_world(
    demo_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.Runner, Service]]:
    folder = tmp_path_factory.mktemp("fuzz-http")
    shutil.copy(demo_template, folder / "vax.db")
    context = running(base_settings(f"sqlite:///{folder / 'vax.db'}", folder / "data"))
    with asyncio.Runner() as runner:
        service = runner.run(context.__aenter__())
        yield runner, service
        runner.run(context.__aexit__(None, None, None))


async def _play_http(service: Service, steps: list[tuple[str, str, str]]) -> None:
    callers: dict[tuple[str, str], Any] = {}
    for channel, phone, text in steps:
        if channel == "ussd":
            caller = callers.setdefault((channel, phone), service.ussd(phone))
            # a handset sends at most one screen (182 characters) per input; longer bodies are the abuse
            # tests' business (413), not a conversation
            typed = text[:USSD_MAX_CHARS]
            shown = await (caller.dial() if text == "[dial]" or not caller.session_id else caller.send(typed))
            assert len(shown) <= USSD_MAX_CHARS and shown[:4] in ("CON ", "END "), shown
            if shown.startswith("END "):
                caller.session_id = ""
        else:
            shown = await service.sms(phone).send("" if text == "[dial]" else text)
            assert shown.strip(), f"silence after {text!r}"
            assert sms_segments(shown) <= 2, shown
        assert not is_busy(shown), (channel, text, shown)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["ussd", "sms"]), st.sampled_from(PHONES), st.one_of(TEXT, st.just("[dial]"))
        ),
        min_size=1,
        max_size=10,
    )
)
def test_random_traffic_through_the_gateway_webhooks(
    http_world: tuple[asyncio.Runner, Service], steps: list[tuple[str, str, str]]
) -> None:
    runner, service = http_world
    runner.run(_play_http(service, steps))


@pytest.fixture(scope="module")
def engine_world(
    demo_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.Runner, Stack]]:
    folder = tmp_path_factory.mktemp("fuzz-telegram")
    shutil.copy(demo_template, folder / "vax.db")
    with asyncio.Runner() as runner:
        stack = build_stack(f"sqlite:///{folder / 'vax.db'}", folder)
        yield runner, stack
        runner.run(stack.close())


COMMANDS = [
    "start",
    "help",
    "status",
    "certificate",
    "report",
    "check",
    "language",
    "logout",
    "menu",
    "code",
    "verify",
]
TELEGRAM_STEP = st.one_of(
    st.tuples(st.just("text"), TEXT),
    st.tuples(st.just("command"), st.sampled_from(COMMANDS), st.one_of(st.none(), TEXT)),
    st.tuples(st.just("choice"), st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "9", "98", "x"])),
    st.tuples(st.just("contact"), st.sampled_from([*PHONES, "+84900000000", "not a phone"])),
    st.tuples(st.just("rejected file"), st.sampled_from(["application/pdf", "12 MB > 10 MB"])),
)


async def _play_telegram(stack: Stack, chat: str, steps: list[tuple[Any, ...]]) -> None:
    phone = Phone(stack, Channel.TELEGRAM, chat)
    for step in steps:
        kind = step[0]
        if kind == "command":
            shown = await phone.command(step[1], step[2])
        elif kind == "choice":
            shown = await phone.send("", choice=step[1])
        elif kind == "contact":
            shown = await phone.send("", shared_phone=step[1])
        elif kind == "rejected file":
            shown = await phone.send("", rejected_media=step[1])
        else:
            shown = await phone.send(step[1])
        assert phone.last_turn is not None and phone.last_turn.replies, step
        assert all(len(r.text) <= 4096 for r in phone.last_turn.replies)
        assert not is_busy(shown), (step, shown)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chat=st.sampled_from(["548213307", "100200300"]), steps=st.lists(TELEGRAM_STEP, min_size=1, max_size=10)
)
def test_random_telegram_inputs(
    engine_world: tuple[asyncio.Runner, Stack], chat: str, steps: list[tuple[Any, ...]]
) -> None:
    runner, stack = engine_world
    runner.run(_play_telegram(stack, chat, steps))


@pytest.fixture(scope="module")
def flapping_world(
    demo_template: Path, pg_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.Runner, Stack, TcpProxy]]:
    """The engine on SQLite; its registry on PostgreSQL behind a proxy the test cuts and restores."""
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    load_demo_into(pg_database)
    folder = tmp_path_factory.mktemp("fuzz-flapping")
    shutil.copy(demo_template, folder / "vax.db")
    parts = urlsplit(pg_database)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    with asyncio.Runner() as runner:
        stack = build_stack(f"sqlite:///{folder / 'vax.db'}", folder)
        registry_engine = make_async_engine(
            through(proxy, pg_database), pool_size=2, max_overflow=0, connect_args={"connect_timeout": 2}
        )
        stack.registry.inner = EmbeddedRegistry(registry_engine, clock=stack.clock)
        stack.registry.breaker.cooldown = 0.0
        stack.registry.timeout = 2.0
        stack.registry.attempts = 1  # no back-off sleeps between retries: the fuzz stays fast
        yield runner, stack, proxy
        runner.run(registry_engine.dispose())
        runner.run(stack.close())
    proxy.close()


PERSONS = [("001210004444", "24122010"), ("001085012345", "14031985"), ("001182003333", "02051982")]


def login_first(channel: Channel, person: tuple[str, str]) -> list[str]:
    if channel == Channel.SMS:
        return [f"DK {person[0]} {person[1]}", PINNED_CODE]
    return ["[dial]", "1", person[0], person[1], PINNED_CODE]


FLAPPING_STEP = st.one_of(
    st.sampled_from(
        ["[cut]", "[restore]", "[dial]", "1", "1", "3", "9", "MUI", "MUI", "PA", "0", "98", PINNED_CODE]
    ),
    st.sampled_from(MEANINGFUL),
)


async def _play_flapping(
    stack: Stack, proxy: TcpProxy, channel: Channel, address: str, steps: list[str]
) -> None:
    phone = Phone(stack, channel, address)
    try:
        for step in steps:
            if step == "[cut]":
                proxy.cut()
                continue
            if step == "[restore]":
                proxy.restore()
                continue
            shown = await (phone.dial() if step == "[dial]" and channel == Channel.USSD else phone.send(step))
            if channel == Channel.USSD:
                assert len(shown) <= USSD_MAX_CHARS and shown[:4] in ("CON ", "END "), shown
                if shown.startswith("END "):
                    phone.session = ""
            assert not is_busy(shown), (step, shown)
            if "du lieu luc" in shown:
                event("answered from the cache with its age")
            elif expected("common.registry_down") in shown:
                event("registry unavailable")
            elif "Da luu phan anh" in shown:
                event("report queued")
    finally:
        proxy.restore()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    channel=st.sampled_from([Channel.USSD, Channel.SMS]),
    address=st.sampled_from(PHONES),
    person=st.one_of(st.none(), st.sampled_from(PERSONS)),
    steps=st.lists(FLAPPING_STEP, min_size=2, max_size=12),
)
def test_registry_database_flapping_under_random_input(
    flapping_world: tuple[asyncio.Runner, Stack, TcpProxy],
    channel: Channel,
    address: str,
    person: tuple[str, str] | None,
    steps: list[str],
) -> None:
    """Logged in first (or not), then random steps, with the registry's database cut and restored."""
    runner, stack, proxy = flapping_world
    stack.clock.advance(minutes=61)  # past the limits on codes
    prefix = login_first(channel, person) if person else []
    runner.run(_play_flapping(stack, proxy, channel, address, prefix + steps))


def test_the_unavailable_text_is_what_a_caller_sees_when_nothing_is_cached(
    flapping_world: tuple[asyncio.Runner, Stack, TcpProxy],
) -> None:
    """The property above accepts any non-busy answer; this pins the answer of the plain case."""
    runner, stack, proxy = flapping_world

    async def play() -> str:
        proxy.cut()
        try:
            return await Phone(stack, Channel.SMS, "+84900000999").send("DK 001050005555 08011950")
        finally:
            proxy.restore()

    stack.registry.cache._items.clear()
    assert runner.run(play()) == expected("common.registry_down")
