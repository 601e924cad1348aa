"""Holder names for the DCC `nam` object: Vietnamese name order and ICAO 9303 transliteration.

A Vietnamese full name is family name first (`Nguyễn Văn Ánh`): `fn` = `Nguyễn`,
`gn` = `Văn Ánh`. The `fnt`/`gnt` fields are the machine-readable-zone form of ICAO Doc 9303
part 3: upper-case A–Z, spaces and hyphens become `<`, diacritics are dropped (`Đ` → `D`),
and the few letters with a two-letter transliteration (`Ä` → `AE`, `ß` → `SS`, …) get it.
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 80  # schema 1.3.0: fnt/gnt at most 80 characters

# ICAO 9303 part 3, table of transliterations that are not just "drop the diacritic".
_SPECIAL = {
    "Đ": "D",
    "Ð": "D",
    "Ä": "AE",
    "Å": "AA",
    "Æ": "AE",
    "Ö": "OE",
    "Ø": "OE",
    "Ü": "UE",
    "ß": "SS",
    "Þ": "TH",
    "Œ": "OE",
    "Ĳ": "IJ",
    "Ł": "L",
    "Ħ": "H",
    "Ŧ": "T",
    "Ŋ": "N",
    "I": "I",
}


def split_vietnamese_name(full_name: str) -> tuple[str, str]:
    """(family name, given names) of a name written family name first."""
    words = full_name.split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])


def icao_transliterate(name: str) -> str:
    """`Nguyễn Văn Ánh` → `NGUYEN<VAN<ANH`; `Đặng` → `DANG`; `Gößinger` → `GOESSINGER`."""
    out: list[str] = []
    for ch in name.upper():
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
            continue
        if ch in " -\u2010\u2011,":
            out.append("<")
            continue
        base = unicodedata.normalize("NFKD", ch)
        out.extend(c for c in base if "A" <= c <= "Z")
    text = "".join(out)
    while "<<" in text:
        text = text.replace("<<", "<")
    return text.strip("<")[:MAX_LENGTH]


def dcc_name(full_name: str) -> dict[str, str]:
    """The DCC `nam` object of a Vietnamese full name."""
    family, given = split_vietnamese_name(" ".join(full_name.split()))
    nam = {"fn": family, "fnt": icao_transliterate(family)}
    if given:
        nam["gn"] = given
        nam["gnt"] = icao_transliterate(given)
    return nam


def display_name(nam: object, family_first: bool) -> str:
    """A readable name from a decoded `nam` (falls back to the transliterated fields)."""
    if not isinstance(nam, dict):
        return ""
    family = nam.get("fn") or nam.get("fnt") or ""
    given = nam.get("gn") or nam.get("gnt") or ""
    family = family.replace("<", " ") if isinstance(family, str) else ""
    given = given.replace("<", " ") if isinstance(given, str) else ""
    parts = [family, given] if family_first else [given, family]
    return " ".join(p for p in parts if p).strip()


def shortened_name(full_name: str) -> str:
    """The name a checkpoint is shown for a certificate code: family and last given name in full,
    the middle names as initials (`Nguyễn Thị Ánh` → `Nguyễn T. Ánh`)."""
    words = full_name.split()
    if len(words) <= 2:
        return " ".join(words)
    middle = [w[0].upper() + "." for w in words[1:-1]]
    return " ".join([words[0], *middle, words[-1]])
