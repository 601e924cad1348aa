"""What a call says: dates as dates, identifiers digit by digit, options as 'press …'."""

from __future__ import annotations

import pytest

from conversations.model import Option, Reply
from conversations.voice_text import is_menu, speakable, speech


@pytest.mark.parametrize(
    ("text", "language", "said"),
    [
        ("Mũi 1: AstraZeneca, 02/08/2021", "vi", "Mũi 1: AstraZeneca, ngày 2 tháng 8 năm 2021."),
        ("Dose 1: AstraZeneca, 02/08/2021", "en", "Dose 1: AstraZeneca, 2 August 2021."),
        ("CCCD 001******345", "vi", "CCCD 0 0 1 ... 3 4 5."),
        ("Report PA-CKGA-RP sent", "en", "Report P A, C K G A, R P sent."),
        ("Code VX7K-3D9Q-MRT4", "en", "Code V X 7 K, 3 D 9 Q, M R T 4."),
        ("Site HN001\nDue 10/06/2024", "en", "Site H N 0 0 1. Due 10 June 2024."),
        ("In 2021 you had 2 doses", "en", "In 2021 you had 2 doses."),  # a year and a count stay numbers
    ],
)
def test_speakable(text: str, language: str, said: str) -> None:
    assert speakable(text, language) == said


def test_a_menu_is_several_one_key_choices_and_anything_else_an_entry() -> None:
    assert is_menu((Option("1", "a"), Option("2", "b"), Option("0", "back")))
    assert not is_menu((Option("1", "resend"), Option("0", "back")))  # a code entry with a shortcut
    assert not is_menu((Option("98", "more"), Option("0", "menu")))
    said = speech([Reply("Enter the code:", (Option("1", "Resend"), Option("0", "Back")))], "en")
    assert said.text == (
        "Enter the code: End your entry with the hash key. Press 1: Resend. Press 0: Back. "
        "Press star to hear this again."
    )
    assert not said.menu and said.record_for is None
