"""Which Telegram update ids were already taken: Telegram redelivers an update when our answer was
late or lost, and several web workers may receive it; the primary key decides who handles it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.tables import TelegramUpdateRow
from db.clock import Clock, utc_now
from db.fast_access import FastAccess

KEEP = timedelta(days=7)  # Telegram keeps an undelivered update for at most 24 hours


class ProcessedUpdates:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock
        # One small write per update: through db.fast_access (on SQLite the process's writer
        # thread, so it never holds SQLite's write lock across event-loop turns).
        self.fast = FastAccess.for_engine(sessions.kw["bind"])

    async def claim(self, update_id: int) -> bool:
        """True for the first caller with this update id, False for every later one."""
        received = self.clock()

        def insert(session: Session) -> None:
            session.add(TelegramUpdateRow(update_id=update_id, received_at=received))

        try:
            await self.fast.transaction(insert)
        except IntegrityError:
            return False
        return True

    async def release(self, update_id: int) -> None:
        """Forgets a claim whose processing could not start, so Telegram's redelivery is handled."""

        def forget(session: Session) -> None:
            session.execute(delete(TelegramUpdateRow).where(TelegramUpdateRow.update_id == update_id))

        await self.fast.transaction(forget)

    async def prune(self) -> int:
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                delete(TelegramUpdateRow).where(TelegramUpdateRow.received_at < self.clock() - KEEP)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
