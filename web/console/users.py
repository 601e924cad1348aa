"""Console users: the store, and the `create-user` command (README.md, Commands)."""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry_client.clock import Clock, utc_now
from web.console.passwords import hash_password, password_problem
from web.console.tables import ApiTokenRow, ConsoleSessionRow, ConsoleUserRow

_USERNAME = re.compile(r"^[\w.\-]{2,64}$")


class Role(StrEnum):
    AGENT = "agent"
    SITE = "site"
    ADMIN = "admin"


@dataclass(frozen=True)
class ConsoleUser:
    id: int
    username: str
    role: Role
    site_code: str | None
    disabled: bool = False
    credentials_version: int = 0  # changes with every password change or deactivation

    @property
    def actor(self) -> str:
        """How the user appears in the audit log and case history."""
        if self.role == Role.SITE:
            return f"site:{(self.site_code or '').lower()}/{self.username}"
        return f"{self.role.value}:{self.username}"

    @property
    def audience(self) -> str:
        """The notification list this user reads."""
        if self.role == Role.SITE:
            return f"site:{self.site_code}"
        return "hotline" if self.role == Role.AGENT else "admin"


class UserError(Exception):
    """A refused user change; `key` is an i18n key for the reason."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def normalize_username(name: str) -> str:
    return (name or "").strip().casefold()


def to_user(row: ConsoleUserRow) -> ConsoleUser:
    return ConsoleUser(
        row.id, row.username, Role(row.role), row.site_code, bool(row.disabled), row.credentials_version or 0
    )


def validate_new_user(username: str, role: str, site_code: str | None, password: str) -> None:
    if not _USERNAME.match(username):
        raise UserError("username_invalid")
    if role not in {r.value for r in Role}:
        raise UserError("role_invalid")
    if role == Role.SITE and not site_code:
        raise UserError("site_required")
    problem = password_problem(password)
    if problem:
        raise UserError(problem)


class UserStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock

    async def create(
        self, name: str, role: str, site_code: str | None, password: str, created_by: str
    ) -> ConsoleUser:
        username = normalize_username(name)
        site_code = (site_code or "").strip().upper() or None
        validate_new_user(username, role, site_code, password)
        row = ConsoleUserRow(
            username=username,
            role=role,
            site_code=site_code if role == Role.SITE else None,
            password_hash=hash_password(password),
            disabled=False,
            created_at=self.clock(),
            created_by=created_by,
        )
        try:
            async with self.sessions() as session, session.begin():
                session.add(row)
                await session.flush()
                return to_user(row)
        except IntegrityError:
            raise UserError("username_taken") from None

    async def get(self, user_id: int) -> ConsoleUser | None:
        async with self.sessions() as session:
            row = await session.get(ConsoleUserRow, user_id)
            return to_user(row) if row is not None else None

    async def list_all(self) -> list[ConsoleUser]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(ConsoleUserRow).order_by(ConsoleUserRow.role, ConsoleUserRow.username)
            )
            return [to_user(r) for r in rows.all()]

    async def usernames_for_audience(self, audience: str) -> list[str]:
        users = await self.list_all()
        return [u.username for u in users if u.audience == audience and not u.disabled]

    async def set_disabled(self, user_id: int, disabled: bool) -> ConsoleUser:
        async with self.sessions() as session, session.begin():
            row = await session.get(ConsoleUserRow, user_id)
            if row is None:
                raise UserError("user_not_found")
            row.disabled = disabled
            row.credentials_version = (row.credentials_version or 0) + 1  # ends every token
            if disabled:  # a disabled user is logged out everywhere at once
                await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user_id == user_id))
                await session.execute(delete(ApiTokenRow).where(ApiTokenRow.user_id == user_id))
            return to_user(row)

    async def set_password(self, user_id: int, password: str) -> None:
        problem = password_problem(password)
        if problem:
            raise UserError(problem)
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(ConsoleUserRow)
                .where(ConsoleUserRow.id == user_id)
                .values(
                    password_hash=hash_password(password),
                    credentials_version=ConsoleUserRow.credentials_version + 1,  # ends every token
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise UserError("user_not_found")
            await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.user_id == user_id))
            await session.execute(delete(ApiTokenRow).where(ApiTokenRow.user_id == user_id))


# -- the command line ----------------------------------------------------------------------------

_CLI_REASONS = {
    "username_invalid": "the name must be 2-64 letters, digits, '.', '_' or '-'",
    "role_invalid": "the role must be agent, site or admin",
    "site_required": "role site needs --site CODE",
    "password_too_short": "the password must have at least 8 characters",
    "password_whitespace": "the password must not begin or end with spaces",
    "username_taken": "a user with this name exists already",
}


def _read_password(password_stdin: bool) -> str | None:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n") if line else None
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password again: "):
            print("The passwords differ.", file=sys.stderr)
            return None
        return first
    print("Give the password on standard input with --password-stdin.", file=sys.stderr)
    return None


async def _site_warning(settings: object, engine: object, site_code: str) -> str | None:
    """None when the site is known; a warning when it cannot be checked; raises UserError when unknown."""
    from registry_client.errors import RecordNotFound, RegistryError
    from registry_client.factory import build_registry

    registry = build_registry(settings, engine)  # type: ignore[arg-type]
    try:
        await registry.get_site(site_code)
        return None
    except RecordNotFound:
        sites = await registry.list_sites()
        if sites:
            known = ", ".join(s.code for s in sites[:20])
            raise UserError(f"unknown site {site_code} (known: {known})") from None
        hint = ""
        if getattr(settings, "registry_backend", "") == "fhir":
            system = getattr(settings, "fhir_identifier_system_site", "")
            hint = f" (no Location or Organization with an identifier under {system}; see FHIR_IDENTIFIER_SYSTEM_SITE)"
        return f"warning: the registry has no sites yet{hint}; {site_code} is not checked"
    except RegistryError as exc:
        return f"warning: could not check site {site_code}: {exc}"
    finally:
        await registry.close()


def create_user_cli(settings: object, name: str, role: str, site: str | None, password_stdin: bool) -> int:
    from db.base import make_async_engine, make_sessionmaker
    from db.migrate import migrate

    database_url: str = settings.database_url  # type: ignore[attr-defined]
    migrate(database_url)
    if role == Role.SITE and not site:
        print("Role site needs --site CODE.", file=sys.stderr)
        return 2
    password = _read_password(password_stdin)
    if password is None:
        print("No password given.", file=sys.stderr)
        return 2

    async def run() -> int:
        engine = make_async_engine(database_url)
        try:
            site_code = site.strip().upper() if site and role == Role.SITE else None
            if site_code:
                warning = await _site_warning(settings, engine, site_code)
                if warning:
                    print(warning, file=sys.stderr)
            store = UserStore(make_sessionmaker(engine))
            user = await store.create(name, role, site_code, password, created_by="cli")
        except UserError as exc:
            print(f"User not created: {_CLI_REASONS.get(exc.key, exc.key)}.", file=sys.stderr)
            return 1
        finally:
            await engine.dispose()
        where = f" at site {user.site_code}" if user.site_code else ""
        print(f"Created console user {user.username} (role {user.role.value}{where}).")
        return 0

    return asyncio.run(run())
