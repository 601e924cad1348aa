"""Console login throttling: growing delays per (user, client address) and per client address.

A failed login never locks an account: a stranger's failures slow down the stranger's address
only, so an admin (or anyone) still logs in at once from their own address. Two counters are
kept (table `console_login_throttles`):

- `pair:<user>|<address>`: the first PAIR_FREE failures cost nothing, then each further try must
  wait 1 s, 2 s, 4 s … up to MAX_DELAY;
- `addr:<address>`: the same for every failure from one address whatever the name, after
  ADDRESS_FREE failures (a source that tries many names is slowed).

Guesses are a budget: `take` counts the attempt as a failure and sets the wait it would cause,
in one atomic upsert per counter, BEFORE the password is compared; a refused try is not
compared at all. `succeeded` then hands the unit back (the pair's counter is cleared, the
address's loses one). Concurrent tries therefore get no more comparisons than the delays allow.
Counters are forgotten after FORGET of quiet.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry_client.clock import Clock, as_utc, utc_now
from web.console.tables import LoginThrottleRow

PAIR_FREE = 3
ADDRESS_FREE = 20
MAX_DELAY = timedelta(minutes=5)
FORGET = timedelta(hours=1)
THROTTLES = cast(Table, LoginThrottleRow.__table__)


def delay_after(failures: int, free: int) -> timedelta:
    """The wait before the next try once `failures` failures are counted."""
    if failures <= free:
        return timedelta(0)
    return min(MAX_DELAY, timedelta(seconds=2 ** min(failures - free - 1, 20)))


def _keys(username: str, client_ip: str) -> tuple[tuple[str, int], tuple[str, int]]:
    return (f"pair:{username}|{client_ip}"[:160], PAIR_FREE), (f"addr:{client_ip}"[:160], ADDRESS_FREE)


class LoginThrottle:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock

    async def take(self, username: str, client_ip: str) -> int:
        """Counts one try on both counters (0 returned: compare the password now) or refuses it
        without counting (the seconds to wait). Each counter is one atomic statement."""
        now = self.clock()
        for key, free in _keys(username, client_ip):
            async with self.sessions() as session, session.begin():
                failures, blocked_until = await _count(session, key, free, now)
            wait = _seconds_until(blocked_until, now)
            if failures is None:  # it was blocked: nothing counted, nothing compared
                return max(1, wait)
        return 0

    async def succeeded(self, username: str, client_ip: str) -> None:
        """The password matched: the pair starts afresh, the address gets its unit back."""
        (pair, _), (address, free) = _keys(username, client_ip)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            await session.execute(delete(THROTTLES).where(THROTTLES.c.key == pair))
            rows = await session.execute(
                update(THROTTLES)
                .where(THROTTLES.c.key == address, THROTTLES.c.failures > 0)
                .values(failures=THROTTLES.c.failures - 1)
                .returning(THROTTLES.c.failures)
            )
            left = rows.scalar()
            if left is not None:
                await session.execute(
                    update(THROTTLES)
                    .where(THROTTLES.c.key == address)
                    .values(blocked_until=_until(now, delay_after(left, free)))
                )


def _seconds_until(moment: datetime | None, now: datetime) -> int:
    if moment is None or as_utc(moment) <= now:
        return 0
    return math.ceil((as_utc(moment) - now).total_seconds())


def _until(now: datetime, delay: timedelta) -> datetime | None:
    return now + delay if delay else None


async def _count(session: AsyncSession, key: str, free: int, now: datetime) -> tuple[int | None, Any]:
    """(failures counted, blocked_until) — failures None when the key was blocked (not counted).
    The upsert takes the row lock (PostgreSQL) or the write lock (SQLite) until the transaction
    ends, so the wait is set before any concurrent try can read the counter."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    blocked = THROTTLES.c.blocked_until.is_not(None) & (THROTTLES.c.blocked_until > now)
    forgotten = THROTTLES.c.last_failure_at <= now - FORGET
    stmt = (
        insert(THROTTLES)
        .values(key=key, failures=1, last_failure_at=now, blocked_until=None)
        .on_conflict_do_update(
            index_elements=[THROTTLES.c.key],
            set_={
                "failures": case(
                    (blocked, THROTTLES.c.failures), (forgotten, 1), else_=THROTTLES.c.failures + 1
                ),
                "last_failure_at": case((blocked, THROTTLES.c.last_failure_at), else_=now),
            },
        )
        .returning(THROTTLES.c.failures, THROTTLES.c.blocked_until)
    )
    failures, blocked_until = (await session.execute(stmt)).one()
    if _seconds_until(blocked_until, now):
        return None, blocked_until
    until = _until(now, delay_after(int(failures), free))
    await session.execute(update(THROTTLES).where(THROTTLES.c.key == key).values(blocked_until=until))
    return int(failures), until
