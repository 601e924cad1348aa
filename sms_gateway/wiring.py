"""How the SMS/USSD channel plugs into the app (app.py's "channels" section)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from conversations.outbound import make_renderer
from outbox.worker import OutboxWorker, Sender
from settings import Settings
from sms_gateway.sender import TwilioSender, WhatsAppSender

Background = list[tuple[str, float, Callable[[], Awaitable[object]]]]


def wire_sms(settings: Settings, state: Any, background: Background) -> None:
    """`state.outbox_worker` sends the outbox: {"sms": TwilioSender, or None (kept locally for the
    simulator and console) when Twilio is not configured; "whatsapp": WhatsAppSender likewise, when
    WhatsApp is served (settings.whatsapp_enabled)}. The Telegram channel adds its sender
    with `state.outbox_worker.senders["telegram"] = …`. The gateway token is resolved here, at
    start: generated into DATA_DIR on the first start when USSD_GATEWAY_TOKEN is unset."""
    settings.resolved_gateway_token  # noqa: B018 - created now, not on the first request
    sms_sender: Sender | None = TwilioSender(settings) if settings.twilio_enabled else None
    state.sms_sender = sms_sender
    senders: dict[str, Sender | None] = {"sms": sms_sender}
    if settings.whatsapp_enabled:  # sent through Twilio, or kept locally for the simulator
        senders["whatsapp"] = WhatsAppSender(settings) if settings.whatsapp_sending else None
    state.outbox_worker = OutboxWorker(
        state.outbox,
        senders,
        make_renderer(strip_sms_diacritics=settings.sms_strip_diacritics, hotline=settings.hotline_number),
    )
    background.append(
        ("outbox", settings.outbox_poll_seconds, _drain(state.outbox_worker, settings.outbox_poll_seconds))
    )


def _drain(worker: OutboxWorker, interval: float) -> Callable[[], Awaitable[object]]:
    async def tick() -> int:
        """Sends everything due (batch after batch), then waits for the next interval — or less:
        a turn that commits a message kicks the outbox (`Outbox.kick`), so a one-time code goes
        out at once. Runs until cancelled (the app's loop restarts it after an error)."""
        while True:
            total = 0
            while (sent := await worker.run_once()) > 0:
                total += sent
                if total >= 500:
                    await asyncio.sleep(0)  # let requests in between big batches
                    total = 0
            await worker.outbox.wait_for_work(interval)

    return tick
