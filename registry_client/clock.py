"""The clock the registry uses (defined at the bottom layer, in db.clock, so the outbox shares it)."""

from db.clock import Clock, as_utc, utc_now

__all__ = ["Clock", "as_utc", "utc_now"]
