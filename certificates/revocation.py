"""The revocation list of our own certificates, kept in memory and refreshed from the database.

Verification must stay fast (a checkpoint scans many codes a minute), so `/api/verify` does not
query the database per certificate: it consults this list, which reloads the rows revoked since
its last look at most every `refresh_seconds`. Revocations made in this process are noted at
once; those of other workers are seen within `refresh_seconds`. The incremental reload re-reads
a margin of `CLOCK_MARGIN` before its watermark, so workers' clocks need only be roughly in step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from certificates.tables import IssuedCertificateRow
from db.clock import as_utc

log = logging.getLogger(__name__)

CLOCK_MARGIN = timedelta(minutes=5)


class RevocationUnavailable(Exception):
    """The list was never loaded and the database does not answer."""


@dataclass(frozen=True)
class Revocation:
    uvci: str
    revoked_at: datetime
    reason: str


class RevocationList:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        refresh_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self.refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._entries: dict[str, Revocation] = {}
        self._watermark: datetime | None = None
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    def note(self, revocation: Revocation) -> None:
        """A revocation made by this process: effective immediately."""
        self._entries[revocation.uvci] = revocation

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._monotonic() - self._loaded_at < self.refresh_seconds

    async def _refresh(self) -> None:
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            query = select(
                IssuedCertificateRow.uvci, IssuedCertificateRow.revoked_at, IssuedCertificateRow.revoke_reason
            ).where(IssuedCertificateRow.revoked_at.is_not(None))
            if self._watermark is not None:
                query = query.where(IssuedCertificateRow.revoked_at >= self._watermark - CLOCK_MARGIN)
            try:
                async with self._sessions() as session:
                    rows = (await session.execute(query)).all()
            except Exception as exc:
                if self._loaded_at is None:
                    raise RevocationUnavailable(str(exc)) from exc
                log.warning("revocation list refresh failed; using the list of %s s ago", self._age())
                return
            for uvci, revoked_at, reason in rows:
                if revoked_at is None:
                    continue
                at = as_utc(revoked_at)
                self._entries[uvci] = Revocation(uvci, at, reason or "")
                if self._watermark is None or at > self._watermark:
                    self._watermark = at
            self._loaded_at = self._monotonic()

    def _age(self) -> int:
        return int(self._monotonic() - self._loaded_at) if self._loaded_at is not None else -1

    async def find(self, uvcis: Iterable[str]) -> Revocation | None:
        """The revocation of any of these UVCIs; RevocationUnavailable when it cannot be known."""
        await self._refresh()
        for uvci in uvcis:
            found = self._entries.get(uvci)
            if found is not None:
                return found
        return None
