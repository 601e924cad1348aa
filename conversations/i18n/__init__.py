"""Message catalogues. `t(language, key, **params)`; Vietnamese is the default and the fallback."""

from __future__ import annotations

from typing import Any

from conversations.i18n import en, vi

CATALOGUES: dict[str, dict[str, str]] = {"vi": vi.MESSAGES, "en": en.MESSAGES}
LANGUAGES = ("vi", "en")


def t(language: str, key: str, **params: Any) -> str:
    catalogue = CATALOGUES.get(language, vi.MESSAGES)
    template = catalogue.get(key) or vi.MESSAGES[key]
    return template.format(**params) if params else template
