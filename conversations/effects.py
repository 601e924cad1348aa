"""Writes decided during a turn, applied by the host in the turn's single transaction.

The engine only reads while it thinks (registry calls may take their own transactions, and on
SQLite a long write transaction would block them); every write it decides on becomes an Effect,
and the host runs them together with the session update and the outbox rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

Effect = Callable[[AsyncSession], Awaitable[None]]
