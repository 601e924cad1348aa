"""A stranger cannot lock a console user out.

The attack: five wrong passwords for a name locked that account — an admin's included — for
15 minutes, for everyone, so anyone who knew the name could keep the hotline's admin out.
Now failures count per (user, client address) and per address, with growing waits for that
address only; every try is counted before the password is compared. Tried through the real
routes (`/agent/login`, `/api/agent/token`), with the client address of each request set the way
a server sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app import create_app
from registry_client.embedded.demo import load_demo
from tests.console.conftest import PASSWORD, USERS, cheap_argon2, csrf_of, make_settings  # noqa: F401
from web.console.login_throttle import ADDRESS_FREE, PAIR_FREE

STRANGER, ADMIN_DESK, AGENT_DESK = "203.0.113.66", "198.51.100.7", "198.51.100.8"


class FromAddress:
    """The app as a server sees it: each request's client address taken from `X-Peer` (tests only)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            peer = dict(scope["headers"]).get(b"x-peer")
            if peer:
                scope = {**scope, "client": (peer.decode(), 40000)}
        await self.app(scope, receive, send)


@pytest.fixture
def service(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    app = create_app(make_settings(sqlite_url, tmp_path / "data"))
    with TestClient(FromAddress(app), base_url="http://testserver") as client:
        client.portal.call(lambda: load_demo(app.state.registry.inner, 0))
        for name, role, site in USERS:
            client.portal.call(
                lambda n=name, r=role, s=site: app.state.console.users.create(n, r, s, PASSWORD, "t")
            )
        yield client, sqlite_url


def form_login(client: TestClient, username: str, password: str, peer: str) -> int:
    client.cookies.clear()
    page = client.get("/agent/login", headers={"X-Peer": peer})
    return client.post(
        "/agent/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        headers={"X-Peer": peer},
        follow_redirects=False,
    ).status_code


def api_login(client: TestClient, username: str, password: str, peer: str) -> Any:
    return client.post(
        "/api/agent/token", json={"username": username, "password": password}, headers={"X-Peer": peer}
    )


def compared(url: str, peer: str) -> int:
    """How many passwords were actually compared for tries from `peer` (one row per comparison)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM console_login_attempts WHERE client_ip = :ip"), {"ip": peer}
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_fifty_failures_by_a_stranger_do_not_keep_the_admin_out(service: tuple[TestClient, str]) -> None:
    client, url = service
    answers = [form_login(client, "quan", f"guess-{i}", STRANGER) for i in range(25)]
    answers += [api_login(client, "quan", f"guess-{i}", STRANGER).status_code for i in range(25)]
    assert set(answers) <= {401, 429} and answers[:PAIR_FREE] == [401] * PAIR_FREE
    assert answers.count(429) >= 40  # the stranger's address waits longer and longer
    assert compared(url, STRANGER) <= PAIR_FREE + 4  # refused tries are never compared
    # the honest admin, from the admin's own desk, at once: page and API
    assert form_login(client, "quan", PASSWORD, ADMIN_DESK) == 303
    token = api_login(client, "quan", PASSWORD, ADMIN_DESK)
    assert token.status_code == 200 and token.json()["token"]
    # and the stranger, even with the right password, still waits
    locked = api_login(client, "quan", PASSWORD, STRANGER)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1


def test_an_address_that_tries_many_names_is_slowed(service: tuple[TestClient, str]) -> None:
    client, url = service
    names = [f"user{i}" for i in range(ADDRESS_FREE + 10)] + ["lan"]
    answers = [api_login(client, name, "wrong", STRANGER).status_code for name in names]
    assert answers[:ADDRESS_FREE] == [401] * ADDRESS_FREE and answers[-1] == 429
    assert compared(url, STRANGER) <= ADDRESS_FREE + 4
    assert api_login(client, "lan", PASSWORD, AGENT_DESK).status_code == 200  # lan, from her desk


def test_concurrent_guesses_get_no_more_comparisons_than_the_budget(service: tuple[TestClient, str]) -> None:
    client, url = service
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: api_login(client, "lan", f"g{i}", STRANGER).status_code, range(40)))
    assert set(answers) <= {401, 429}
    assert compared(url, STRANGER) == answers.count(401) <= PAIR_FREE + 2
    assert api_login(client, "lan", PASSWORD, AGENT_DESK).status_code == 200


def test_the_honest_user_who_mistypes_is_not_slowed_and_starts_afresh(
    service: tuple[TestClient, str],
) -> None:
    client, _ = service
    for _ in range(PAIR_FREE):
        assert form_login(client, "lan", "typo", AGENT_DESK) == 401
    assert form_login(client, "lan", PASSWORD, AGENT_DESK) == 303
    for _ in range(PAIR_FREE):  # the success cleared her count
        assert form_login(client, "lan", "typo", AGENT_DESK) == 401
    assert form_login(client, "lan", PASSWORD, AGENT_DESK) == 303
