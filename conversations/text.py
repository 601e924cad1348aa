"""Text measures and transforms shared by the renderers: diacritics, GSM-7, SMS segments, dates."""

from __future__ import annotations

import functools
import math
import unicodedata
from datetime import date

# GSM 03.38 default alphabet and its extension table (an extension character costs two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

_PUNCTUATION = str.maketrans(
    {
        "…": "...",
        "–": "-",
        "—": "-",
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "·": "-",
        "•": "-",
        "\u00a0": " ",
    }
)


@functools.lru_cache(maxsize=4096)  # menus and prompts repeat on every turn
def strip_diacritics(text: str) -> str:
    """Vietnamese without diacritics (`Nguyễn Văn Đức` → `Nguyen Van Duc`), typographic punctuation
    replaced by ASCII, so the text fits the GSM-7 alphabet."""
    text = text.translate(_PUNCTUATION).replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def fold(text: str) -> str:
    """For matching what people type: no diacritics, lower case, single spaces."""
    return " ".join(strip_diacritics(text).lower().split())


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_units(text: str) -> tuple[str, int]:
    """("gsm7", septets) or ("ucs2", UTF-16 code units)."""
    if is_gsm7(text):
        return "gsm7", sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
    return "ucs2", len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """How many SMS segments `text` costs: GSM-7 160 (153 per part when split), UCS-2 70 (67)."""
    encoding, units = sms_units(text)
    single, multi = (160, 153) if encoding == "gsm7" else (70, 67)
    if units <= single:
        return 1
    return math.ceil(units / multi)


def sms_capacity(text: str, segments: int) -> int:
    """How many units fit in `segments` segments in the encoding `text` needs."""
    encoding, _ = sms_units(text)
    single, multi = (160, 153) if encoding == "gsm7" else (70, 67)
    return single if segments == 1 else multi * segments


def ddmmyyyy(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def short_name(full_name: str) -> str:
    """`Phạm Thị Dung` stays; very long names are cut to keep menus within budget."""
    return full_name if len(full_name) <= 24 else full_name[:23] + "."
