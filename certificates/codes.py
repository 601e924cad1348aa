"""Certificate codes: `VX7K-3D9Q-MRT4`, short enough to read out or type at a checkpoint.

A code is 11 random symbols from the 31-symbol alphabet of `check_character` (no 0/O, 1/I/L):
31**11 ≈ 2**54.5 possibilities, drawn with `secrets`, plus one check character (weighted sum
mod 31). Shown in groups of four; typed any way (lower case, spaces, dashes, dots).

`parse_code` tells a mistyped code (a wrong length, a character outside the alphabet, a check
character that does not match: "check the code") from a well-formed one that may or may not
exist (that is the store's business).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from certificates.check_character import ALPHABET, is_valid

BODY_LENGTH = 11
CODE_LENGTH = BODY_LENGTH + 1
GROUP = 4
RANDOM_BITS = BODY_LENGTH * math.log2(len(ALPHABET))  # ≈ 54.5
_SEPARATORS = frozenset(" -–—._/\t\n\r\u00a0")


_BASE = len(ALPHABET)
_SPACE = _BASE**BODY_LENGTH


def generate_code() -> str:
    """A new code in its canonical form (12 symbols, no separators): one uniform draw from
    31**11 (`secrets`), written in base 31."""
    n = secrets.randbelow(_SPACE)
    symbols, weighted = [], 0
    for weight in range(1, BODY_LENGTH + 1):
        n, digit = divmod(n, _BASE)
        symbols.append(ALPHABET[digit])
        weighted += weight * digit
    symbols.append(ALPHABET[-weighted % _BASE])  # = check_character(body), computed on the way
    return "".join(symbols)


def format_code(code: str) -> str:
    """`VX7K3D9QMRT4` → `VX7K-3D9Q-MRT4`."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


@dataclass(frozen=True)
class ParsedCode:
    """What someone typed: `code` (canonical) when well formed, else `problem`."""

    code: str | None
    problem: str | None = None  # "empty", "length", "character", "check"

    @property
    def ok(self) -> bool:
        return self.code is not None


def canonical(text: str) -> str:
    """Upper case without separators (the form codes are stored and looked up in)."""
    return "".join(ch for ch in (text or "").upper() if ch not in _SEPARATORS)


def parse_code(text: object) -> ParsedCode:
    """A typed code → its canonical form, or why it cannot be one of ours."""
    if not isinstance(text, str):
        return ParsedCode(None, "empty")
    code = canonical(text[:100])
    if not code:
        return ParsedCode(None, "empty")
    if len(code) != CODE_LENGTH:
        return ParsedCode(None, "length")
    if any(ch not in ALPHABET for ch in code):  # 0, O, 1, I, L, punctuation: never in a code
        return ParsedCode(None, "character")
    if not is_valid(code):
        return ParsedCode(None, "check")
    return ParsedCode(code)


def mask_code(code: str) -> str:
    """For logs and audit details: `VX7K-…` (the rest would let a reader use the code)."""
    return canonical(code)[:4] + "…"
