"""Validation and normalisation of identity data: national IDs, phones, dates."""

from __future__ import annotations

import re
from datetime import date, datetime

_DIGITS = re.compile(r"\D+")

# The 2nd-3rd digits of a CCCD's "century+sex" code: 0/1 = 20th century (M/F), 2/3 = 21st, 4/5 = 22nd.
_CENTURY_BY_CODE = {0: 1900, 1: 1900, 2: 2000, 3: 2000, 4: 2100, 5: 2100}


def normalize_national_id(text: str) -> str | None:
    """12-digit CCCD or 9-digit CMND, spaces and dots tolerated; None when neither."""
    digits = _DIGITS.sub("", text or "")
    if len(digits) in (9, 12) and len(digits) == len((text or "").replace(" ", "").replace(".", "")):
        return digits
    return None


def cccd_birth_year_mismatch(national_id: str, date_of_birth: date) -> bool:
    """True when a 12-digit CCCD's century/sex and year digits disagree with the date of birth."""
    if len(national_id) != 12:
        return False
    code = int(national_id[3])
    century = _CENTURY_BY_CODE.get(code)
    if century is None:
        return True
    year = century + int(national_id[4:6])
    return year != date_of_birth.year


def normalize_phone(text: str) -> str | None:
    """A Vietnamese mobile number in any usual form as E.164 (+84…); None when it is not one.

    Accepts 0901234567, +84901234567, 84 90 123 4567, (090) 123-4567. Foreign E.164 numbers
    (+ and 8-15 digits) are kept as they are.
    """
    if not text:
        return None
    raw = text.strip()
    digits = _DIGITS.sub("", raw)
    if raw.startswith("+") and not digits.startswith("84"):
        return "+" + digits if 8 <= len(digits) <= 15 else None
    if digits.startswith("84") and len(digits) in (11, 12):
        national = digits[2:]
    elif digits.startswith("0") and len(digits) in (10, 11):
        national = digits[1:]
    elif len(digits) == 9 and digits[0] in "35789":
        national = digits
    else:
        return None
    if len(national) != 9 or national[0] not in "35789":
        return None
    return "+84" + national


def parse_ddmmyyyy(text: str) -> date | None:
    """A date typed as DDMMYYYY (also DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY); None when invalid."""
    digits = _DIGITS.sub("", text or "")
    if len(digits) != 8:
        return None
    try:
        return datetime.strptime(digits, "%d%m%Y").date()
    except ValueError:
        return None


def parse_iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def mask_phone(phone: str | None) -> str:
    """+84901234567 → 09******67 (national form, first two and last two digits)."""
    if not phone:
        return "—"
    national = "0" + phone[3:] if phone.startswith("+84") else phone
    if len(national) <= 4:
        return "*" * len(national)
    return national[:2] + "*" * (len(national) - 4) + national[-2:]


def mask_national_id(national_id: str | None) -> str:
    """079085001234 → 079******234."""
    if not national_id:
        return "—"
    if len(national_id) <= 6:
        return "*" * len(national_id)
    return national_id[:3] + "*" * (len(national_id) - 6) + national_id[-3:]
