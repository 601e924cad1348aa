"""What a voice call says: the engine's neutral replies turned into text a speech synthesiser reads
well. Dates are spoken as dates, identifiers (national IDs, report references, phone numbers) digit by
digit, masked parts as a pause, numbered options as "press 1: …". No TwiML here (sms_gateway/voice.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from conversations.i18n import t
from conversations.model import Option, Reply

MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
# identifiers: report references (PA-7K3D-9Q), codes, masked IDs and phones (001******345, 09******21),
# site codes, long digit runs — 5+ characters of digits, capitals, - and * with a digit among them (a year,
# 4 digits, stays a number)
_IDENTIFIER = re.compile(
    r"\b[A-Z0-9]{2,}(?:-[A-Z0-9]{2,})+\b"  # references and codes: PA-7K3D-9Q, VX7K-3D9Q-MRT4
    r"|\b(?=[A-Z0-9*-]*\d)[A-Z0-9][A-Z0-9*-]{4,}\b"
    r"|\b\d{2,}\*+\d+\b"
)
_MASK = re.compile(r"\*+")


def spoken_date(day: int, month: int, year: int, language: str) -> str:
    if language == "en":
        return f"{day} {MONTHS_EN[month - 1]} {year}" if 1 <= month <= 12 else f"{day}/{month}/{year}"
    return f"ngày {day} tháng {month} năm {year}"


def spell(identifier: str, language: str) -> str:
    """`PA-7K3D-9Q` → `P A, 7 K 3 D, 9 Q`; `001******345` → `0 0 1, …, 3 4 5`."""
    hidden = "..."  # a pause where digits are masked
    groups = []
    for part in re.split(r"-", identifier):
        pieces = []
        for chunk in re.split(r"(\*+)", part):
            if not chunk:
                continue
            pieces.append(hidden if chunk.startswith("*") else " ".join(chunk))
        groups.append(" ".join(pieces))
    return ", ".join(g for g in groups if g)


def speakable(text: str, language: str) -> str:
    """One reply's text as it should be read aloud."""
    text = _DATE.sub(lambda m: spoken_date(int(m[1]), int(m[2]), int(m[3]), language), text)
    text = _IDENTIFIER.sub(lambda m: spell(m[0], language), text)
    text = _MASK.sub("...", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(line if line[-1] in ".:?!," else line + "." for line in lines)


def option_phrase(option: Option, language: str) -> str:
    return t(language, "voice.press", digit=spell(option.key, language), label=option.label)


@dataclass(frozen=True)
class Speech:
    """What one answer of a call says, and how the caller answers it."""

    text: str  # everything to say, options included
    menu: bool  # a choice among numbered options (one key) rather than an entry ended by `#`
    record_for: str | None  # a report ref: record a spoken description after this


def is_menu(options: Sequence[Option]) -> bool:
    """A choice among several one-key options; otherwise the caller types an entry (an ID, a date, a
    code) that `#` ends, and the options are shortcuts (`1` resend, `9` skip, `0` back)."""
    choices = [o for o in options if o.key != "0"]
    return len(choices) >= 2 and all(len(o.key) == 1 for o in options)


def speech(replies: Sequence[Reply], language: str) -> Speech:
    parts = [speakable(r.text, language) for r in replies if r.text]
    options = replies[-1].options if replies else ()
    menu = is_menu(options)
    if options and not menu:
        parts.append(t(language, "voice.end_with_hash"))
    parts.extend(option_phrase(o, language) for o in options)
    if options:
        parts.append(t(language, "voice.star_repeats"))
    record_for = next((r.record_for for r in replies if r.record_for), None)
    return Speech(" ".join(parts), menu, record_for)
