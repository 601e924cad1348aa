"""WhatsApp's customer-service window: a business may start a free-form message to a WhatsApp
user only within 24 hours of that user's last message. A message the service starts itself (a
report's outcome, a fresh certificate link) to a WhatsApp user whose last message is older goes
by SMS to the same person instead, and `whatsapp_sms_fallback_total` counts it.

The user's last message is the `updated_at` of their WhatsApp conversation row (every inbound
WhatsApp message is a turn that writes it; nothing the service sends touches it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conversations.model import Channel
from conversations.tables import ConversationSessionRow
from registry_client.clock import Clock, as_utc, utc_now

SESSION_WINDOW = timedelta(hours=24)

SMS_FALLBACKS = Counter(
    "whatsapp_sms_fallback_total",
    "Messages the service started for a WhatsApp user that went by SMS (WhatsApp's 24-hour window closed)",
    ["kind"],
)
WHATSAPP_STARTED = Counter(
    "whatsapp_started_messages_total",
    "Messages the service started that went to a WhatsApp user on WhatsApp (window open)",
    ["kind"],
)


class WhatsAppWindow:
    def __init__(self, sessions: async_sessionmaker[AsyncSession] | Any, clock: Clock = utc_now) -> None:
        self.sessions, self.clock = sessions, clock

    async def is_open(self, address: str) -> bool:
        """The WhatsApp user at `address` wrote to us within the last 24 hours."""
        async with self.sessions() as db:
            last = await db.scalar(
                select(ConversationSessionRow.updated_at).where(
                    ConversationSessionRow.channel == Channel.WHATSAPP.value,
                    ConversationSessionRow.address == address,
                )
            )
        return last is not None and self.clock() - as_utc(last) < SESSION_WINDOW

    @staticmethod
    def counted(kind: str, *, fell_back: bool) -> None:
        (SMS_FALLBACKS if fell_back else WHATSAPP_STARTED).labels(kind).inc()
