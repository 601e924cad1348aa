"""The engine's durable state: sessions, one-time codes, channel bindings, rate counters, receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class ConversationSessionRow(Base):
    """One conversation per channel identity; USSD keeps the gateway's current sessionId in it, so a
    new USSD session from the same phone can offer to resume the dropped one."""

    __tablename__ = "conversation_sessions"
    __table_args__ = (
        UniqueConstraint("channel", "address"),
        Index("ix_conversation_sessions_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    session_key: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(2), default="vi")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OtpChallengeRow(Base):
    """A one-time code sent to a person's registered phone for a caller (channel identity)."""

    __tablename__ = "otp_challenges"
    __table_args__ = (
        Index("ix_otp_challenges_person", "person_id", "created_at"),
        Index("ix_otp_challenges_phone", "phone", "created_at"),
        Index("ix_otp_challenges_caller", "channel", "address", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    nonce: Mapped[str] = mapped_column(String(32), unique=True)
    person_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # used, replaced or burnt


class ChannelBindingRow(Base):
    """A verified link between a channel identity and a person, valid until `expires_at` and only
    while `via_phone` (the phone the one-time code went to) is the person's registered phone."""

    __tablename__ = "channel_bindings"
    __table_args__ = (
        UniqueConstraint("channel", "address", "person_id"),
        Index("ix_channel_bindings_person", "person_id", "channel"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    unreachable_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    via_phone: Mapped[str | None] = mapped_column(String(20))  # None: bound before it was kept


class PhoneChangeRow(Base):
    """A change of a person's registered phone asked by a hotline agent; it takes effect when the
    caller reads back the code sent to the new phone. Only the code's hash is kept."""

    __tablename__ = "phone_changes"
    __table_args__ = (Index("ix_phone_changes_person", "person_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64))
    new_phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12))  # pending | confirmed | dead
    requested_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateCounterRow(Base):
    """A fixed-window counter with an optional block (login lockouts, "no record" answers)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InboundReceiptRow(Base):
    """A processed provider delivery (MessageSid, update_id) and the replies it got."""

    __tablename__ = "inbound_receipts"
    __table_args__ = (Index("ix_inbound_receipts_created", "created_at"),)

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    replies: Mapped[list[Any]] = mapped_column(JSON)
    end: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
