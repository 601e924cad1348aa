"""Unique vaccination certificate identifiers (eHealth Network UVCI guideline, option 3).

`URN:UVCI:01:VN:<unique>#<check>`; the check character is Luhn mod N over the 38-symbol
alphabet `A–Z 0–9 / :`, computed on the whole string before `#` (the algorithm of the DCC
schema FAQ and its reference implementation). Foreign certificates often carry no or a wrong
check character, so verification never rejects on it; `has_valid_checksum` is informational.
"""

from __future__ import annotations

import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
_N = len(ALPHABET)
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
PREFIX = "URN:UVCI:01:VN:"
_UNIQUE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I/O look-alikes


def _luhn_sum(text: str, factor: int) -> int:
    total = 0
    for ch in reversed(text):
        addend = factor * _VALUE[ch]
        factor = 1 if factor == 2 else 2
        total += addend // _N + addend % _N
    return total % _N


def check_character(text: str) -> str:
    """The Luhn mod 38 check character of `text` (upper-case UVCI without `#`)."""
    return ALPHABET[(_N - _luhn_sum(text, 2)) % _N]


def has_valid_checksum(uvci: str) -> bool:
    body, sep, check = uvci.upper().partition("#")
    if not sep or len(check) != 1 or any(ch not in _VALUE for ch in body + check):
        return False
    return _luhn_sum(body + check, 1) == 0


def new_uvci(length: int = 20) -> str:
    """A fresh Viet Nam UVCI with ~100 bits of randomness and its check character."""
    unique = "".join(secrets.choice(_UNIQUE_ALPHABET) for _ in range(length))
    body = PREFIX + unique
    return f"{body}#{check_character(body)}"
