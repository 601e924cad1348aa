"""Where a correction report goes (INTERFACES §9), and when it is due."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import date, timedelta

from registry_client.models import Dose, Site


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


def match_site(named: str | None, sites: Sequence[Site]) -> Site | None:
    """The site a citizen named: by exact code, else by a name matching exactly one site."""
    if not named or not named.strip():
        return None
    key = _fold(named)
    for site in sites:
        if _fold(site.code) == key:
            return site
    exact = [s for s in sites if _fold(s.name) == key]
    if len(exact) == 1:
        return exact[0]
    partial = [s for s in sites if key in _fold(s.name)]
    return partial[0] if len(partial) == 1 else None


def route_case(named_site: str | None, sites: Sequence[Site], doses: Sequence[Dose]) -> str | None:
    """Site code for a new case: the named site, else the latest dose's site, else None (hotline)."""
    site = match_site(named_site, sites)
    if site is not None:
        return site.code
    if doses:
        latest = max(doses, key=lambda d: (d.administered_on, d.dose_number))
        return latest.site_code
    return None


def add_working_days(start: date, days: int) -> date:
    current = start
    added = 0
    while added < days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            added += 1
    return current
