"""Login, sessions (cookie flags, fixation, logout, idle expiry), CSRF, lockout, bearer tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import create_app
from db.base import make_async_engine, make_sessionmaker
from tests.console.conftest import PASSWORD, Console, csrf_of, make_settings
from web.console.auth import (
    SESSION_COOKIE,
    SESSION_IDLE,
    TOKEN_TTL,
    Auth,
    LoginOutcome,
)
from web.console.login_throttle import MAX_DELAY, PAIR_FREE
from web.console.users import UserStore


def test_login_sets_a_hardened_session_cookie(console: Console) -> None:
    response = console.login("lan")
    assert response.status_code == 303 and response.headers["location"] == "/agent/search"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/agent" in flags
    assert "secure" not in flags  # PUBLIC_BASE_URL is http here
    assert console.client.get("/agent/search").status_code == 200


def test_cookie_is_secure_when_the_public_url_is_https(sqlite_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(sqlite_url, tmp_path, public_base_url="https://vax.example.vn"))
    with TestClient(app, base_url="https://testserver") as client:
        client.portal.call(lambda: app.state.console.users.create("lan", "agent", None, PASSWORD, "t"))
        page = client.get("/agent/login")
        response = client.post(
            "/agent/login",
            data={"username": "lan", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        cookie = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "=")
        )
        assert "secure" in cookie.lower()


def test_wrong_password_and_unknown_user_get_the_same_answer(console: Console) -> None:
    wrong = console.login("lan", "not the password")
    unknown = console.login("nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        "Sai tên đăng nhập hoặc mật khẩu" in wrong.text and "Sai tên đăng nhập hoặc mật khẩu" in unknown.text
    )
    assert SESSION_COOKIE not in console.client.cookies


def _session_cookie(response) -> str:  # type: ignore[no-untyped-def]
    header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    return header.split(";", 1)[0].split("=", 1)[1]


def test_session_id_changes_at_login_and_the_old_one_dies(console: Console) -> None:
    client = console.client
    planted = "attacker-chosen-session-id"
    client.cookies.set(SESSION_COOKIE, planted, domain="testserver.local", path="/agent")
    login = console.login("lan")
    assert login.status_code == 303
    first = _session_cookie(login)
    assert first and first != planted
    again = console.login("lan")  # a second login from the same browser
    assert again.status_code == 303
    second = _session_cookie(again)
    assert second and second != first
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, first, domain="testserver.local", path="/agent")
    response = client.get("/agent/search", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/agent/login")


def test_logout_ends_the_session(console: Console) -> None:
    console.client.cookies.clear()
    cookie = _session_cookie(console.login("lan"))
    assert console.post("/agent/logout").headers["location"] == "/agent/login"
    console.client.cookies.clear()
    console.client.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local", path="/agent")
    assert console.client.get("/agent/search", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "url,data",
    [
        ("/agent/persons/{pid}/send-link", {"channel": "sms"}),
        ("/agent/admin/users", {"username": "mallory", "role": "admin", "password": "p4ssw0rd-long"}),
        ("/agent/logout", {}),
    ],
)
def test_posts_without_a_valid_csrf_token_are_refused(
    console: Console, url: str, data: dict[str, str]
) -> None:
    console.as_user("quan")
    url = url.format(pid=console.handle(console.people["001085012345"]))
    missing = console.client.post(url, data=data, follow_redirects=False)
    wrong = console.client.post(url, data={**data, "csrf_token": "forged"}, follow_redirects=False)
    assert missing.status_code == wrong.status_code == 403
    other_token = console.token()
    console.as_user("lan")  # a token from another session is no good either
    assert (
        console.client.post(url, data={**data, "csrf_token": other_token}, follow_redirects=False).status_code
        == 403
    )
    console.as_user("quan")
    users = [u.username for u in console.call(console.state.console.users.list_all)]
    assert "mallory" not in users
    outbox = console.call(console.state.outbox.depth)
    assert outbox == {}  # no link was sent


def test_login_form_needs_its_csrf_cookie(console: Console) -> None:
    console.client.get("/agent/login")
    token = csrf_of(console.client.get("/agent/login").text)
    console.client.cookies.clear()
    response = console.client.post(
        "/agent/login", data={"username": "lan", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 403


def test_repeated_failures_slow_down_that_address(console: Console) -> None:
    # failures from one address for one name: free at first, then growing waits (1 s, 2 s, 4 s …)
    answers = [console.login("lan", "wrong password").status_code for _ in range(PAIR_FREE + 6)]
    assert answers[:PAIR_FREE] == [401] * PAIR_FREE and 429 in answers
    locked = console.login("lan")  # even the right password, until the wait is over
    assert locked.status_code == 429
    assert "Quá nhiều lần đăng nhập sai" in locked.text
    token = console.client.post("/api/agent/token", json={"username": "lan", "password": PASSWORD})
    assert token.status_code == 429 and int(token.headers["retry-after"]) > 0
    assert console.login("minh").status_code == 303  # other users are not affected


def test_disabled_user_is_logged_out_and_cannot_log_in(console: Console) -> None:
    console.as_user("lan")
    lan = next(u for u in console.call(console.state.console.users.list_all) if u.username == "lan")
    console.call(console.state.console.users.set_disabled, lan.id, True)
    assert console.client.get("/agent/search", follow_redirects=False).status_code == 303
    assert console.login("lan").status_code == 401


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def auth_and_users(db_url: str):  # type: ignore[no-untyped-def]
    engine = make_async_engine(db_url)
    sessions = make_sessionmaker(engine)
    clock = Clock()
    yield Auth(sessions, "secret", secure_cookies=False, clock=clock), UserStore(sessions, clock=clock), clock


async def test_lockout_expires_and_tokens_expire(auth_and_users) -> None:  # type: ignore[no-untyped-def]
    auth, users, clock = auth_and_users
    user = await users.create("Lan", "agent", None, PASSWORD, "t")
    assert user.username == "lan"
    for _ in range(PAIR_FREE + 3):
        assert (await auth.login("lan", "nope", "10.0.0.1")).outcome == LoginOutcome.BAD_CREDENTIALS
        clock.now += MAX_DELAY
    locked = await auth.login("LAN", PASSWORD, "10.0.0.1")
    assert locked.outcome == LoginOutcome.OK  # every wait was over: the right password works
    for _ in range(PAIR_FREE + 3):
        await auth.login("lan", "nope", "10.0.0.1")
    locked = await auth.login("LAN", PASSWORD, "10.0.0.1")
    assert locked.outcome == LoginOutcome.LOCKED and 0 < locked.retry_after <= MAX_DELAY.total_seconds()
    clock.now += timedelta(seconds=locked.retry_after)
    ok = await auth.login("lan", PASSWORD, "10.0.0.1")
    assert ok.outcome == LoginOutcome.OK and ok.user == user
    # a success resets the count: one more failure does not lock
    assert (await auth.login("lan", "nope", "10.0.0.1")).outcome == LoginOutcome.BAD_CREDENTIALS
    assert (await auth.login("lan", PASSWORD, "10.0.0.1")).outcome == LoginOutcome.OK

    token, expires = await auth.issue_token(user)
    assert expires == clock.now + TOKEN_TTL
    assert await auth.token_user(token) == user
    assert await auth.token_user(token + "x") is None
    clock.now += TOKEN_TTL
    assert await auth.token_user(token) is None

    cookie = await auth.open_session(user)
    assert (await auth.session_info(cookie)).user == user  # type: ignore[union-attr]
    clock.now += SESSION_IDLE + timedelta(seconds=1)
    assert await auth.session_info(cookie) is None


def test_language_switch_on_the_login_page(console: Console) -> None:
    page = console.client.get("/agent/login")
    assert "Đăng nhập bảng điều khiển" in page.text
    switched = console.client.post(
        "/agent/lang", data={"lang": "en", "back": "/agent/login", "csrf_token": csrf_of(page.text)}
    )
    assert switched.status_code == 200 and "Console login" in switched.text
    assert console.client.post("/agent/lang", data={"lang": "vi", "csrf_token": "forged"}).status_code == 403
    # an open redirect is not possible through `back`
    evil = console.client.post(
        "/agent/lang",
        data={"lang": "vi", "back": "//evil.example/", "csrf_token": csrf_of(switched.text)},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/agent/login"
    login = console.client.get("/agent/login?next=https://evil.example/")
    assert 'name="next" value=""' in login.text
