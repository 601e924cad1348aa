"""Tables of the embedded registry. Persons are keyed by national ID + date of birth."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class PersonRow(Base):
    __tablename__ = "persons"
    __table_args__ = (UniqueConstraint("national_id", "date_of_birth", name="uq_persons_identity"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    national_id: Mapped[str] = mapped_column(String(12))
    date_of_birth: Mapped[date] = mapped_column(Date)
    full_name: Mapped[str] = mapped_column(String(200))
    sex: Mapped[str | None] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ContactRow(Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_phone", "phone"), Index("ix_contacts_person", "person_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evidence: Mapped[str | None] = mapped_column(String(200))
    added_by: Mapped[str | None] = mapped_column(String(100))


class SiteRow(Base):
    __tablename__ = "sites"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str | None] = mapped_column(String(100))


class DoseRow(Base):
    __tablename__ = "doses"
    __table_args__ = (UniqueConstraint("person_id", "dose_number", name="uq_doses_person_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    dose_number: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(40))
    lot: Mapped[str | None] = mapped_column(String(40))
    administered_on: Mapped[date] = mapped_column(Date)
    site_code: Mapped[str] = mapped_column(ForeignKey("sites.code"))
    source: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaseRow(Base):
    __tablename__ = "correction_cases"
    __table_args__ = (
        Index("ix_cases_person", "person_id"),
        Index("ix_cases_queue", "site_code", "status", "due_on"),
        Index("ix_cases_claimed", "claimed_national_id"),
    )

    ref: Mapped[str] = mapped_column(String(16), primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    claimed_national_id: Mapped[str | None] = mapped_column(String(12))
    claimed_date_of_birth: Mapped[date | None] = mapped_column(Date)
    claimed_name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    doses_concerned: Mapped[str | None] = mapped_column(String(16))
    claimed_date: Mapped[date | None] = mapped_column(Date)
    claimed_vaccine: Mapped[str | None] = mapped_column(String(100))
    claimed_site: Mapped[str | None] = mapped_column(String(200))
    claimed_lot: Mapped[str | None] = mapped_column(String(40))
    workplace: Mapped[str | None] = mapped_column(String(200))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(16))
    channel_address: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2), default="vi")
    status: Mapped[str] = mapped_column(String(16))
    site_code: Mapped[str | None] = mapped_column(ForeignKey("sites.code"))
    due_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CaseEventRow(Base):
    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_ref", "ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(ForeignKey("correction_cases.ref", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)


class CaseAttachmentRow(Base):
    __tablename__ = "case_attachments"
    __table_args__ = (Index("ix_case_attachments_ref", "ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(ForeignKey("correction_cases.ref", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    storage_path: Mapped[str] = mapped_column(String(400))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_person", "person_id"), Index("ix_audit_at", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(60))
    person_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
