"""The clock the registry uses (defined at the bottom layer, in db.clock, so the outbox shares it),
and the service's calendar: due dates and "today" are days in Viet Nam, whatever the machine's zone."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from db.clock import Clock, as_utc, utc_now

SERVICE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def service_date(at: datetime) -> date:
    """The calendar day in Viet Nam at the instant `at` (UTC 18:00 is already tomorrow there)."""
    return as_utc(at).astimezone(SERVICE_TZ).date()


__all__ = ["SERVICE_TZ", "Clock", "as_utc", "service_date", "utc_now"]
