"""Counting voice calls: started, put through to the hotline, ended (status, duration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker

from sms_gateway.tables import VoiceCallRow


@dataclass(frozen=True)
class VoiceFigures:
    calls: int
    handed_over: int
    minutes: float

    @property
    def served_without_agent(self) -> int:
        return self.calls - self.handed_over


class VoiceCalls:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self.sessions = sessions
        bind = sessions.kw["bind"]
        self.insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert

    async def started(self, call_sid: str, now: datetime) -> None:
        stmt = self.insert(VoiceCallRow).values(call_sid=call_sid[:64], started_at=now, handed_over=False)
        async with self.sessions() as db, db.begin():
            await db.execute(stmt.on_conflict_do_nothing(index_elements=[VoiceCallRow.call_sid]))

    async def handed_over(self, call_sid: str) -> None:
        async with self.sessions() as db, db.begin():
            await db.execute(
                update(VoiceCallRow).where(VoiceCallRow.call_sid == call_sid[:64]).values(handed_over=True)
            )

    async def ended(self, call_sid: str, status: str, duration: int | None) -> None:
        async with self.sessions() as db, db.begin():
            await db.execute(
                update(VoiceCallRow)
                .where(VoiceCallRow.call_sid == call_sid[:64])
                .values(status=status[:16], duration_seconds=duration)
            )

    async def figures(self, since: datetime) -> VoiceFigures:
        async with self.sessions() as db:
            row = (
                await db.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(case((VoiceCallRow.handed_over, 1), else_=0)), 0),
                        func.coalesce(func.sum(VoiceCallRow.duration_seconds), 0),
                    ).where(VoiceCallRow.started_at >= since)
                )
            ).one()
        return VoiceFigures(int(row[0]), int(row[1]), round(int(row[2]) / 60, 1))
