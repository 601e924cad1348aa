"""The voice line's own table: one row per call (no phone number kept), for the admin dashboard —
how many callers the line served without putting them through to an agent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class VoiceCallRow(Base):
    __tablename__ = "voice_calls"
    __table_args__ = (Index("ix_voice_calls_started", "started_at"),)

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    handed_over: Mapped[bool] = mapped_column(Boolean, default=False)  # put through to the hotline
    status: Mapped[str | None] = mapped_column(String(16))  # Twilio's final CallStatus
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
