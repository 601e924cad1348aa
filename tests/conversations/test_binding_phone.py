"""A binding keeps the phone that proved it and ends with that phone; the phone-change code."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from conversations.bindings import BindingStore
from conversations.phone_change import MAX_TRIES, Outcome, PhoneChanges
from db.secret_keys import CODE_HASHES, derive_key
from registry_client.models import Contact, Person
from tests.conversations.harness import Stack

AT = datetime(2024, 1, 1, tzinfo=UTC)


def person_with(phone: str | None) -> Person:
    contacts = (Contact(phone, AT, verified=True),) if phone else ()
    return Person("p1", "001085012345", AT.date(), "Nguyễn Văn An", None, contacts)


async def test_a_binding_holds_only_while_its_phone_is_the_registered_one(stack: Stack) -> None:
    store = BindingStore(stack.sessions, ttl_days=30, clock=stack.clock)
    await store.bind("sms", "+84901234567", "p1")  # no code on record: the number itself
    await store.bind("telegram", "42", "p1", via_phone="+84901234567")
    await store.bind("telegram", "43", "p1", via_phone="+84912000111")
    await store.bind("telegram", "44", "p2", via_phone="+84901234567")  # another person: untouched
    person = person_with("+84901234567")
    assert await store.holds("sms", "+84901234567", person)
    assert await store.holds("telegram", "42", person)
    assert not await store.holds("telegram", "43", person)  # proven by a phone that is not registered
    assert await store.persons_for("telegram", "43") == []  # …and ended on the way
    assert not await store.holds("telegram", "99", person)  # never bound

    moved = person_with("+84977000111")
    assert not await store.holds("telegram", "42", moved)
    assert await store.persons_for("telegram", "42") == []
    assert await store.persons_for("sms", "+84901234567") == []  # the same phone's other binding too
    assert await store.persons_for("telegram", "44") == ["p2"]


async def test_ending_a_phone_ends_it_on_every_channel_and_announces_each(stack: Stack) -> None:
    store = BindingStore(stack.sessions, ttl_days=30, clock=stack.clock)
    told: list[tuple[str, str]] = []

    async def on_change(channel: str, address: str) -> None:
        told.append((channel, address))

    store.on_change = on_change
    for channel, address in (("sms", "+84901234567"), ("ussd", "+84901234567")):
        await store.bind(channel, address, "p1")
    await store.bind("telegram", "42", "p1", via_phone="+84901234567")
    await store.bind("telegram", "43", "p1", via_phone="+84977000111")
    told.clear()
    ended = await store.end_for_phones("p1", ["+84901234567"])
    assert sorted(ended) == [("sms", "+84901234567"), ("telegram", "42"), ("ussd", "+84901234567")]
    assert sorted(told) == sorted(ended)
    assert await store.persons_for("telegram", "43") == ["p1"]  # the new phone's chat stays
    stack.clock.advance(days=31)
    assert not await store.holds("telegram", "43", person_with("+84977000111"))  # TTL still applies


async def test_a_code_sent_for_a_login_is_the_phone_a_binding_keeps(stack: Stack) -> None:
    otp = stack.service.services.otp
    store = stack.service.bindings
    person = await stack.registry.find_person("001085012345", AT.date().replace(year=1985, month=3, day=14))
    _, effect = otp.issue(person.id, "+84901234567", "telegram", "77")
    async with stack.sessions() as db, db.begin():
        assert effect.sql is not None
        await db.run_sync(effect.sql)
        await db.run_sync(store.bind_effect("telegram", "77", person.id).sql)  # type: ignore[arg-type]
    assert await store.holds("telegram", "77", person)
    assert not await store.holds("telegram", "77", replace(person, contacts=()))


async def test_a_phone_change_code_is_counted_before_it_is_compared(stack: Stack) -> None:
    person = await stack.registry.find_person("001085012345", AT.date().replace(year=1985, month=3, day=14))
    changes = PhoneChanges(
        stack.sessions,
        stack.registry,
        stack.service.bindings,
        stack.service.services.counters,
        stack.outbox,
        derive_key("test", CODE_HASHES),
        clock=stack.clock,
        generate=lambda: "246810",
    )
    asked = await changes.request(person, "+84977000111", "agent:lan")
    results = [await changes.confirm(asked.change_id, "135790", "agent:lan") for _ in range(MAX_TRIES)]
    assert [r.outcome for r in results] == [Outcome.WRONG] * (MAX_TRIES - 1) + [Outcome.DEAD]
    assert [r.left for r in results[:-1]] == list(range(MAX_TRIES - 1, 0, -1))
    late = await changes.confirm(asked.change_id, "246810", "agent:lan")
    assert late.outcome == Outcome.DEAD  # the right code, too late: nothing changes
    assert (await stack.registry.get_person(person.id)).registered_phone == "+84901234567"

    stack.clock.advance(hours=2)
    again = await changes.request(person, "+84977000111", "agent:lan")
    stack.clock.advance(minutes=11)
    assert (await changes.confirm(again.change_id, "246810", "agent:lan")).outcome == Outcome.EXPIRED
    fresh = await changes.request(person, "+84977000111", "agent:lan")
    done = await changes.confirm(fresh.change_id, "246810", "agent:lan")
    assert done.outcome == Outcome.CONFIRMED and done.retired == ("+84901234567",)
    assert (await changes.confirm(fresh.change_id, "246810", "agent:lan")).outcome == Outcome.ALREADY
    assert (await changes.confirm("nope", "246810", "agent:lan")).outcome == Outcome.UNKNOWN
