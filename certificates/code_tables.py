"""Certificate codes and the failed-check counters that lock guessing out."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class CertificateCodeRow(Base):
    """One code per issued certificate (`uvci`): a reissued certificate gets a new code, and the
    old code follows its certificate's status (revoked, expired) through `issued_certificates`."""

    __tablename__ = "certificate_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # canonical: 12 symbols, no dashes
    uvci: Mapped[str] = mapped_column(String(80), unique=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    holder_name: Mapped[str] = mapped_column(String(120))  # shortened: `Nguyễn T. Ánh`
    birth_year: Mapped[int] = mapped_column(SmallInteger)
    dose_count: Mapped[int] = mapped_column(Integer)
    latest_dose_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CodeAttemptRow(Base):
    """Failed checks in a fixed window per key (a hashed caller or code), and a block until."""

    __tablename__ = "certificate_code_attempts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
