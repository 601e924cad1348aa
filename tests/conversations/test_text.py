"""SMS measures, diacritics, keywords and pagination."""

from __future__ import annotations

import pytest

from conversations.keywords import parse_keyword
from conversations.model import Channel, Option, Reply
from conversations.rendering import fits, paginate, ussd_text
from conversations.text import sms_segments, strip_diacritics


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters cost two septets
        ("€" * 81, 2),
        ("ă" * 70, 1),  # Vietnamese diacritics: UCS-2
        ("ă" * 71, 2),
        ("ă" * 134, 2),
        ("ă" * 135, 3),
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


def test_strip_diacritics() -> None:
    assert (
        strip_diacritics("Nguyễn Văn Đức — Trạm Y tế “Dịch Vọng”") == 'Nguyen Van Duc - Tram Y te "Dich Vong"'
    )
    assert sms_segments(strip_diacritics("Mũi đã tiêm " * 13)) == 1


@pytest.mark.parametrize(
    ("text", "name", "argument"),
    [
        ("mũi", "status", None),
        ("MUI", "status", None),
        ("Mui.", "status", None),
        ("  Đk 001085012345 14031985 ", "login", "001085012345 14031985"),
        ("kq pa-7k3d-9q", "check", "pa-7k3d-9q"),
        ("Mã", "code", None),
        ("KT VX7K-3D9Q-MRT4 1985", "verify", "VX7K-3D9Q-MRT4 1985"),
        ("tv", "lang_vi", None),
        ("HELP", "help", None),
    ],
)
def test_keywords_are_case_and_accent_insensitive(text: str, name: str, argument: str | None) -> None:
    command = parse_keyword(text)
    assert command is not None and (command.name, command.argument) == (name, argument)


@pytest.mark.parametrize("text", ["", "xin chao", "mui9", "1", "muiiii"])
def test_other_text_is_no_keyword(text: str) -> None:
    assert parse_keyword(text) is None


@pytest.mark.parametrize("channel", [Channel.USSD, Channel.SMS])
def test_pages_fit_and_keep_all_text(channel: Channel) -> None:
    text = "\n".join(
        f"Mũi {i}: Vaxzevria (AstraZeneca), 02/08/2021, Trạm Y tế Phường Dịch Vọng" for i in range(12)
    )
    final = (Option("0", "Menu chính"),)
    pages = paginate(text, final, Option("98", "Xem tiếp"), lambda r: fits(channel, r, False, strip=False))
    assert len(pages) > 1
    assert all(fits(channel, p, False, strip=False) for p in pages)
    assert pages[-1].options == final and all(p.options[0].key == "98" for p in pages[:-1])
    assert " ".join(" ".join(p.text.split()) for p in pages) == " ".join(text.split())


def test_ussd_end_has_no_options() -> None:
    assert ussd_text(Reply("Bye", (Option("1", "x"),)), True, strip=True) == "END Bye"
