"""Where a correction report goes, and when it is due: to the site the citizen names (by code, or a
name that matches one site); when none matches, to the site of the person's latest dose; with no
dose on record, to the hotline queue."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import date, timedelta

from registry_client.models import Dose, Site


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


# Words that every other site name carries too ("Trạm Y tế Phường …", "TTYT Quận …"): they say
# nothing about WHICH site, so they neither count for a match nor against one.
_GENERIC = (
    "trung tam kiem soat benh tat",
    "trung tam y te",
    "tram y te",
    "benh vien",
    "thi tran",
    "phuong",
    "quan",
    "huyen",
    "ttyt",
    "tyt",
    "cdc",
    "xa",
    "tp",
    "bv",
)


def _words(text: str) -> set[str]:
    folded = " " + "".join(c if c.isalnum() else " " for c in _fold(text)) + " "
    for generic in _GENERIC:
        folded = folded.replace(f" {generic} ", " ")
    return set(folded.split())


def site_candidates(named: str | None, sites: Sequence[Site], limit: int = 3) -> list[Site]:
    """The sites a citizen may have meant, best first: an exact code alone; else the sites whose
    distinctive name words (accents, case, word order and the usual prefixes such as "Trạm Y tế",
    "Phường", "TTYT" ignored) cover the words typed best — at most `limit`, none when nothing fits."""
    if not named or not named.strip():
        return []
    key = _fold(named)
    for site in sites:
        if _fold(site.code) == key:
            return [site]
    typed = _words(named)
    if not typed:
        return []
    scored: list[tuple[float, Site]] = []
    for site in sites:
        words = _words(site.name) | {_fold(site.code)}
        common = len(typed & words)
        if common == 0:
            continue
        # share of the typed words found in the name, then how little of the name is left over
        scored.append((common / len(typed) + common / (2 * len(words)), site))
    scored.sort(key=lambda item: -item[0])
    best = scored[0][0] if scored else 0.0
    return [site for score, site in scored if score >= best * 0.6][:limit]


def match_site(named: str | None, sites: Sequence[Site]) -> Site | None:
    """The site a citizen named, when there is no doubt: by code, or the one site whose name has
    every distinctive word typed (in any order, with or without accents) while no other has."""
    if not named or not named.strip():
        return None
    key = _fold(named)
    for site in sites:
        if _fold(site.code) == key:
            return site
    exact = [s for s in sites if _fold(s.name) == key]
    if len(exact) == 1:
        return exact[0]
    typed = _words(named)
    if not typed:
        return None
    full = [s for s in sites if typed <= (_words(s.name) | {_fold(s.code)})]
    return full[0] if len(full) == 1 else None


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
