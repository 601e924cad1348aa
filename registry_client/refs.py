"""Correction case references: `PA-7K3D-9Q` (6 random symbols + a check character)."""

from __future__ import annotations

from certificates.check_character import check_character, is_valid, normalize, random_body

PREFIX = "PA"


def new_case_ref() -> str:
    body = random_body(5)
    code = body + check_character(body)
    return f"{PREFIX}-{code[:4]}-{code[4:]}"


def parse_case_ref(text: str) -> str | None:
    """The canonical reference from what a person typed (`pa7k3d9q`, `PA-7K3D-9Q`); None if malformed
    or the check character does not match."""
    raw = normalize(text)
    if raw.startswith(PREFIX):
        raw = raw[len(PREFIX) :]
    if len(raw) != 6 or not is_valid(raw):
        return None
    return f"{PREFIX}-{raw[:4]}-{raw[4:]}"
