"""Both catalogues have the same keys and placeholders; outbound SMS fit their budget."""

from __future__ import annotations

import string

import pytest

from conversations.i18n import en, vi
from conversations.outbound import make_renderer
from conversations.text import sms_segments
from outbox.tables import OutboxRow


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_same_keys_and_placeholders() -> None:
    assert set(vi.MESSAGES) == set(en.MESSAGES)
    for key in vi.MESSAGES:
        assert fields(vi.MESSAGES[key]) == fields(en.MESSAGES[key]), key


PARAMS = {
    "code": "482915",
    "minutes": 5,
    "name": "Nguyễn Thị Phương Thảo",
    "link": "https://vax.example.gov.vn/c/MXwxNzk2MjM4MjIz.GMo1c9yL4ojjybXozjovVg",
    "days": 7,
    "ref": "PA-7K3D-9Q",
    "note": "Không tìm thấy trong sổ tiêm của trạm, vui lòng mang giấy tờ tới trạm",
    "handler": "Trạm Y tế Phường Tân Phong, Quận 7",
}


@pytest.mark.parametrize("language", ["vi", "en"])
@pytest.mark.parametrize("template", sorted(k for k in vi.MESSAGES if k.startswith("sms.")))
def test_outbound_sms_fit_two_segments(template: str, language: str) -> None:
    row = OutboxRow(id=1, channel="sms", template=template, params=PARAMS, language=language, text=None)
    text = make_renderer(strip_sms_diacritics=True, hotline="1900 9095")(row)
    assert "{" not in text and sms_segments(text) <= 2, text
