"""Structured (JSON) logs with personal data masked.

Every record passes through `MaskPersonalData`: phone numbers become `09******67`, national IDs
`079******234`, one-time codes after the word "code"/"mã" become `******`, whatever the logger
wrote. Configured by `configure_logging()` at start-up.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

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
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(MaskPersonalData())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn.access", "uvicorn.error", "httpx"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
