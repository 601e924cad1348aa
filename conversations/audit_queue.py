"""Audit lines of conversation turns, written in batches off the request path.

A turn used to wait for its own audit transaction after its session commit (one more commit per
data access). Here a turn appends its entries (stamped with the turn's time) and returns; a task
writes everything queued at most `interval` seconds later in one registry call (`audit_many`
when the registry has it, one `audit` per entry otherwise), and `close()` writes the rest at
shutdown. The registry wrapper keeps entries it cannot deliver in its durable queue; an entry
that still cannot be written is put back and retried, and what is given up is logged as an
error with its count — never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

from registry_client.clock import Clock, utc_now
from registry_client.models import AuditEntry
from registry_client.protocol import Registry

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # beyond this (the registry and its fallback both failing for long), give up


class AuditQueue:
    def __init__(self, registry: Registry, *, interval: float = 0.05, clock: Clock = utc_now) -> None:
        self.registry, self.interval, self.clock = registry, interval, clock
        self._items: list[AuditEntry] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def put(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        now = self.clock()
        self._items.extend(e if e.at is not None else dataclasses.replace(e, at=now) for e in entries)
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="audit-queue")

    @property
    def pending(self) -> int:
        return len(self._items)

    async def _drain(self) -> None:
        delay = self.interval
        while self._items and not self._closed:
            await asyncio.sleep(delay)
            written = await self.flush()
            delay = self.interval if written or not self._items else min(5.0, delay * 4)

    async def flush(self) -> int:
        """Writes everything queued now; returns how many entries were written."""
        batch, self._items = self._items, []
        if not batch:
            return 0
        try:
            many = getattr(self.registry, "audit_many", None)
            if many is not None:
                await many(batch)
            else:
                for entry in batch:
                    await self.registry.audit(entry)
        except Exception:
            log.exception("audit batch of %d entries not written; retrying", len(batch))
            self._items[:0] = batch
            if len(self._items) > MAX_QUEUED:
                lost = len(self._items) - MAX_QUEUED
                del self._items[:lost]
                log.error("audit queue full: %d oldest entries given up", lost)
            return 0
        return len(batch)

    async def close(self) -> None:
        """Stops the background writer and writes what is left (called at shutdown)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for _ in range(3):
            if not self._items:
                return
            await self.flush()
        if self._items:
            log.error("audit queue closed with %d entries not written", len(self._items))
