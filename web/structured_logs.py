"""Structured (JSON) logs with personal data masked.

Every record passes through `MaskPersonalData`: phone numbers become `09******67`, national IDs
`079******234`, one-time codes after the word "code"/"mã" become `******`, whatever the logger
wrote; and through `RedactSecrets` (web.log_redaction): no configured secret, bot token or
`token=` query value is ever written. Configured by `configure_logging(settings)` at start-up.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from settings import Settings
from web.log_redaction import RedactSecrets, configured_secrets

_PHONE = re.compile(r"(?<![\d*])(?:\+?84|0)([35789]\d{8})(?!\d)")
_NATIONAL_ID = re.compile(r"(?<![\d*])(\d{3})(\d{3,6})(\d{3})(?!\d)")
_CODE = re.compile(r"(?i)\b(code|otp|mã)(\s*[:=]?\s*)\d{6}\b")
# Signed link tokens are credentials for days: /c/<token>, /upload/<token>.
_LINK_TOKEN = re.compile(r"(/(?:c|upload)/)[A-Za-z0-9_\-.~%]{12,}")


def mask_text(text: str) -> str:
    text = _LINK_TOKEN.sub(lambda m: m.group(1) + "<token>", text)
    text = _CODE.sub(lambda m: f"{m.group(1)}{m.group(2)}******", text)
    text = _PHONE.sub(lambda m: "0" + m.group(1)[0] + "*" * 6 + m.group(1)[-2:], text)
    return _NATIONAL_ID.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


class MaskPersonalData(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        exc_text = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else "")
        if exc_text:  # already redacted by RedactSecrets when that filter saw the record
            entry["exc"] = mask_text(exc_text)
        return json.dumps(entry, ensure_ascii=False)


# Loggers that carry URLs and request lines (the Bot API URL holds the bot token): the filter sits on
# them too, so a handler added to one of them later still gets redacted records.
REDACTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "telegram", "twilio")
QUIET_LOGGERS = ("httpx", "httpcore", "twilio.http_client")  # a line per outgoing request: warnings only


def configure_logging(
    settings: Settings | None = None, level: int = logging.INFO, json_lines: bool = True
) -> RedactSecrets:
    """Root handler on stderr with personal data masked and every secret of `settings` redacted."""
    redact = RedactSecrets(configured_secrets(settings) if settings is not None else ())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redact)
    handler.addFilter(MaskPersonalData())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("", *REDACTED_LOGGERS):
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, RedactSecrets)] + [redact]
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn.access", "uvicorn.error", "httpx"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    return redact
