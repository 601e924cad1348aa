"""Secrets never reach a log line.

`RedactSecrets` knows every secret the service is configured with (`configured_secrets`): the
Telegram bot token, the gateway token, the Telegram webhook secret, the Twilio auth token,
SECRET_KEY, METRICS_TOKEN, the REGISTRY_AUTH credentials and the passwords in DATABASE_URL and
REDIS_URL. It replaces each of them — as written, URL-encoded, or inside a basic-auth header —
anywhere in a record's message, arguments, exception or stack text. Whatever it was not told,
it still masks by shape: a Telegram bot token (`123456:AA…`, as in `/bot<token>/sendMessage`)
and the value of `token=`, `secret=`, `password=`, `key=` query parameters (access-log lines).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from settings import Settings

MASK = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; no real secret is that short
_BOT_TOKEN = re.compile(r"(?<!\d)\d{5,16}:[A-Za-z0-9_-]{20,}")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:token|access_token|secret|password|passwd|key|api_key|signature|sig)=)[^&\s\"'#]+"
)
_FORMATTER = logging.Formatter()


def _url_password(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def _registry_auth(value: str | None) -> list[str]:
    """`bearer:<token>` → the token; `basic:<user>:<password>` → the password and the header value."""
    if not value:
        return []
    scheme, _, rest = value.partition(":")
    found = [value, rest]
    if scheme.lower() == "basic" and ":" in rest:
        found.append(rest.split(":", 1)[1])
        found.append(base64.b64encode(rest.encode()).decode())
    return found


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value this configuration holds (generated ones included, resolved now)."""
    found: list[str | None] = [
        settings.telegram_bot_token,
        settings.resolved_gateway_token,
        settings.twilio_auth_token,
        settings.resolved_secret_key,
        settings.metrics_token,
        settings.telegram_webhook_secret,
    ]
    if settings.telegram_bot_token and settings.telegram_mode == "webhook":
        found.append(settings.resolved_telegram_webhook_secret)
    if settings.twilio_account_sid and settings.twilio_auth_token:
        pair = f"{settings.twilio_account_sid}:{settings.twilio_auth_token}"
        found.append(base64.b64encode(pair.encode()).decode())  # the REST calls' basic auth
    found += _registry_auth(settings.registry_auth)
    found += _url_password(settings.database_url) + _url_password(settings.redis_url)
    return [value for value in found if value]


class RedactSecrets(logging.Filter):
    """A logging filter (on handlers and loggers) that masks secrets in every record it sees."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        variants = {v for s in secrets if len(s) >= MIN_SECRET_CHARS for v in (s, quote(s, safe=""))}
        ordered = sorted(variants, key=len, reverse=True)  # a secret containing another goes first
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _BOT_TOKEN.sub(MASK, text)
        return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: keep what it says, unformatted
            message = f"{record.msg} {record.args}"
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
