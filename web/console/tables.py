"""Console tables: users, sessions, login attempts and login throttles, API tokens, settings,
escalations, and the in-console notification list. Alembic revisions 0005, 0005a."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, BigId


class ConsoleUserRow(Base):
    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # agent | site | admin
    site_code: Mapped[str | None] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(100))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # raised by a password change or deactivation; a token issued under another value is dead
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ConsoleSessionRow(Base):
    """A logged-in browser. The cookie holds the signed random id; the table holds its SHA-256."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_user", "user_id"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginAttemptRow(Base):
    __tablename__ = "console_login_attempts"
    __table_args__ = (
        Index("ix_console_login_attempts_user", "username", "at"),
        Index("ix_console_login_attempts_ip", "client_ip", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    success: Mapped[bool] = mapped_column(Boolean)


class ApiTokenRow(Base):
    __tablename__ = "console_api_tokens"
    __table_args__ = (Index("ix_console_api_tokens_user", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    credentials_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LoginThrottleRow(Base):
    """Failed logins of one (user, address) pair or of one address, and when the next try may come."""

    __tablename__ = "console_login_throttles"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsoleSettingRow(Base):
    __tablename__ = "console_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(100))


class EscalationRow(Base):
    """An overdue report the escalation job has taken up (one row per report: the claim)."""

    __tablename__ = "console_escalations"

    ref: Mapped[str] = mapped_column(String(16), primary_key=True)
    site_code: Mapped[str | None] = mapped_column(String(32))
    due_on: Mapped[date] = mapped_column(Date)
    first_escalated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_notified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notices: Mapped[int] = mapped_column(Integer, default=1)
    citizen_told: Mapped[bool] = mapped_column(Boolean, default=False)


class NotificationRow(Base):
    """In-console notice for an audience: `site:<CODE>`, `hotline` or `admin`."""

    __tablename__ = "console_notifications"
    __table_args__ = (Index("ix_console_notifications_audience", "audience", "read_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    audience: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))  # overdue | reassigned | ...
    ref: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_by: Mapped[str | None] = mapped_column(String(100))
