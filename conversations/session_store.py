"""The conversation's per-request reads and light writes in SQL, with SQLAlchemy Core.

`load` fetches, in one connection, what nearly every turn needs: a provider delivery's stored
answer (when the inbound carries a dedup key), the session row and the caller's live bindings.
`save_light` writes the session state of a turn that changed nothing else (menu navigation).
Turns with effects or outbound messages are written by the service in one ORM transaction.

Statements are built once (building one costs more than running it) and run through
`db.fast_access` (SQLite: the synchronous driver on one thread instead of aiosqlite).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Insert,
    String,
    Table,
    Update,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from conversations.model import Turn
from conversations.state import SessionState, replies_from_json
from conversations.tables import ChannelBindingRow, ConversationSessionRow, InboundReceiptRow
from db.fast_access import DriverStatement, FastAccess
from registry_client.clock import as_utc

T = TypeVar("T")

SESSIONS = cast(Table, ConversationSessionRow.__table__)
BINDINGS = cast(Table, ChannelBindingRow.__table__)
RECEIPTS = cast(Table, InboundReceiptRow.__table__)

# Fields of the session state that must survive the loss of the hot copy (Redis): the rest is
# where the caller is in a menu, which a lost copy merely resets.
DURABLE_FIELDS = ("language", "person_id", "last_ref", "code_until")


# Built once: constructing a statement costs more than running it (~80 µs against ~25 µs here).
_RECEIPT = select(RECEIPTS.c.replies, RECEIPTS.c.end).where(RECEIPTS.c.key == bindparam("key"))
_SESSION = select(SESSIONS.c.id, SESSIONS.c.state, SESSIONS.c.session_key, SESSIONS.c.updated_at).where(
    SESSIONS.c.channel == bindparam("channel"), SESSIONS.c.address == bindparam("address")
)
_SESSION_ID = select(SESSIONS.c.id).where(
    SESSIONS.c.channel == bindparam("channel"), SESSIONS.c.address == bindparam("address")
)
_BINDINGS = (
    select(BINDINGS.c.person_id, BINDINGS.c.expires_at)
    .where(
        BINDINGS.c.channel == bindparam("channel"),
        BINDINGS.c.address == bindparam("address"),
        BINDINGS.c.expires_at > bindparam("now", type_=BINDINGS.c.expires_at.type),
    )
    .order_by(BINDINGS.c.bound_at.desc(), BINDINGS.c.id.desc())
)
_COLUMNS = ("state", "language", "session_key", "updated_at", "expires_at")
# `state` arrives serialised (`state_text`) and is bound as text, so that it is not serialised
# again (PostgreSQL casts the text to the json column's type; SQLite stores it as it is).


@functools.cache
def _statements(dialect: str) -> tuple[Update, Insert]:
    def param(name: str) -> ColumnElement[Any]:
        if name != "state":
            return bindparam(f"v_{name}", type_=SESSIONS.c[name].type)
        text = bindparam("v_state", type_=String())
        return sql_cast(text, JSON) if dialect == "postgresql" else text

    columns = {name: param(name) for name in _COLUMNS}
    update_row = update(SESSIONS).where(SESSIONS.c.id == bindparam("row_id")).values(columns)
    insert_row = insert(SESSIONS).values(
        channel=bindparam("channel"), address=bindparam("address"), **columns
    )
    return update_row, insert_row


def state_text(state: SessionState) -> str:
    """The session state as the `state` column and the hot copies keep it (JSON text)."""
    return json.dumps(state.to_json(), separators=(",", ":"))


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
    sql_in_flow: bool = False  # the SQL copy holds a flow in progress (a restart offers to resume it)

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
        self.fast = FastAccess.for_engine(engine)
        self._update = DriverStatement(_statements(engine.dialect.name)[0], engine.dialect)

    async def close(self) -> None:
        """Nothing of its own to close: `db.fast_access` closes with the engine's `dispose()`."""

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
                receipt = conn.execute(_RECEIPT, {"key": dedup_key}).first()
                if receipt is not None:
                    snap.receipt = Turn(replies_from_json(receipt.replies), end=bool(receipt.end))
                    return snap
            if session:
                snap.loaded = _session(conn, channel, address)
            if bindings:
                snap.bound = bindings_of(conn, channel, address, now)
            return snap

        return await self.fast.read(run)

    # -- light writes ---------------------------------------------------------------------------
    async def save_light(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        """Writes the session row of a turn that changed nothing else (creates it if needed)."""
        if loaded.row_id is not None and await self.fast.update_one(
            self._update, {"row_id": loaded.row_id, **_params(values)}
        ):
            return

        def run(conn: Connection) -> None:
            write_session(conn, loaded, channel, address, values)

        try:
            await self.fast.write(run, relaxed=True)
        except IntegrityError:  # a concurrent first turn of this caller created the row
            loaded.row_id = None
            await self.fast.write(run, relaxed=True)


def _session(conn: Connection, channel: str, address: str) -> Loaded:
    row = conn.execute(_SESSION, {"channel": channel, "address": address}).first()
    if row is None:
        return Loaded.new()
    state = SessionState.from_json(row.state)
    updated = as_utc(row.updated_at)
    return Loaded(
        row.id, state, updated, row.session_key, durable_view(state), updated, state.flow is not None
    )


def bindings_of(conn: Connection, channel: str, address: str, now: datetime) -> list[tuple[str, datetime]]:
    rows = conn.execute(_BINDINGS, {"channel": channel, "address": address, "now": now}).all()
    return [(r.person_id, as_utc(r.expires_at)) for r in rows]


def _params(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{name}": values[name] for name in _COLUMNS}


def write_session(
    conn: Connection, loaded: Loaded, channel: str, address: str, values: dict[str, Any]
) -> None:
    """Updates the caller's row, or inserts it; sets `loaded.row_id`. Raises IntegrityError when a
    concurrent turn inserted it first (the caller retries with `row_id` None)."""
    params = _params(values)
    update_row, insert_row = _statements(conn.dialect.name)
    if loaded.row_id is not None:
        if conn.execute(update_row, {"row_id": loaded.row_id, **params}).rowcount:
            return
    existing = conn.execute(_SESSION_ID, {"channel": channel, "address": address}).scalar()
    if existing is not None:
        loaded.row_id = existing
        conn.execute(update_row, {"row_id": existing, **params})
        return
    result = conn.execute(insert_row, {"channel": channel, "address": address, **params})
    loaded.row_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
