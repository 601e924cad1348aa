"""The admin dashboard figures: reports received/resolved per day, median time to resolution,
overdue reports per site, outbound message delivery per channel (from the outbox), and the voice
line's calls (how many callers it served without an agent)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from outbox.tables import OutboxRow
from registry_client.clock import as_utc
from registry_client.models import CorrectionQuery
from sms_gateway.voice_calls import VoiceCalls, VoiceFigures
from web.console.pages import LOCAL_TZ

CASE_LIMIT = 5000


@dataclass(frozen=True)
class DayRow:
    day: date
    received: int
    resolved: int


@dataclass(frozen=True)
class SiteOverdue:
    site_code: str | None
    site_name: str
    open: int
    overdue: int


@dataclass(frozen=True)
class ChannelDelivery:
    channel: str
    total: int
    counts: dict[str, int]

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("sent", "delivered", "failed", "unreachable"))

    def rate(self, *statuses: str) -> float | None:
        if not self.finished:
            return None
        return sum(self.counts.get(s, 0) for s in statuses) / self.finished


@dataclass(frozen=True)
class Dashboard:
    days: list[DayRow]
    open_count: int
    overdue_count: int
    resolved_in_window: int
    median_resolution_hours: float | None
    sites: list[SiteOverdue]
    delivery: list[ChannelDelivery]
    voice: VoiceFigures  # calls in the window, and how many the voice line served without an agent
    window_days: int
    truncated: bool


def _local_day(value: datetime) -> date:
    return as_utc(value).astimezone(LOCAL_TZ).date()


async def build_dashboard(console: Any, now: datetime, window_days: int = 14) -> Dashboard:
    today_local = as_utc(now).astimezone(LOCAL_TZ).date()
    utc_today = as_utc(now).date()
    first = today_local - timedelta(days=window_days - 1)
    cases = await console.registry.list_corrections(CorrectionQuery(limit=CASE_LIMIT))
    received = Counter(_local_day(c.created_at) for c in cases)
    resolved = Counter(_local_day(c.resolved_at) for c in cases if c.resolved_at is not None)
    days = [
        DayRow(d, received[d], resolved[d]) for d in (first + timedelta(days=i) for i in range(window_days))
    ]
    durations = [
        (as_utc(c.resolved_at) - as_utc(c.created_at)).total_seconds() / 3600
        for c in cases
        if c.resolved_at is not None and _local_day(c.resolved_at) >= first
    ]
    sites = {s.code: s.name for s in await console.registry.list_sites()}
    open_by_site: Counter[str | None] = Counter()
    overdue_by_site: Counter[str | None] = Counter()
    for c in cases:
        if c.is_open:
            open_by_site[c.site_code] += 1
            if c.due_on < utc_today:
                overdue_by_site[c.site_code] += 1
    site_rows = sorted(
        (
            SiteOverdue(
                code, sites.get(code, code) if code else "", open_by_site[code], overdue_by_site[code]
            )
            for code in open_by_site
        ),
        key=lambda r: (-r.overdue, -r.open, r.site_code or ""),
    )
    return Dashboard(
        days=days,
        open_count=sum(open_by_site.values()),
        overdue_count=sum(overdue_by_site.values()),
        resolved_in_window=len(durations),
        median_resolution_hours=statistics.median(durations) if durations else None,
        sites=site_rows,
        delivery=await delivery_by_channel(console, as_utc(now) - timedelta(days=30)),
        voice=await VoiceCalls(console.db_sessions).figures(as_utc(now) - timedelta(days=window_days)),
        window_days=window_days,
        truncated=len(cases) >= CASE_LIMIT,
    )


async def delivery_by_channel(console: Any, since: datetime) -> list[ChannelDelivery]:
    async with console.db_sessions() as session:
        rows = (
            await session.execute(
                select(OutboxRow.channel, OutboxRow.status, func.count())
                .where(OutboxRow.created_at >= since)
                .group_by(OutboxRow.channel, OutboxRow.status)
            )
        ).all()
    by_channel: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        by_channel.setdefault(channel, {})[status] = int(count)
    return [ChannelDelivery(ch, sum(counts.values()), counts) for ch, counts in sorted(by_channel.items())]
