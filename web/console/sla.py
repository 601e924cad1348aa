"""The correction SLA: working days from receipt to answer (admin setting), and a report's SLA state."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry_client.clock import Clock, utc_now
from registry_client.models import CorrectionCase
from web.console.tables import ConsoleSettingRow

SLA_KEY = "sla_working_days"
MIN_DAYS, MAX_DAYS = 1, 30


class SlaState(StrEnum):
    ON_TIME = "on_time"
    DUE_TODAY = "due_today"
    OVERDUE = "overdue"
    CLOSED = "closed"


def sla_state(case: CorrectionCase, today: date) -> SlaState:
    if not case.is_open:
        return SlaState.CLOSED
    if today > case.due_on:
        return SlaState.OVERDUE
    if today == case.due_on:
        return SlaState.DUE_TODAY
    return SlaState.ON_TIME


def apply_to_registry(registry: Any, days: int) -> bool:
    """New reports get due dates `days` working days out, where the registry lets us set it."""
    setter = getattr(registry, "set_sla_working_days", None)
    if setter is None:
        return False
    setter(days)
    return True


class SlaSettings:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], default_days: int, *, clock: Clock = utc_now
    ) -> None:
        self.sessions, self.default_days, self.clock = sessions, default_days, clock

    async def working_days(self) -> int:
        async with self.sessions() as session:
            row = await session.get(ConsoleSettingRow, SLA_KEY)
            if row is None:
                return self.default_days
            try:
                return int(row.value)
            except ValueError:
                return self.default_days

    async def set_working_days(self, days: int, actor: str) -> None:
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise ValueError(days)
        async with self.sessions() as session, session.begin():
            row = await session.get(ConsoleSettingRow, SLA_KEY)
            if row is None:
                session.add(
                    ConsoleSettingRow(key=SLA_KEY, value=str(days), updated_at=self.clock(), updated_by=actor)
                )
            else:
                row.value, row.updated_at, row.updated_by = str(days), self.clock(), actor
