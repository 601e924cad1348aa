"""SMS keywords (docs/sms-keywords.md), case- and accent-insensitive, Vietnamese and English."""

from __future__ import annotations

from dataclasses import dataclass

from conversations.text import fold

KEYWORDS: dict[str, str] = {
    "hd": "help",
    "help": "help",
    "dk": "login",
    "login": "login",
    "mui": "status",
    "status": "status",
    "qr": "certificate",
    "cert": "certificate",
    "pa": "report",
    "report": "report",
    "kq": "check",
    "check": "check",
    "ma": "code",
    "code": "code",
    "kt": "verify",
    "verify": "verify",
    "tv": "lang_vi",
    "en": "lang_en",
    "dx": "logout",
    "logout": "logout",
}


ENGLISH = frozenset({"help", "login", "status", "cert", "report", "check", "code", "verify", "logout"})
VIETNAMESE = frozenset({"hd", "dk", "mui", "qr", "pa", "kq", "ma", "kt", "dx"})


@dataclass(frozen=True)
class Command:
    name: str
    argument: str | None = None
    language: str | None = None  # "en" for an English keyword (HELP, STATUS, …), "vi" for a Vietnamese one


def parse_keyword(text: str) -> Command | None:
    """`mũi` → status; `DK 001085012345 14031985` → login with the rest as argument."""
    folded = fold(text)
    if not folded:
        return None
    first, _, rest = folded.partition(" ")
    word = first.strip(".,:;!?")
    name = KEYWORDS.get(word)
    if name is None:
        return None
    argument = text.strip().split(None, 1)[1].strip() if rest else None
    return Command(name, argument or None, "en" if word in ENGLISH else "vi" if word in VIETNAMESE else None)
