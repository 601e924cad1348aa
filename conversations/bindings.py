"""Verified links between a channel identity (phone, Telegram chat) and a person, with expiry.

A binding caches the proof "this caller holds the person's registered phone" (a one-time code
sent there and read back). It keeps the phone the code went to (`via_phone`) and dies with that
proof: when the phone stops being the person's registered phone (an agent's confirmed change, an
import, the registry itself), on logout (`DX`/`LOGOUT` by SMS, /logout on Telegram), or at
`BINDING_TTL_DAYS`. SQL is the truth; the Redis hot state caches bindings per identity and is told
(`on_change`) after every commit that ends or adds one.

Used by the engine (after a correct one-time code), by the phone-change confirmation, and by
other packages: the console sends links to a person's bound Telegram chats
(`addresses_for_person`), the Telegram adapter unbinds on /logout and marks a chat unreachable
when the bot is blocked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from conversations.effects import Effect
from conversations.session_store import bindings_of
from conversations.tables import ChannelBindingRow, OtpChallengeRow
from db.fast_access import FastAccess
from registry_client.clock import Clock, as_utc, utc_now
from registry_client.models import Person

# Channels whose address is a phone number (a binding there is also a binding of that phone).
PHONE_CHANNELS = ("sms", "ussd", "voice", "whatsapp")

Identity = tuple[str, str]  # (channel, address)


def via_phone_of(db: Session, channel: str, address: str, person_id: str) -> str | None:
    """The phone the caller's latest one-time code went to (for this person first: a code for one
    member of a family phone also binds the others). Without any: the caller's own number."""
    phone = db.scalar(
        select(OtpChallengeRow.phone)
        .where(OtpChallengeRow.channel == channel, OtpChallengeRow.address == address)
        .order_by(
            (OtpChallengeRow.person_id == person_id).desc(),
            OtpChallengeRow.created_at.desc(),
            OtpChallengeRow.id.desc(),
        )
        .limit(1)
    )
    if phone is not None:
        return str(phone)
    return address if channel in PHONE_CHANNELS else None


def _phone_bindings(phones: Sequence[str]) -> Any:
    """Bindings proven by one of `phones`: made with a code sent there, or the number's own SMS/USSD."""
    if not phones:
        return false()
    return or_(
        ChannelBindingRow.via_phone.in_(phones),
        and_(ChannelBindingRow.channel.in_(PHONE_CHANNELS), ChannelBindingRow.address.in_(phones)),
    )


def end_phone_bindings(
    db: Session | Connection, person_id: str | None, phones: Sequence[str], *, unknown_via: bool = False
) -> list[Identity]:
    """Deletes, in the caller's transaction, every binding proven by one of `phones` (of the person
    when `person_id` is given; of anyone otherwise). `unknown_via`: also the person's bindings made
    before the phone was kept (their proof cannot be told apart). Returns the identities touched."""
    condition = _phone_bindings(phones)
    if unknown_via and person_id is not None:
        condition = or_(condition, ChannelBindingRow.via_phone.is_(None))
    if person_id is not None:
        condition = and_(ChannelBindingRow.person_id == person_id, condition)
    rows = db.execute(
        select(ChannelBindingRow.id, ChannelBindingRow.channel, ChannelBindingRow.address).where(condition)
    ).all()
    if rows:
        db.execute(delete(ChannelBindingRow).where(ChannelBindingRow.id.in_([r.id for r in rows])))
    return list(dict.fromkeys((str(r.channel), str(r.address)) for r in rows))


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

    async def announce(self, identities: Iterable[Identity]) -> None:
        """After a commit that ended these identities' bindings: every cache of them is renewed."""
        for channel, address in identities:
            await self._changed(channel, address)

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

    async def holds(self, channel: str, address: str, person: Person) -> bool:
        """Whether this identity may act for the person now, asked of SQL (never of a cache): the
        binding exists, is not expired, and the phone that proved it is still the person's
        registered phone. A binding whose phone is no longer registered (changed by an import or by
        the registry itself) is ended here, with every other binding that phone proved."""
        key = (str(channel), address, person.id)
        row = await self.fast.read(
            lambda conn: conn.execute(
                select(ChannelBindingRow.via_phone, ChannelBindingRow.expires_at).where(
                    ChannelBindingRow.channel == key[0],
                    ChannelBindingRow.address == key[1],
                    ChannelBindingRow.person_id == key[2],
                )
            ).first()
        )
        if row is None or as_utc(row.expires_at) <= self.clock():
            return False
        if row.via_phone is None or row.via_phone == person.registered_phone:
            return True
        await self.end_for_phones(person.id, [row.via_phone])
        return False

    async def addresses_for_person(
        self, person_id: str, channel: str, *, registered_phone: str | None = None
    ) -> list[str]:
        """Reachable identities of `channel` bound to the person (e.g. Telegram chat ids). With
        `registered_phone`: only those bound by a code sent to that phone (or before it was kept)."""
        async with self.sessions() as db:
            query = select(ChannelBindingRow.address).where(
                ChannelBindingRow.person_id == person_id,
                ChannelBindingRow.channel == str(channel),
                ChannelBindingRow.expires_at > self.clock(),
                ChannelBindingRow.unreachable_at.is_(None),
            )
            if registered_phone is not None:
                query = query.where(
                    or_(
                        ChannelBindingRow.via_phone == registered_phone,
                        ChannelBindingRow.via_phone.is_(None),
                    )
                )
            rows = await db.scalars(query.order_by(ChannelBindingRow.bound_at.desc()))
            return list(rows.all())

    def bind_effect(
        self, channel: str, address: str, person_id: str, *, via_phone: str | None = None
    ) -> Effect:
        """Binds the identity to the person. `via_phone`: the phone the code went to (by default
        the phone of the caller's latest one-time code, read in the same transaction)."""
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
                    via_phone=via_phone or via_phone_of(db, str(channel), address, person_id),
                )
            )

        return Effect(sql=apply)

    async def bind(self, channel: str, address: str, person_id: str, *, via_phone: str | None = None) -> None:
        work = self.bind_effect(channel, address, person_id, via_phone=via_phone).sql
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

    def logout_phone_effect(self, phone: str) -> Effect:
        """`DX`/`LOGOUT` by SMS: every binding this phone proved ends — its own SMS and USSD ones and
        Telegram chats bound by a code sent to it."""
        ended: list[Identity] = []

        def apply(db: Session) -> None:
            ended.extend(end_phone_bindings(db, None, [phone]))

        async def after_commit() -> None:
            await self.announce(ended)

        return Effect(sql=apply, after_commit=after_commit)

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

    async def end_for_phones(
        self, person_id: str, phones: Sequence[str], *, unknown_via: bool = False
    ) -> list[Identity]:
        """Ends every binding of these phones to the person, on every channel, then renews caches."""
        async with self.sessions() as db, db.begin():
            ended: list[Identity] = await db.run_sync(
                lambda sync: end_phone_bindings(sync, person_id, phones, unknown_via=unknown_via)
            )
        await self.announce(ended)
        return ended

    async def mark_unreachable(self, channel: str, address: str) -> None:
        """The identity cannot be reached (bot blocked, number opted out): stop sending to it."""
        async with self.sessions() as db, db.begin():
            await db.execute(
                update(ChannelBindingRow)
                .where(ChannelBindingRow.channel == str(channel), ChannelBindingRow.address == address)
                .values(unreachable_at=self.clock())
            )
