"""Rate counters in Redis through the `limits` library (REDIS_URL set): the same interface as the
SQL `RateCounters`, atomic across every worker (limits' INCR+EXPIRE script).

A counter is a fixed window that starts with its first event (limits' Redis fixed window); a
block is a second key `…:block` holding one event for the block's duration. When Redis fails,
each call falls back to the SQL counters, so a Redis outage never stops logins.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter

from conversations.effects import Effect
from conversations.limits import Hit, RateCounters

log = logging.getLogger(__name__)


class _Window(RateLimitItemPerSecond):
    """A limits item whose storage key is the counter's name only: reading a counter (`read`)
    then needs neither its limit nor its window."""

    def __init__(self, amount: int, seconds: float) -> None:
        super().__init__(amount, max(1, math.ceil(seconds)), namespace="vax")

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(str(i) for i in identifiers)])


def storage_uri(redis_url: str) -> str:
    """`redis://…` → `async+redis://…` (the limits scheme for asyncio storage)."""
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


class RedisRateCounters:
    def __init__(self, redis_url: str, prefix: str, fallback: RateCounters) -> None:
        self.storage = RedisStorage(
            storage_uri(redis_url), implementation="redispy", key_prefix=f"{prefix}:limits"
        )
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.fallback = fallback

    async def close(self) -> None:
        with_close: Any = getattr(self.storage, "close", None)
        if with_close is not None:
            await with_close()

    def _failed(self, what: str, exc: Exception) -> None:
        log.warning("redis rate counters unavailable (%s) for %s: using SQL", type(exc).__name__, what)

    async def _blocked(self, key: str) -> int:
        item = _Window(1, 1)
        stats = await self.limiter.get_window_stats(item, f"{key}:block")
        return 0 if stats.remaining else max(1, math.ceil(stats.reset_time - time.time()))

    async def read(self, key: str, window: timedelta) -> tuple[int, int]:
        """(events in the current window, seconds the key stays blocked)."""
        try:
            count = await self.storage.get(_Window(1, window.total_seconds()).key_for(key))
            return count, await self._blocked(key)
        except Exception as exc:  # noqa: BLE001 - any storage failure: SQL answers
            self._failed("read", exc)
            return await self.fallback.read(key, window)

    def hit(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Effect:
        async def apply() -> None:  # once the turn has committed
            await self.hit_now(key, limit=limit, window=window, block=block)

        return Effect(after_commit=apply)

    async def hit_now(self, key: str, *, limit: int, window: timedelta, block: timedelta) -> Hit:
        """Counts first (one atomic INCR), then decides: however many requests race, only the
        `limit`-th event blocks and every later one sees `was_blocked`. The window counter is not
        reset when the block starts (a reset let racing requests count from zero again)."""
        try:
            item = _Window(limit, window.total_seconds())
            count = await self.storage.incr(item.key_for(key), item.get_expiry())
            blocked = await self._blocked(key)
            if count > limit or blocked:
                return Hit(count, blocked or math.ceil(block.total_seconds()), True)
            if count == limit:
                await self.limiter.hit(_Window(1, block.total_seconds()), f"{key}:block")
                return Hit(count, math.ceil(block.total_seconds()), False)
            return Hit(count, 0, False)
        except Exception as exc:  # noqa: BLE001
            self._failed("hit", exc)
            return await self.fallback.hit_now(key, limit=limit, window=window, block=block)

    async def spend_now(self, key: str, *, limit: int, window: timedelta) -> Hit:
        """One unit of `limit` in `window` (one atomic INCR); a refused try is taken back."""
        try:
            item = _Window(limit, window.total_seconds())
            counter = item.key_for(key)
            count = await self.storage.incr(counter, item.get_expiry())
            blocked = await self._blocked(key)
            if blocked or count > limit:
                await self.storage.incr(counter, item.get_expiry(), amount=-1)
                left = blocked or max(1, math.ceil(await self.storage.get_expiry(counter) - time.time()))
                return Hit(count - 1, left, True)
            return Hit(count, 0, False)
        except Exception as exc:  # noqa: BLE001
            self._failed("spend", exc)
            return await self.fallback.spend_now(key, limit=limit, window=window)

    async def failed_now(self, key: str, *, limit: int, block: timedelta) -> int:
        """A granted comparison failed; when all `limit` units are spent, the key is blocked."""
        try:
            if await self.storage.get(_Window(1, 1).key_for(key)) < limit:
                return 0
            await self.storage.clear(_Window(1, 1).key_for(key))
            await self.limiter.hit(_Window(1, block.total_seconds()), f"{key}:block")
            return math.ceil(block.total_seconds())
        except Exception as exc:  # noqa: BLE001
            self._failed("failed", exc)
            return await self.fallback.failed_now(key, limit=limit, block=block)

    async def give_back(self, key: str) -> None:
        """Returns the unit of a comparison that succeeded (the block key, if any, stays)."""
        try:
            counter = _Window(1, 1).key_for(key)
            if await self.storage.incr(counter, 1, amount=-1) < 0:  # it had expired meanwhile
                await self.storage.clear(counter)
        except Exception as exc:  # noqa: BLE001
            self._failed("give back", exc)
            await self.fallback.give_back(key)

    def reset(self, key: str) -> Effect:
        async def apply() -> None:  # once the turn has committed
            try:
                await self.storage.clear(_Window(1, 1).key_for(key))
                await self.storage.clear(_Window(1, 1).key_for(f"{key}:block"))
            except Exception as exc:  # noqa: BLE001
                self._failed("reset", exc)

        # the SQL counter too (it may have counted while Redis was down), in the turn's transaction
        return Effect(sql=self.fallback.reset(key).sql, after_commit=apply)

    async def take(self, key: str, *, limit: int, window: timedelta) -> bool:
        """Reserves one of `limit` events in `window` (False: none left)."""
        try:
            return await self.limiter.hit(_Window(limit, window.total_seconds()), key)
        except Exception as exc:  # noqa: BLE001
            self._failed("take", exc)
            return await self.fallback.take(key, limit=limit, window=window)
