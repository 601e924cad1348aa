"""The in-console notification list (overdue reports, reassignments) per audience.

Audiences: `site:<CODE>` (that site's users), `hotline` (agents), `admin`. Admins read all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry_client.clock import Clock, as_utc, utc_now
from web.console.tables import NotificationRow
from web.console.users import ConsoleUser, Role


@dataclass(frozen=True)
class Notification:
    id: int
    audience: str
    kind: str
    ref: str | None
    detail: str | None
    created_at: datetime
    read_at: datetime | None


def site_audience(site_code: str | None) -> str:
    return f"site:{site_code}" if site_code else "hotline"


def _visible(user: ConsoleUser):  # type: ignore[no-untyped-def]
    if user.role == Role.ADMIN:
        return True
    return NotificationRow.audience == user.audience


class NotificationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock

    @staticmethod
    def add_in(
        session: AsyncSession,
        audiences: Sequence[str],
        kind: str,
        ref: str | None,
        detail: str | None,
        at: datetime,
    ) -> None:
        for audience in dict.fromkeys(audiences):
            session.add(NotificationRow(audience=audience, kind=kind, ref=ref, detail=detail, created_at=at))

    async def add(
        self, audiences: Sequence[str], kind: str, ref: str | None, detail: str | None = None
    ) -> None:
        async with self.sessions() as session, session.begin():
            self.add_in(session, audiences, kind, ref, detail, self.clock())

    async def unread_count(self, user: ConsoleUser) -> int:
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(NotificationRow)
                .where(_visible(user), NotificationRow.read_at.is_(None))
            )
            return int(count or 0)

    async def list(self, user: ConsoleUser, limit: int = 100) -> list[Notification]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(NotificationRow)
                .where(_visible(user))
                .order_by(NotificationRow.read_at.is_not(None), NotificationRow.id.desc())
                .limit(limit)
            )
            return [
                Notification(
                    r.id,
                    r.audience,
                    r.kind,
                    r.ref,
                    r.detail,
                    as_utc(r.created_at),
                    as_utc(r.read_at) if r.read_at else None,
                )
                for r in rows.all()
            ]

    async def mark_all_read(self, user: ConsoleUser) -> int:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                update(NotificationRow)
                .where(_visible(user), NotificationRow.read_at.is_(None))
                .values(read_at=self.clock(), read_by=user.actor)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
