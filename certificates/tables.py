"""Issued certificates: which UVCI a person got, for which dose data, and whether it is revoked."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class IssuedCertificateRow(Base):
    __tablename__ = "issued_certificates"
    __table_args__ = (
        Index("ix_issued_certificates_person_id_id", "person_id", "id"),
        # at most one live (unrevoked) certificate per person, whichever worker issues it
        Index(
            "uq_issued_certificates_live_person",
            "person_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64))
    uvci: Mapped[str] = mapped_column(String(80), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of holder + dose data
    kid: Mapped[str] = mapped_column(String(16))  # hex
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dose_count: Mapped[int] = mapped_column(Integer)
    latest_dose_on: Mapped[date] = mapped_column(Date)
    hc1: Mapped[str] = mapped_column(Text)
