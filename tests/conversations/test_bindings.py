"""Bindings between a channel identity and persons: expiry, unbind, unreachable."""

from __future__ import annotations

from conversations.bindings import BindingStore
from tests.conversations.harness import Stack


async def test_bindings_expire_and_can_be_undone(stack: Stack) -> None:
    store = BindingStore(stack.sessions, ttl_days=30, clock=stack.clock)
    await store.bind("telegram", "42", "p1")
    stack.clock.advance(seconds=1)
    await store.bind("telegram", "42", "p2")
    await store.bind("telegram", "43", "p1")
    assert await store.persons_for("telegram", "42") == ["p2", "p1"]
    assert sorted(await store.addresses_for_person("p1", "telegram")) == ["42", "43"]
    await store.mark_unreachable("telegram", "43")
    assert await store.addresses_for_person("p1", "telegram") == ["42"]
    assert await store.unbind("telegram", "42") == 2
    assert await store.persons_for("telegram", "42") == []
    stack.clock.advance(days=31)
    assert await store.persons_for("telegram", "43") == []


async def test_binding_again_renews_it(stack: Stack) -> None:
    store = BindingStore(stack.sessions, ttl_days=30, clock=stack.clock)
    await store.bind("sms", "+84901234567", "p1")
    stack.clock.advance(days=29)
    await store.bind("sms", "+84901234567", "p1")
    stack.clock.advance(days=29)
    assert await store.persons_for("sms", "+84901234567") == ["p1"]
