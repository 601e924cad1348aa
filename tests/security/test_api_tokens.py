"""API tokens (`POST /api/agent/token`) end with a password reset or a deactivation.

The attack: a token taken before an admin reset a (leaked) password went on working for its
whole 8 hours. Now each token carries the user's credentials version, raised by a password
change or a deactivation and checked on every call — which also kills a token issued by a login
that raced with the reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.conftest import PASSWORD, Console, cheap_argon2, start_console  # noqa: F401

NEW_PASSWORD = "a fresh one 77"
CALL = "/api/corrections?status=open"


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path) -> Iterator[Console]:
    yield from start_console(sqlite_url, tmp_path / "data")


def user_id(console: Console, name: str) -> int:
    return next(u.id for u in console.call(console.state.console.users.list_all) if u.username == name)


def test_a_password_reset_ends_the_tokens_taken_before_it(console: Console) -> None:
    old = console.bearer("minh")
    assert console.client.get(CALL, headers=old).status_code == 200
    console.as_user("quan")
    reset = console.post(
        f"/agent/admin/users/{user_id(console, 'minh')}/password", {"password": NEW_PASSWORD}
    )
    assert reset.status_code == 303
    console.client.cookies.clear()
    assert console.client.get(CALL, headers=old).status_code == 401
    # the honest user, with the new password, gets a token that works
    fresh = console.client.post("/api/agent/token", json={"username": "minh", "password": NEW_PASSWORD})
    assert fresh.status_code == 200
    assert (
        console.client.get(CALL, headers={"Authorization": f"Bearer {fresh.json()['token']}"}).status_code
        == 200
    )


def test_a_login_that_raced_with_the_reset_gets_a_dead_token(console: Console) -> None:
    console.bearer("minh")  # minh exists and can take tokens
    auth, users = console.state.console.auth, console.state.console.users
    before_reset = console.call(users.get, user_id(console, "minh"))  # what a login read just before
    console.call(users.set_password, before_reset.id, NEW_PASSWORD)
    token, _ = console.call(auth.issue_token, before_reset)  # written after the reset
    assert console.client.get(CALL, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_deactivation_ends_tokens_and_reactivation_does_not_revive_them(console: Console) -> None:
    old = console.bearer("minh")
    console.as_user("quan")
    minh = user_id(console, "minh")
    assert console.post(f"/agent/admin/users/{minh}/disable").status_code == 303
    assert console.post(f"/agent/admin/users/{minh}/enable").status_code == 303
    console.client.cookies.clear()
    assert console.client.get(CALL, headers=old).status_code == 401
    assert console.client.get(CALL, headers=console.bearer("minh")).status_code == 200
