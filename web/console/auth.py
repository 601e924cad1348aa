"""Console authentication: login with lockout, server-side sessions in a signed cookie, CSRF
tokens, and expiring bearer tokens for call-centre software.

- The session cookie holds a random id signed with the console's own key (derived from
  SECRET_KEY, `SecretKeys.console_sessions`); the table keeps only its SHA-256.
  A new id is made at every login (no session fixation) and the old one is deleted.
- CSRF: a logged-in form carries the session's token; the login form (no session yet) uses a
  signed double-submit cookie.
- Failed logins slow down the address that makes them, never the account for everyone
  (`web.console.login_throttle`): each try is counted before the password is compared.
- Bearer tokens carry the user's credentials version: a password change or deactivation ends
  every token issued before it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from registry_client.clock import Clock, as_utc, utc_now
from web.console.login_throttle import LoginThrottle
from web.console.passwords import hash_password, needs_rehash, verify_password
from web.console.tables import ApiTokenRow, ConsoleSessionRow, ConsoleUserRow, LoginAttemptRow
from web.console.users import ConsoleUser, normalize_username, to_user

SESSION_COOKIE = "vx_console"
LOGIN_CSRF_COOKIE = "vx_login_csrf"
LANG_COOKIE = "vx_lang"
COOKIE_PATH = "/agent"

SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(hours=12)
TOKEN_TTL = timedelta(hours=8)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    user: ConsoleUser | None = None
    retry_after: int = 0  # seconds to wait before the next try from this address, when LOCKED


@dataclass(frozen=True)
class SessionInfo:
    user: ConsoleUser
    csrf_token: str


class Auth:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        secret_key: bytes | str,
        *,
        secure_cookies: bool,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions, self.clock, self.secure_cookies = sessions, clock, secure_cookies
        self._session_signer = URLSafeSerializer(secret_key, salt="vx-console-session")
        self._csrf_signer = URLSafeSerializer(secret_key, salt="vx-console-login-csrf")
        self.throttle = LoginThrottle(sessions, clock=clock)

    # -- login --------------------------------------------------------------------------------
    async def login(self, name: str, password: str, client_ip: str) -> LoginResult:
        username = normalize_username(name)[:64]
        client_ip = (client_ip or "unknown")[:64]
        wait = await self.throttle.take(username, client_ip)  # counted before any comparison
        if wait:
            return LoginResult(LoginOutcome.LOCKED, retry_after=wait)
        async with self.sessions() as session, session.begin():
            row = await session.scalar(select(ConsoleUserRow).where(ConsoleUserRow.username == username))
            ok = verify_password(row.password_hash if row is not None else None, password)
            ok = ok and row is not None and not row.disabled
            session.add(LoginAttemptRow(username=username, client_ip=client_ip, at=self.clock(), success=ok))
            if not ok or row is None:
                return LoginResult(LoginOutcome.BAD_CREDENTIALS)
            row.last_login_at = self.clock()
            if needs_rehash(row.password_hash):
                row.password_hash = hash_password(password)
            user = to_user(row)
        await self.throttle.succeeded(username, client_ip)
        return LoginResult(LoginOutcome.OK, user)

    # -- sessions -----------------------------------------------------------------------------
    async def open_session(self, user: ConsoleUser, previous_cookie: str | None = None) -> str:
        """A fresh session for `user` (the previous one, if any, is destroyed). Returns the cookie value."""
        raw = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            old = self._unsign(previous_cookie)
            if old is not None:
                await session.execute(
                    delete(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == _digest(old))
                )
            await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at < now))
            session.add(
                ConsoleSessionRow(
                    id_hash=_digest(raw),
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_MAX,
                )
            )
        return self._session_signer.dumps(raw)

    def _unsign(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            value = self._session_signer.loads(cookie)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    async def session_info(self, cookie: str | None) -> SessionInfo | None:
        raw = self._unsign(cookie)
        if raw is None:
            return None
        now = self.clock()
        async with self.sessions() as session, session.begin():
            row = await session.get(ConsoleSessionRow, _digest(raw))
            if row is None:
                return None
            if as_utc(row.expires_at) <= now or as_utc(row.last_seen_at) + SESSION_IDLE <= now:
                await session.delete(row)
                return None
            user_row = await session.get(ConsoleUserRow, row.user_id)
            if user_row is None or user_row.disabled:
                await session.delete(row)
                return None
            if now - as_utc(row.last_seen_at) > timedelta(minutes=1):
                row.last_seen_at = now
            return SessionInfo(to_user(user_row), row.csrf_token)

    async def close_session(self, cookie: str | None) -> None:
        raw = self._unsign(cookie)
        if raw is None:
            return
        async with self.sessions() as session, session.begin():
            await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.id_hash == _digest(raw)))

    def set_session_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(SESSION_MAX.total_seconds()),
            path=COOKIE_PATH,
            httponly=True,
            secure=self.secure_cookies,
            samesite="lax",
        )

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path=COOKIE_PATH, httponly=True, secure=self.secure_cookies, samesite="lax"
        )

    # -- CSRF for the login form (no session yet): signed double-submit cookie ------------------
    def login_csrf(self, cookie: str | None) -> tuple[str, str | None]:
        """(token for the form, new cookie value or None when the current cookie is kept)."""
        if cookie:
            try:
                token = self._csrf_signer.loads(cookie)
                if isinstance(token, str):
                    return token, None
            except BadSignature:
                pass
        token = secrets.token_urlsafe(32)
        return token, self._csrf_signer.dumps(token)

    def login_csrf_valid(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            token = self._csrf_signer.loads(cookie)
        except BadSignature:
            return False
        return isinstance(token, str) and hmac.compare_digest(token, submitted)

    def set_login_csrf_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            value,
            path=COOKIE_PATH,
            httponly=True,
            secure=self.secure_cookies,
            samesite="strict",
        )

    # -- bearer tokens --------------------------------------------------------------------------
    async def issue_token(self, user: ConsoleUser) -> tuple[str, datetime]:
        """A token bound to the user's credentials version as of `user` (read at login): a
        password change or deactivation since then leaves it dead from the start."""
        token = "vxt_" + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + TOKEN_TTL
        async with self.sessions() as session, session.begin():
            await session.execute(delete(ApiTokenRow).where(ApiTokenRow.expires_at < now))
            session.add(
                ApiTokenRow(
                    token_hash=_digest(token),
                    user_id=user.id,
                    created_at=now,
                    expires_at=expires,
                    credentials_version=user.credentials_version,
                )
            )
        return token, expires

    async def token_user(self, token: str | None) -> ConsoleUser | None:
        if not token:
            return None
        async with self.sessions() as session:
            row = await session.get(ApiTokenRow, _digest(token))
            if row is None or as_utc(row.expires_at) <= self.clock():
                return None
            user_row = await session.get(ConsoleUserRow, row.user_id)
            if user_row is None or user_row.disabled:
                return None
            if user_row.credentials_version != row.credentials_version:
                return None  # the password was changed (or the user disabled) since it was issued
            return to_user(user_row)


def csrf_matches(expected: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(expected, submitted or "")
