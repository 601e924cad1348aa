"""The outbox table: one row per outbound message (SMS, Telegram), with its delivery state.

`text` and `params` hold what may be shown (codes and link tokens masked); what the message
needs to be sent is in `sealed` (outbox/sealing.py) until it is sent or finally failed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_address", "channel", "address"),
        Index("ix_outbox_provider", "provider_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # sms | telegram
    address: Mapped[str] = mapped_column(String(64))  # E.164 phone or Telegram chat id
    kind: Mapped[str] = mapped_column(String(40))  # otp, link, notification, reply, ...
    text: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(60))  # rendered at send time when text is None
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sealed: Mapped[str | None] = mapped_column(Text)  # AEAD of the secret parts; NULL once done
    media_path: Mapped[str | None] = mapped_column(String(400))
    language: Mapped[str] = mapped_column(String(2), default="vi")
    status: Mapped[str] = mapped_column(
        String(16)
    )  # pending | sending | sent | delivered | failed | local | unreachable
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(20))
    provider_id: Mapped[str | None] = mapped_column(String(64))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
