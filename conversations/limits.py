"""Fixed-window counters with a block, in SQL (shared by every worker process)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conversations.effects import Effect
from conversations.tables import RateCounterRow
from registry_client.clock import Clock, as_utc, utc_now


class RateCounters:
    def __init__(self, sessions: async_sessionmaker[Any], clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock

    async def read(self, key: str, window: timedelta) -> tuple[int, int]:
        """(hits in the current window, seconds the key stays blocked)."""
        async with self.sessions() as db:
            row = await db.get(RateCounterRow, key)
        if row is None:
            return 0, 0
        now = self.clock()
        blocked = 0
        if row.blocked_until is not None and as_utc(row.blocked_until) > now:
            blocked = math.ceil((as_utc(row.blocked_until) - now).total_seconds())
        count = row.count if as_utc(row.window_start) > now - window else 0
        return count, blocked

    def hit(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Effect:
        """Counts one event; the `limit`-th event in `window` blocks the key for `block`."""

        async def apply(db: AsyncSession) -> None:
            now = self.clock()
            row = await db.get(RateCounterRow, key)
            if row is None:
                row = RateCounterRow(key=key, count=0, window_start=now)
                db.add(row)
            elif as_utc(row.window_start) <= now - window:
                row.count, row.window_start = 0, now
            row.count += 1
            if row.count >= limit:
                row.blocked_until = now + block
                row.count, row.window_start = 0, now

        return apply

    def reset(self, key: str) -> Effect:
        async def apply(db: AsyncSession) -> None:
            await db.execute(delete(RateCounterRow).where(RateCounterRow.key == key))

        return apply
