"""Writes decided during a turn, applied by the host in the turn's single transaction.

The engine only reads while it thinks (registry calls may take their own transactions, and on
SQLite a long write transaction would block them); every write it decides on becomes an Effect,
and the host runs them together with the session update and the outbox rows.

An Effect's `sql` part is plain synchronous code over a SQLAlchemy `Session`: the host runs the
whole turn's transaction in one go (on SQLite on one thread with the synchronous driver, on
PostgreSQL through `AsyncSession.run_sync`). Its `after_commit` part runs once the transaction
has committed (e.g. counters kept in Redis).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

SqlWork = Callable[[Session], None]
AfterCommit = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Effect:
    sql: SqlWork | None = None
    after_commit: AfterCommit | None = None
