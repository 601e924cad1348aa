"""Telegram re-delivers an update after the service restarted (it had not seen our 200): it is
answered as a duplicate and not processed again — the receipt is in the database, not in memory.
(The same for Twilio over a SIGKILL: tests/faults/test_kill_and_restart.py. Re-deliveries within
one process, and concurrent ones on PostgreSQL: tests/bot/test_webhook.py,
tests/sms_gateway/test_twilio_webhook.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.conftest import SECRET, bot_settings, payload
from tests.fakes.telegram_api import TelegramApiStandIn
from tests.faults.service import AN, running


@pytest.fixture
def telegram_api() -> Iterator[TelegramApiStandIn]:
    with TelegramApiStandIn() as api:
        yield api


async def test_telegram_update_redelivered_after_a_restart(
    demo_db: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    settings = bot_settings(demo_db, tmp_path, telegram_api, public_base_url="http://testserver")
    update = payload("contact_own")  # An shares their own number: a code goes to it
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with running(settings) as first:
        answer = await first.client.post("/telegram/webhook", json=update, headers=headers)
        assert answer.status_code == 200 and answer.json()["description"] == "processed"
        assert len(await first.outbox_to(AN[0], "otp")) == 1
    async with running(settings) as second:  # a new process on the same database
        again = await second.client.post("/telegram/webhook", json=update, headers=headers)
        assert again.status_code == 200 and again.json()["description"] == "duplicate"
        assert len(await second.outbox_to(AN[0], "otp")) == 1  # one code, not two
    assert len(telegram_api.calls_of("sendMessage")) == 1
