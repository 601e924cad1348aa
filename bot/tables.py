"""Telegram's own table: the update ids already processed (a redelivered update is not handled twice)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class TelegramUpdateRow(Base):
    __tablename__ = "telegram_updates"
    __table_args__ = (Index("ix_telegram_updates_received", "received_at"),)

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
