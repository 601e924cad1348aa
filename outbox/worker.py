"""The outbox worker: claims due messages and hands each to the sender of its channel.

A sender returns a `SendResult` or raises `SendError(retryable=…)`; nothing else decides
whether a message is retried. Attempts are bounded; a message is never sent twice by two
workers (claims are exclusive) and a sent message is never claimed again. The sender gets the
row opened (outbox/sealing.py): the stored row itself holds its codes and links only sealed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from outbox.sealing import SealBroken
from outbox.store import Outbox, backoff
from outbox.tables import OutboxRow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None
    provider_status: str | None = None


class SendError(Exception):
    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        code: str | None = None,
        retry_after: float | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable, self.code, self.retry_after, self.unreachable = (
            retryable,
            code,
            retry_after,
            unreachable,
        )


class Sender(Protocol):
    async def send(self, row: OutboxRow, text: str) -> SendResult: ...


Renderer = Callable[[OutboxRow], str]


def render_plain(row: OutboxRow) -> str:
    return row.text or ""


class OutboxWorker:
    def __init__(
        self,
        outbox: Outbox,
        senders: dict[str, Sender | None],
        render: Renderer = render_plain,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        """`senders` maps a channel to its sender; None means "keep locally" (no provider configured)."""
        self.outbox, self.senders, self.render = outbox, senders, render
        self.max_attempts = max_attempts
        self.on_outcome = on_outcome or (lambda channel, outcome: None)

    async def run_once(self, limit: int = 20) -> int:
        rows = await self.outbox.claim_due(limit, channels=tuple(self.senders))
        # The claimed rows are this worker's alone: one address's messages go in order, different
        # addresses side by side (sent one by one, a burst of one-time codes waited ~1 s for the
        # last one while the caller stared at the USSD prompt).
        queues: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in rows:
            queues.setdefault((row.channel, row.address), []).append(row)
        await asyncio.gather(*(self._deliver_in_order(queue) for queue in queues.values()))
        return len(rows)

    async def _deliver_in_order(self, rows: list[OutboxRow]) -> None:
        for row in rows:
            await self._deliver(row)

    async def _deliver(self, row: OutboxRow) -> None:
        sender = self.senders.get(row.channel)
        if sender is None:
            await self.outbox.mark_local(row.id)
            self.on_outcome(row.channel, "local")
            return
        try:
            row = self.outbox.open(row)
        except SealBroken:
            log.error("outbox row %s: its seal does not open with this SECRET_KEY; not sent", row.id)
            await self.outbox.mark_failed(row.id, "sealed with another SECRET_KEY", "sealed")
            self.on_outcome(row.channel, "failed")
            return
        try:
            text = self.render(row)
            result = await sender.send(row, text)
        except SendError as exc:
            if exc.retryable and row.attempts < self.max_attempts:
                delay = timedelta(seconds=exc.retry_after) if exc.retry_after else backoff(row.attempts)
                await self.outbox.mark_retry(row.id, str(exc), delay, exc.code)
                self.on_outcome(row.channel, "retry")
            else:
                await self.outbox.mark_failed(row.id, str(exc), exc.code, unreachable=exc.unreachable)
                self.on_outcome(row.channel, "unreachable" if exc.unreachable else "failed")
            return
        except Exception as exc:  # a bug in a sender must not kill the worker or lose the message
            log.exception("sender for %s crashed on outbox row %s", row.channel, row.id)
            await self.outbox.mark_retry(
                row.id, f"internal error: {type(exc).__name__}", backoff(row.attempts)
            )
            self.on_outcome(row.channel, "retry")
            return
        await self.outbox.mark_sent(row.id, result.provider_id, result.provider_status)
        self.on_outcome(row.channel, "sent")

    async def run_forever(self, interval: float = 1.0) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox worker tick failed")
                busy = 0
            if not busy:
                await asyncio.sleep(interval)
