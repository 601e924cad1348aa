"""The escalation job (runs in app.state.background): no report goes silent.

Each tick lists the open reports. One past its due date is marked overdue (a row in
`console_escalations`, which is also the claim when several workers run), its site's users and
the hotline queue get an in-console notification, and the citizen is told that the report is
still being handled and by whom. While it stays open, that repeats every REMIND_EVERY.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from registry_client.clock import Clock, as_utc, utc_now
from registry_client.errors import RegistryError
from registry_client.models import OPEN_STATUSES, AuditEntry, CorrectionCase, CorrectionQuery
from web.console.i18n import translator
from web.console.notifications import NotificationStore, site_audience
from web.console.sla import apply_to_registry
from web.console.tables import EscalationRow

log = logging.getLogger(__name__)

REMIND_EVERY = timedelta(days=7)
SCAN_LIMIT = 5000


@dataclass
class EscalationReport:
    escalated: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    citizens_told: int = 0


class EscalationJob:
    def __init__(
        self, console: Any, *, clock: Clock = utc_now, remind_every: timedelta = REMIND_EVERY
    ) -> None:
        self.console, self.clock, self.remind_every = console, clock, remind_every

    async def tick(self) -> EscalationReport:
        console = self.console
        apply_to_registry(console.registry, await console.sla.working_days())
        now = self.clock()
        today = now.date()
        report = EscalationReport()
        cases = await console.registry.list_corrections(
            CorrectionQuery(statuses=OPEN_STATUSES, limit=SCAN_LIMIT)
        )
        for case in cases:
            if case.queued or case.due_on >= today:
                continue
            claimed = await self._claim(case, now)
            if claimed is None:
                continue
            (report.escalated if claimed == "escalated" else report.reminded).append(case.ref)
            if await self._tell_citizen(case):
                report.citizens_told += 1
        if report.escalated or report.reminded:
            log.info("escalation: %d overdue, %d reminded", len(report.escalated), len(report.reminded))
        return report

    async def _claim(self, case: CorrectionCase, now: datetime) -> str | None:
        """Marks the report (first time) or renews the mark (reminder). None when nothing is due
        or another worker took it."""
        audiences = [site_audience(case.site_code), "hotline"]
        detail = case.due_on.isoformat()
        try:
            async with self.console.db_sessions() as session, session.begin():
                row = await session.get(EscalationRow, case.ref)
                if row is None:
                    session.add(
                        EscalationRow(
                            ref=case.ref,
                            site_code=case.site_code,
                            due_on=case.due_on,
                            first_escalated_at=now,
                            last_notified_at=now,
                            notices=1,
                            citizen_told=False,
                        )
                    )
                    NotificationStore.add_in(session, audiences, "overdue", case.ref, detail, now)
                    outcome = "escalated"
                elif as_utc(row.last_notified_at) + self.remind_every <= now:
                    result = await session.execute(
                        update(EscalationRow)
                        .where(
                            EscalationRow.ref == case.ref,
                            EscalationRow.last_notified_at == row.last_notified_at,
                        )
                        .values(
                            last_notified_at=now, notices=EscalationRow.notices + 1, site_code=case.site_code
                        )
                    )
                    if result.rowcount != 1:
                        return None
                    NotificationStore.add_in(session, audiences, "still_overdue", case.ref, detail, now)
                    outcome = "reminded"
                else:
                    return None
        except IntegrityError:  # another worker marked it first
            return None
        await self.console.registry.audit(
            AuditEntry("system:escalation", f"case.{outcome}", case.person_id, case.ref)
        )
        return outcome

    async def handler_name(self, case: CorrectionCase) -> str:
        if case.site_code:
            try:
                return str((await self.console.registry.get_site(case.site_code)).name)
            except RegistryError:
                return case.site_code
        t = translator(case.language)
        return t("hotline_handler", number=self.console.settings.hotline_number)

    async def _tell_citizen(self, case: CorrectionCase) -> bool:
        try:
            told = await self.console.citizen.still_handling(case, await self.handler_name(case))
        except Exception:
            log.exception("could not tell the citizen that report %s is still handled", case.ref)
            return False
        if told:
            async with self.console.db_sessions() as session, session.begin():
                await session.execute(
                    update(EscalationRow).where(EscalationRow.ref == case.ref).values(citizen_told=True)
                )
        return told


async def escalated_refs(console: Any, refs: list[str]) -> dict[str, int]:
    """How many notices each of these reports has had (absent: never escalated)."""
    if not refs:
        return {}
    from sqlalchemy import select

    async with console.db_sessions() as session:
        rows = await session.execute(
            select(EscalationRow.ref, EscalationRow.notices).where(EscalationRow.ref.in_(refs))
        )
        return {ref: notices for ref, notices in rows.all()}
