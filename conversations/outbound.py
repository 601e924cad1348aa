"""The outbox worker's `render`: a row's catalogue template (or stored text) → the final text.

SMS rows lose their Vietnamese diacritics when `sms_strip_diacritics` is on (GSM-7, 160/153
characters a segment instead of UCS-2's 70/67). Given the outbox seal (the local simulators), a
row still sealed is opened first; without it a row renders as stored, codes and links masked
(the console)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from conversations.i18n import CATALOGUES, t
from conversations.text import strip_diacritics
from outbox.sealing import OutboxSeal, SealBroken
from outbox.store import open_row
from outbox.tables import OutboxRow

log = logging.getLogger(__name__)


def make_renderer(
    *, strip_sms_diacritics: bool, hotline: str, seal: OutboxSeal | None = None
) -> Callable[[OutboxRow], str]:
    def render(row: OutboxRow) -> str:
        if seal is not None and row.sealed:
            try:
                row = open_row(seal, row)
            except SealBroken:
                log.warning("outbox row %s: sealed with another SECRET_KEY; shown masked", row.id)
        text = row.text or ""
        if row.template and row.template in CATALOGUES["vi"]:
            try:
                text = t(row.language or "vi", row.template, hotline=hotline, **(row.params or {}))
            except (KeyError, IndexError, ValueError):
                log.error("outbox row %s: template %s lacks parameters", row.id, row.template)
                text = row.text or ""
        if row.channel == "sms" and strip_sms_diacritics:
            text = strip_diacritics(text)
        return text

    return render
