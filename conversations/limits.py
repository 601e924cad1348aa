"""Fixed-window counters with a block, shared by every worker process.

`RateCounters` keeps them in SQL (the embedded default, no Redis needed); with REDIS_URL set,
`conversations.redis_limits.RedisRateCounters` keeps them in Redis through the `limits` library
with the same interface.

Guesses are a budget: every comparison of a secret first takes one unit, in one atomic statement
(an upsert with RETURNING, or Redis' INCR script) committed at once — never deferred to the end
of the turn — and compares only when the unit was granted. Several inputs in one request,
concurrent requests and several workers therefore get no more comparisons than the limit.

- `spend_now` / `failed_now` / `give_back` (dates of birth): a unit is granted while fewer than
  `limit` are spent in the window (a refused try leaves nothing behind); a failed comparison
  keeps its unit, and the failure that spends the last one blocks the key for `block`; a
  comparison that succeeded gives its unit back. Only failures stay counted, and right answers,
  however many at once, never block anybody.
- `hit_now` (one-time codes): every try counts, the `limit`-th blocks the key; the right code
  clears the counter (`reset`).
- `take` reserves one of a fixed number of events in a window (a one-time code sent).
- `hit` is the deferred form (an Effect applied with the turn's transaction), for counting what
  is not a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Table, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session

from conversations.effects import Effect
from conversations.tables import RateCounterRow
from db.fast_access import FastAccess
from registry_client.clock import Clock, as_utc, utc_now

COUNTERS = cast(Table, RateCounterRow.__table__)


@dataclass(frozen=True)
class Hit:
    count: int  # events in the window, this one included
    blocked: int  # seconds the key is blocked now (0: not blocked)
    was_blocked: bool  # the key was already blocked before this event


class Counters(Protocol):
    async def read(self, key: str, window: timedelta) -> tuple[int, int]: ...

    def hit(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Effect: ...

    async def hit_now(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Hit: ...

    async def spend_now(self, key: str, *, limit: int, window: timedelta) -> Hit: ...

    async def failed_now(self, key: str, *, limit: int, block: timedelta) -> int: ...

    async def give_back(self, key: str) -> None: ...

    def reset(self, key: str) -> Effect: ...

    async def take(self, key: str, *, limit: int, window: timedelta) -> bool: ...


def _seconds_until(moment: datetime | None, now: datetime) -> int:
    if moment is None or as_utc(moment) <= now:
        return 0
    return math.ceil((as_utc(moment) - now).total_seconds())


class RateCounters:
    def __init__(self, sessions: async_sessionmaker[Any], clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock
        self.fast = FastAccess.for_engine(sessions.kw["bind"])

    async def read(self, key: str, window: timedelta) -> tuple[int, int]:
        """(hits in the current window, seconds the key stays blocked)."""
        row = await self.fast.read(lambda conn: conn.execute(_READ, {"key": key}).first())
        if row is None:
            return 0, 0
        hits, window_start, blocked_until = row
        now = self.clock()
        return (hits if as_utc(window_start) > now - window else 0), _seconds_until(blocked_until, now)

    def hit(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Effect:
        """Counts one event; the `limit`-th event in `window` blocks the key for `block`."""
        now = self.clock()

        def apply(db: Session) -> None:
            _hit(db, key, now, limit=limit, window=window, block=block)

        return Effect(sql=apply)

    async def hit_now(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Hit:
        now = self.clock()
        return await self.fast.write(
            lambda conn: _hit(conn, key, now, limit=limit, window=window, block=block)
        )

    async def spend_now(self, key: str, *, limit: int, window: timedelta) -> Hit:
        """One unit of `limit` in `window`: `was_blocked` when none is left (then `blocked` says for
        how long) or the key is blocked; a refused try is not counted."""
        now = self.clock()
        return await self.fast.write(lambda conn: _spend(conn, key, now, limit=limit, window=window))

    async def failed_now(self, key: str, *, limit: int, block: timedelta) -> int:
        """A granted comparison failed: its unit stays spent; when all `limit` are, the key is
        blocked for `block` (returns its seconds, else 0)."""
        now = self.clock()
        stmt = (
            update(COUNTERS)
            .where(COUNTERS.c.key == key, COUNTERS.c.count >= limit)
            .values(blocked_until=now + block, count=0, window_start=now)
        )
        done = await self.fast.write(lambda conn: conn.execute(stmt).rowcount)
        return math.ceil(block.total_seconds()) if done else 0

    async def give_back(self, key: str) -> None:
        """Returns the unit of a comparison that succeeded (never below zero; a block stays)."""
        await self.fast.write(lambda conn: conn.execute(_GIVE_BACK, {"counter_key": key}))

    def reset(self, key: str) -> Effect:
        def apply(db: Session) -> None:
            db.execute(delete(COUNTERS).where(COUNTERS.c.key == key))

        return Effect(sql=apply)

    async def take(self, key: str, *, limit: int, window: timedelta) -> bool:
        """Reserves one of `limit` events in `window` (False: none left), in one atomic upsert."""
        now = self.clock()
        count = await self.fast.write(lambda conn: _count(conn, key, now, window))
        return count <= limit


_READ = select(COUNTERS.c.count, COUNTERS.c.window_start, COUNTERS.c.blocked_until).where(
    COUNTERS.c.key == bindparam("key")
)


_GIVE_BACK = (
    update(COUNTERS)
    .where(COUNTERS.c.key == bindparam("counter_key"), COUNTERS.c.count > 0)
    .values(count=COUNTERS.c.count - 1)
)


def _upsert(db: Connection | Session, key: str, now: datetime, window: timedelta) -> Any:
    """One more event on `key` (a new window once the last one is over), as one atomic statement:
    the row lock on PostgreSQL, the writer lock on SQLite. Returns (count, blocked_until)."""
    bind = db.get_bind() if isinstance(db, Session) else db
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    expired = COUNTERS.c.window_start <= now - window
    stmt = (
        insert(COUNTERS)
        .values(key=key, count=1, window_start=now, blocked_until=None)
        .on_conflict_do_update(
            index_elements=[COUNTERS.c.key],
            set_={
                "count": case((expired, 1), else_=COUNTERS.c.count + 1),
                "window_start": case((expired, now), else_=COUNTERS.c.window_start),
            },
        )
        .returning(COUNTERS.c.count, COUNTERS.c.blocked_until, COUNTERS.c.window_start)
    )
    return db.execute(stmt).one()


def _count(db: Connection, key: str, now: datetime, window: timedelta) -> int:
    return int(_upsert(db, key, now, window)[0])


def _spend(db: Connection, key: str, now: datetime, *, limit: int, window: timedelta) -> Hit:
    count, blocked_until, window_start = _upsert(db, key, now, window)
    blocked = _seconds_until(blocked_until, now)
    if blocked or count > limit:  # refused: the try is taken back in the same transaction
        db.execute(update(COUNTERS).where(COUNTERS.c.key == key).values(count=COUNTERS.c.count - 1))
        return Hit(count - 1, blocked or max(1, _seconds_until(as_utc(window_start) + window, now)), True)
    return Hit(count, 0, False)


def _hit(
    db: Connection | Session, key: str, now: datetime, *, limit: int, window: timedelta, block: timedelta
) -> Hit:
    """Counts first (one atomic upsert), then decides; the `limit`-th event starts the block."""
    count, blocked_until, _ = _upsert(db, key, now, window)
    blocked = _seconds_until(blocked_until, now)
    if blocked:
        return Hit(count, blocked, True)
    if count >= limit:
        db.execute(
            update(COUNTERS)
            .where(COUNTERS.c.key == key)
            .values(blocked_until=now + block, count=0, window_start=now)
        )
        return Hit(count, math.ceil(block.total_seconds()), False)
    return Hit(count, 0, False)
