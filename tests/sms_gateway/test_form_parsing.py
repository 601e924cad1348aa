"""The gateway form parser gives what the standard library's parser gives, faster: any body made of
form-encoding's own characters, valid and invalid UTF-8 escapes included."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi import HTTPException
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.forms import parse_form

FORM_CHARS = st.sampled_from(
    list("ab=&+%*#_-.09AFfz ") + ["%2B", "%2A", "%C3%A1", "%E1%BB%87", "%FF", "%C3", "%2", "đ"]
)


def standard(body: bytes) -> dict[str, str] | str:
    try:
        return dict(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
        )
    except (UnicodeDecodeError, ValueError):
        return "400"


def ours(body: bytes) -> dict[str, str] | str:
    try:
        return parse_form(body)
    except HTTPException as exc:
        assert exc.status_code == 400
        return "400"


@given(st.lists(FORM_CHARS, max_size=40).map(lambda parts: "".join(parts).encode()))
def test_same_answer_as_parse_qsl(body: bytes) -> None:
    assert ours(body) == standard(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            urlencode({"sessionId": "ATUid_1", "phoneNumber": "+84901234567", "text": "1*2*0790"}).encode(),
            {"sessionId": "ATUid_1", "phoneNumber": "+84901234567", "text": "1*2*0790"},
        ),
        (b"text=&phoneNumber=%2B84901234567&flag", {"text": "", "phoneNumber": "+84901234567", "flag": ""}),
        (b"Body=Xin+ch%C3%A0o&Body=again", {"Body": "again"}),  # the last value wins
        (b"Body=%FF", "400"),
        (b"Body=\xc4", "400"),  # a raw byte that is no UTF-8
        (b"\xff=1", "400"),
    ],
)
def test_recorded_bodies(body: bytes, expected: dict[str, str] | str) -> None:
    assert ours(body) == expected
