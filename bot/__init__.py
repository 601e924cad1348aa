"""Telegram adapter (python-telegram-bot): Update → Inbound → engine → Turn → Bot API calls."""

import os

# Opt in to python-telegram-bot's coming behaviour (time periods as timedelta, e.g.
# RetryAfter.retry_after) instead of a deprecation warning on every 429.
os.environ.setdefault("PTB_TIMEDELTA", "true")
