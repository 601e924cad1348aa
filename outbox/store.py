"""Writing to and claiming from the outbox.

`enqueue` takes the caller's SQLAlchemy session, so the message commits (or not) together with
the state change that caused it. Workers claim due rows with `FOR UPDATE SKIP LOCKED` on
PostgreSQL (several workers never take the same row); SQLite has one writer at a time anyway.

Codes and link tokens are written sealed (outbox/sealing.py): a row keeps them readable only
through `open_row`, and its seal is dropped once the message is sent or has finally failed.
Kept locally (no provider configured), the seal stays for the simulator a day (`LOCAL_KEEP`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from db.clock import Clock, as_utc, utc_now
from db.fast_access import FastAccess
from outbox.sealing import OutboxSeal, SealBroken, mask_message
from outbox.tables import OutboxRow

T = TypeVar("T")

PENDING, SENDING, SENT, DELIVERED, FAILED, LOCAL, UNREACHABLE = (
    "pending",
    "sending",
    "sent",
    "delivered",
    "failed",
    "local",
    "unreachable",
)
# A row stuck in `sending` longer than this (a worker died mid-send) is taken up again.
SENDING_LEASE = timedelta(minutes=2)
# A message kept locally (no provider) stays readable for the simulator this long.
LOCAL_KEEP = timedelta(days=1)
# A message still not sent after this long (its channel has no sender) is given up.
PENDING_KEEP = timedelta(days=7)
_COLUMNS = tuple(attr.key for attr in inspect(OutboxRow).column_attrs)


@dataclass(frozen=True)
class OutboundMessage:
    """A message to send to an address other than the conversation's direct reply."""

    channel: str  # sms | telegram
    address: str
    kind: str  # otp | link | code | notification | ...
    text: str | None = None
    template: str | None = None
    params: dict[str, Any] | None = None
    language: str = "vi"
    media_path: str | None = None
    idempotency_key: str | None = None


async def enqueue(
    session: AsyncSession, message: OutboundMessage, *, seal: OutboxSeal, clock: Clock = utc_now
) -> int | None:
    """Adds the message in the caller's transaction. A repeated idempotency key adds nothing
    (returns None)."""
    return await session.run_sync(lambda sync: enqueue_sync(sync, message, seal=seal, clock=clock))


def enqueue_sync(
    session: Session, message: OutboundMessage, *, seal: OutboxSeal, clock: Clock = utc_now
) -> int | None:
    """`enqueue` for a synchronous Session (a caller whose whole transaction is synchronous code,
    e.g. the conversation engine's turn, run by `AsyncSession.run_sync` or on a SQLite thread)."""
    if message.idempotency_key is not None:
        exists = session.scalar(
            select(OutboxRow.id).where(OutboxRow.idempotency_key == message.idempotency_key)
        )
        if exists is not None:
            return None
    now = clock()
    shown = seal.split(message.channel, message.address, message.text, message.params)
    row = OutboxRow(
        idempotency_key=message.idempotency_key,
        channel=message.channel,
        address=message.address,
        kind=message.kind,
        text=shown.text,
        template=message.template,
        params=shown.params,
        sealed=shown.sealed,
        media_path=message.media_path,
        language=message.language,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def open_row(seal: OutboxSeal, row: Any) -> OutboxRow:
    """A detached copy of an outbox row (an ORM row or a Core result row) with its sealed parts
    back in place: what the sender sends and the simulator shows. Never added to a session, so
    never written back. Raises SealBroken when the seal does not open with this key."""
    values = {key: getattr(row, key) for key in _COLUMNS}
    if values["sealed"]:
        values["text"], values["params"] = seal.join(
            row.channel, row.address, values["text"], values["params"], values["sealed"]
        )
    return OutboxRow(**values)


def masked_row(row: Any) -> OutboxRow:
    """A detached copy of an outbox row as people may see it (the console): codes and link tokens
    masked even in a row written before sealing existed, no seal."""
    values = {key: getattr(row, key) for key in _COLUMNS}
    values["text"], values["params"] = mask_message(values["text"], values["params"])
    values["sealed"] = None
    return OutboxRow(**values)


class Outbox:
    """Operations on the outbox outside a caller's transaction (workers, console, simulator)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, seal: OutboxSeal, clock: Clock = utc_now
    ) -> None:
        self.sessions = sessions
        self.seal = seal
        self.clock = clock
        bind = sessions.kw.get("bind")
        # Writes go through db.fast_access: on SQLite one writer thread per process. An aiosqlite
        # transaction holds SQLite's write lock across event-loop turns; under load that kept the
        # request path's writers sleeping in SQLite's busy handler.
        self._fast = FastAccess.for_engine(bind) if bind is not None else None
        self._wake: asyncio.Event | None = None

    def kick(self) -> None:
        """A message was just committed: this process's worker sends it now, not at its next poll."""
        if self._wake is not None:
            self._wake.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Returns after `timeout` seconds, or earlier when `kick()` is called."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _transaction(self, fn: Callable[[Session], T]) -> T:
        if self._fast is not None:
            return await self._fast.transaction(fn)
        async with self.sessions() as session, session.begin():
            return await session.run_sync(fn)

    async def put(self, message: OutboundMessage) -> int | None:
        row_id = await self._transaction(
            lambda session: enqueue_sync(session, message, seal=self.seal, clock=self.clock)
        )
        self.kick()
        return row_id

    async def claim_due(self, limit: int = 20, channels: tuple[str, ...] | None = None) -> list[OutboxRow]:
        """Marks up to `limit` due rows `sending` and returns them (each to exactly one worker)."""
        now = self.clock()

        def claim(session: Session) -> list[OutboxRow]:
            due = (OutboxRow.status == PENDING) & (OutboxRow.next_attempt_at <= now)
            stale = (OutboxRow.status == SENDING) & (OutboxRow.updated_at <= now - SENDING_LEASE)
            stmt = select(OutboxRow).where(due | stale)
            if channels is not None:
                stmt = stmt.where(OutboxRow.channel.in_(channels))
            stmt = stmt.order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit)
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(session.scalars(stmt).all())
            for row in rows:
                row.status, row.updated_at = SENDING, now
                row.attempts += 1
            return rows

        return await self._transaction(claim)

    def open(self, row: OutboxRow) -> OutboxRow:
        """`open_row` with this outbox's key (SealBroken when it does not open)."""
        return open_row(self.seal, row)

    async def _update(self, row_id: int, **values: Any) -> None:
        values["updated_at"] = self.clock()

        def change(session: Session) -> None:
            session.execute(update(OutboxRow).where(OutboxRow.id == row_id).values(**values))

        await self._transaction(change)

    async def mark_sent(
        self, row_id: int, provider_id: str | None, provider_status: str | None = None
    ) -> None:
        await self._update(
            row_id,
            status=SENT,
            provider_id=provider_id,
            provider_status=provider_status,
            sent_at=self.clock(),
            sealed=None,
        )

    async def mark_local(self, row_id: int) -> None:
        """No provider configured: the message stays here for the simulator and the console."""
        await self._update(row_id, status=LOCAL, sent_at=self.clock())

    async def mark_retry(self, row_id: int, error: str, delay: timedelta, code: str | None = None) -> None:
        await self._update(
            row_id,
            status=PENDING,
            last_error=error[:500],
            error_code=code,
            next_attempt_at=self.clock() + delay,
        )

    async def mark_failed(
        self, row_id: int, error: str, code: str | None = None, *, unreachable: bool = False
    ) -> None:
        await self._update(
            row_id,
            status=UNREACHABLE if unreachable else FAILED,
            last_error=error[:500],
            error_code=code,
            sealed=None,
        )

    async def record_provider_status(self, provider_id: str, status: str, error_code: str | None) -> bool:
        """A delivery callback. Returns False when no message has that provider id."""
        mapped = {"delivered": DELIVERED, "undelivered": FAILED, "failed": FAILED}.get(status)
        now = self.clock()

        def record(session: Session) -> bool:
            row = session.scalar(select(OutboxRow).where(OutboxRow.provider_id == provider_id))
            if row is None:
                return False
            row.provider_status = status
            if error_code:
                row.error_code = error_code
            if mapped is not None:
                row.status = mapped
            row.sealed = None
            row.updated_at = now
            return True

        return await self._transaction(record)

    async def scrub(self) -> int:
        """Drops the seals nobody will open any more: messages kept locally for more than
        `LOCAL_KEEP`; and gives up messages still unsent after `PENDING_KEEP` (their channel has
        no sender). Returns how many rows changed."""
        now = self.clock()

        def drop(session: Session) -> int:
            local = session.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.status == LOCAL,
                    OutboxRow.sealed.is_not(None),
                    OutboxRow.updated_at <= now - LOCAL_KEEP,
                )
                .values(sealed=None, updated_at=now)
            )
            stale = session.execute(
                update(OutboxRow)
                .where(OutboxRow.status == PENDING, OutboxRow.created_at <= now - PENDING_KEEP)
                .values(status=FAILED, sealed=None, last_error="not sent in time: given up", updated_at=now)
            )
            return int(getattr(local, "rowcount", 0) or 0) + int(getattr(stale, "rowcount", 0) or 0)

        return await self._transaction(drop)

    async def messages_to(
        self, channel: str, address: str, since_id: int = 0, limit: int = 50
    ) -> list[OutboxRow]:
        """What the phone (or chat) at `address` got, as it got it — opened copies, for the local
        simulators and tests. No HTTP route serves this."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(OutboxRow)
                .where(OutboxRow.channel == channel, OutboxRow.address == address, OutboxRow.id > since_id)
                .order_by(OutboxRow.id)
                .limit(limit)
            )
            return [self._opened_or_stored(row) for row in rows.all()]

    def _opened_or_stored(self, row: OutboxRow) -> OutboxRow:
        try:
            return self.open(row)
        except SealBroken:
            return row

    async def depth(self) -> dict[str, int]:
        async with self.sessions() as session:
            rows = await session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status))
            return {status: count for status, count in rows.all()}


def backoff(attempt: int, base: float = 2.0, cap: float = 600.0) -> timedelta:
    """Exponential backoff for the n-th failed attempt (1-based): 2 s, 4 s, 8 s … capped."""
    return timedelta(seconds=min(cap, base ** max(1, attempt)))


def is_due(row: OutboxRow, now: datetime) -> bool:
    return as_utc(row.next_attempt_at) <= now
