"""Verified links between a channel identity (phone, Telegram chat) and a person, with expiry.

Used by the engine (after a correct one-time code) and by other packages: the console sends
links to a person's bound Telegram chats (`addresses_for_person`), the Telegram adapter
unbinds on /logout and marks a chat unreachable when the bot is blocked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from conversations.effects import Effect
from conversations.session_store import bindings_of
from conversations.tables import ChannelBindingRow
from db.fast_access import FastAccess
from registry_client.clock import Clock, utc_now


class BindingStore:
    def __init__(self, sessions: async_sessionmaker[Any], ttl_days: int, clock: Clock = utc_now) -> None:
        self.sessions, self.ttl, self.clock = sessions, timedelta(days=ttl_days), clock
        self.fast = FastAccess.for_engine(sessions.kw["bind"])
        # Told (channel, address) after a commit that changed that identity's bindings, so caches
        # of them (the Redis hot state) are renewed on every worker.
        self.on_change: Callable[[str, str], Awaitable[None]] | None = None

    async def _changed(self, channel: str, address: str) -> None:
        if self.on_change is not None:
            await self.on_change(str(channel), address)

    async def persons_for(self, channel: str, address: str) -> list[str]:
        """Persons this identity may act for now, most recently bound first."""
        now = self.clock()
        bound = await self.fast.read(lambda conn: bindings_of(conn, str(channel), address, now))
        return [person_id for person_id, _ in bound]

    async def persons_for_in(self, db: AsyncSession, channel: str, address: str) -> list[str]:
        """`persons_for` over a session the caller already holds."""
        rows = await db.scalars(
            select(ChannelBindingRow.person_id)
            .where(
                ChannelBindingRow.channel == str(channel),
                ChannelBindingRow.address == address,
                ChannelBindingRow.expires_at > self.clock(),
            )
            .order_by(ChannelBindingRow.bound_at.desc(), ChannelBindingRow.id.desc())
        )
        return list(rows.all())

    async def addresses_for_person(self, person_id: str, channel: str) -> list[str]:
        """Reachable identities of `channel` bound to the person (e.g. Telegram chat ids)."""
        async with self.sessions() as db:
            rows = await db.scalars(
                select(ChannelBindingRow.address)
                .where(
                    ChannelBindingRow.person_id == person_id,
                    ChannelBindingRow.channel == str(channel),
                    ChannelBindingRow.expires_at > self.clock(),
                    ChannelBindingRow.unreachable_at.is_(None),
                )
                .order_by(ChannelBindingRow.bound_at.desc())
            )
            return list(rows.all())

    def bind_effect(self, channel: str, address: str, person_id: str) -> Effect:
        now = self.clock()

        def apply(db: Session) -> None:
            db.execute(
                delete(ChannelBindingRow).where(
                    ChannelBindingRow.channel == str(channel),
                    ChannelBindingRow.address == address,
                    ChannelBindingRow.person_id == person_id,
                )
            )
            db.add(
                ChannelBindingRow(
                    channel=str(channel),
                    address=address,
                    person_id=person_id,
                    bound_at=now,
                    expires_at=now + self.ttl,
                )
            )

        return Effect(sql=apply)

    async def bind(self, channel: str, address: str, person_id: str) -> None:
        work = self.bind_effect(channel, address, person_id).sql
        assert work is not None
        async with self.sessions() as db, db.begin():
            await db.run_sync(work)
        await self._changed(channel, address)

    def unbind_effect(self, channel: str, address: str) -> Effect:
        def apply(db: Session) -> None:
            db.execute(
                delete(ChannelBindingRow).where(
                    ChannelBindingRow.channel == str(channel), ChannelBindingRow.address == address
                )
            )

        return Effect(sql=apply)

    async def unbind(self, channel: str, address: str) -> int:
        """Forgets every person bound to this identity (Telegram /logout). Returns how many."""
        async with self.sessions() as db, db.begin():
            result = await db.execute(
                delete(ChannelBindingRow).where(
                    ChannelBindingRow.channel == str(channel), ChannelBindingRow.address == address
                )
            )
        await self._changed(channel, address)
        return int(getattr(result, "rowcount", 0) or 0)

    async def mark_unreachable(self, channel: str, address: str) -> None:
        """The identity cannot be reached (bot blocked, number opted out): stop sending to it."""
        async with self.sessions() as db, db.begin():
            await db.execute(
                update(ChannelBindingRow)
                .where(ChannelBindingRow.channel == str(channel), ChannelBindingRow.address == address)
                .values(unreachable_at=self.clock())
            )
