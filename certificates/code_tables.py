"""Certificate codes and the failed-check counters that lock guessing out."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class CertificateCodeRow(Base):
    """One code per issued certificate (`uvci`): a reissued certificate gets a new code, and the
    old code follows its certificate's status (revoked, expired) through `issued_certificates`.

    The code itself is never stored readable (certificates/code_secrets.py): `code_digest` finds
    it, `code_sealed` gives it again to its holder."""

    __tablename__ = "certificate_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # NULL only on a row left by an earlier version, until the next start seals it
    code_digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=True)  # HMAC-SHA256, hex
    code_sealed: Mapped[str] = mapped_column(String(120), nullable=True)  # AES-256-GCM, bound to `uvci`
    # Before revision 0006a the code was kept here in clear. Never written now: rows left by an
    # earlier version are sealed and emptied at start (code_store.seal_plain_codes).
    legacy_code: Mapped[str | None] = mapped_column("code", String(16), nullable=True, default=None)
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
