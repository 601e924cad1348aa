"""Human-typed codes: an alphabet without look-alike characters and a check character.

31 symbols (no 0/O, 1/I/L). The check character is a weighted sum modulo 31 (a prime) with
weights 1..n: it catches every single-character substitution and every adjacent swap.
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_MOD = len(ALPHABET)


def check_character(body: str) -> str:
    total = sum((i + 1) * _VALUE[ch] for i, ch in enumerate(body))
    return ALPHABET[(-total) % _MOD]


def is_valid(body_with_check: str) -> bool:
    if not body_with_check or any(ch not in _VALUE for ch in body_with_check):
        return False
    return check_character(body_with_check[:-1]) == body_with_check[-1]


def random_body(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalize(text: str) -> str:
    """Upper-cases and drops separators; maps look-alikes a person may type (O→0 is not in the
    alphabet, so O/0 and I/L/1 are left for the check character to catch)."""
    return "".join(ch for ch in (text or "").upper() if ch.isalnum())
