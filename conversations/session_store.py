"""The conversation's per-request reads and light writes in SQL, with SQLAlchemy Core.

`load` fetches, in one connection, what nearly every turn needs: a provider delivery's stored
answer (when the inbound carries a dedup key), the session row and the caller's live bindings.
`save_light` writes the session state of a turn that changed nothing else (menu navigation).
Turns with effects or outbound messages are written by the service in one ORM transaction.

On SQLite these statements run on one dedicated thread with the synchronous driver: aiosqlite
hops between the event loop and its thread several times per statement (measured: 0.7 ms per
point select against 0.05 ms synchronously, bench/README in the closing note), and a single
thread also serialises this process's light writes, which SQLite would do anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from conversations.model import Turn
from conversations.state import SessionState, replies_from_json
from conversations.tables import ChannelBindingRow, ConversationSessionRow, InboundReceiptRow
from db.base import make_sync_engine, sync_url
from registry_client.clock import as_utc

T = TypeVar("T")

SESSIONS = cast(Table, ConversationSessionRow.__table__)
BINDINGS = cast(Table, ChannelBindingRow.__table__)
RECEIPTS = cast(Table, InboundReceiptRow.__table__)

# Fields of the session state that must survive the loss of the hot copy (Redis): the rest is
# where the caller is in a menu, which a lost copy merely resets.
DURABLE_FIELDS = ("language", "person_id", "last_ref", "code_until")


def durable_view(state: SessionState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in DURABLE_FIELDS}


@dataclasses.dataclass
class Loaded:
    """A caller's session as read at the start of a turn."""

    row_id: int | None  # the SQL row (None: none yet)
    state: SessionState
    updated_at: datetime | None  # the last turn (None: a new caller)
    session_key: str | None
    durable: dict[str, Any]  # the durable fields as the SQL copy holds them
    durable_at: datetime | None = None  # when the SQL copy was last written

    @property
    def exists(self) -> bool:
        return self.updated_at is not None

    @classmethod
    def new(cls) -> Loaded:
        state = SessionState()
        return cls(None, state, None, None, durable_view(state))


@dataclasses.dataclass
class Snapshot:
    """What `load` found: a stored answer for a repeated delivery, or the session and bindings."""

    receipt: Turn | None = None
    loaded: Loaded | None = None
    bound: list[tuple[str, datetime]] | None = None  # (person id, binding expiry), newest first


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.dialect == "sqlite":
            url = sync_url(engine.url.render_as_string(hide_password=False))
            self._sync = make_sync_engine(url)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-sessions")

    async def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()

    # -- running statements --------------------------------------------------------------------
    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._sync is not None:
            sync = self._sync

            def run() -> T:
                with sync.connect() as conn:
                    return fn(conn)

            return await asyncio.get_running_loop().run_in_executor(self._thread, run)
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn)

    async def _write(self, fn: Callable[[Connection], T], *, relaxed: bool) -> T:
        if self._sync is not None:
            sync = self._sync

            def run() -> T:
                with sync.begin() as conn:
                    return fn(conn)

            return await asyncio.get_running_loop().run_in_executor(self._thread, run)
        async with self.engine.begin() as conn:
            if relaxed and self.dialect == "postgresql":
                # Only where-am-I state: losing its last instant in a database crash is harmless,
                # so the commit does not wait for the WAL flush.
                await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            return await conn.run_sync(fn)

    # -- reads ----------------------------------------------------------------------------------
    async def load(
        self,
        channel: str,
        address: str,
        *,
        now: datetime,
        dedup_key: str | None = None,
        session: bool = True,
        bindings: bool = True,
    ) -> Snapshot:
        def run(conn: Connection) -> Snapshot:
            snap = Snapshot()
            if dedup_key is not None:
                receipt = conn.execute(
                    select(RECEIPTS.c.replies, RECEIPTS.c.end).where(RECEIPTS.c.key == dedup_key)
                ).first()
                if receipt is not None:
                    snap.receipt = Turn(replies_from_json(receipt.replies), end=bool(receipt.end))
                    return snap
            if session:
                snap.loaded = _session(conn, channel, address)
            if bindings:
                snap.bound = _bindings(conn, channel, address, now)
            return snap

        return await self._read(run)

    # -- light writes ---------------------------------------------------------------------------
    async def save_light(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        """Writes the session row of a turn that changed nothing else (creates it if needed)."""

        def run(conn: Connection) -> None:
            write_session(conn, loaded, channel, address, values)

        try:
            await self._write(run, relaxed=True)
        except IntegrityError:  # a concurrent first turn of this caller created the row
            loaded.row_id = None
            await self._write(run, relaxed=True)

    async def touch_many(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        """Writes several sessions' rows at once (unused rows are skipped)."""

        def run(conn: Connection) -> None:
            for row_id, values in rows:
                conn.execute(update(SESSIONS).where(SESSIONS.c.id == row_id).values(**values))

        await self._write(run, relaxed=True)


def _session(conn: Connection, channel: str, address: str) -> Loaded:
    row = conn.execute(
        select(SESSIONS.c.id, SESSIONS.c.state, SESSIONS.c.session_key, SESSIONS.c.updated_at).where(
            SESSIONS.c.channel == channel, SESSIONS.c.address == address
        )
    ).first()
    if row is None:
        return Loaded.new()
    state = SessionState.from_json(row.state)
    updated = as_utc(row.updated_at)
    return Loaded(row.id, state, updated, row.session_key, durable_view(state), updated)


def _bindings(conn: Connection, channel: str, address: str, now: datetime) -> list[tuple[str, datetime]]:
    rows = conn.execute(
        select(BINDINGS.c.person_id, BINDINGS.c.expires_at)
        .where(BINDINGS.c.channel == channel, BINDINGS.c.address == address, BINDINGS.c.expires_at > now)
        .order_by(BINDINGS.c.bound_at.desc(), BINDINGS.c.id.desc())
    ).all()
    return [(r.person_id, as_utc(r.expires_at)) for r in rows]


def write_session(
    conn: Connection, loaded: Loaded, channel: str, address: str, values: dict[str, Any]
) -> None:
    """Updates the caller's row, or inserts it; sets `loaded.row_id`. Raises IntegrityError when a
    concurrent turn inserted it first (the caller retries with `row_id` None)."""
    if loaded.row_id is not None:
        done = conn.execute(update(SESSIONS).where(SESSIONS.c.id == loaded.row_id).values(**values))
        if done.rowcount:
            return
    existing = conn.execute(
        select(SESSIONS.c.id).where(SESSIONS.c.channel == channel, SESSIONS.c.address == address)
    ).scalar()
    if existing is not None:
        loaded.row_id = existing
        conn.execute(update(SESSIONS).where(SESSIONS.c.id == existing).values(**values))
        return
    result = conn.execute(insert(SESSIONS).values(channel=channel, address=address, **values))
    loaded.row_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
