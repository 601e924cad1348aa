"""Changing a person's registered phone on a hotline agent's word, proven by the new phone.

An agent asks (`request`): a 6-digit code goes by SMS to the NEW phone and only its HMAC is kept.
The caller reads the code back and the agent types it (`confirm`). Each try is counted before the
code is compared — one unit of the agent's budget (`Counters.hit_now`) and one of the change's
`MAX_TRIES` (an atomic `UPDATE … RETURNING` on its row) — so concurrent or repeated guesses gain
nothing; the last wrong try kills the change.

When the code is right the new phone becomes the person's only current phone in the registry,
and, in one SQL transaction: the change is marked confirmed (once, whoever races), every binding
that an old phone proved for the person ends on every channel (SMS, USSD, Telegram chats bound by
a code sent to it), and the old numbers are told they were removed while the new one is told it
was added (outbox rows). Caches of the ended bindings are then renewed on every worker.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session

from conversations.bindings import BindingStore, Identity, end_phone_bindings
from conversations.limits import Counters
from conversations.otp import CodeGenerator, random_code
from conversations.tables import PhoneChangeRow
from outbox.store import OutboundMessage, Outbox, enqueue_sync
from registry_client.clock import Clock, as_utc, utc_now
from registry_client.identity import mask_national_id
from registry_client.models import ContactChange, Person
from registry_client.protocol import Registry

MAX_TRIES = 5
TTL = timedelta(minutes=10)
# Per agent, across changes: a guessing agent is stopped whatever change they try.
AGENT_TRIES, AGENT_WINDOW = 30, timedelta(hours=1)
# Codes sent per person: an agent cannot flood a number with change codes.
SENDS_PER_PERSON, SEND_WINDOW = 5, timedelta(hours=1)

PENDING, CONFIRMED, DEAD = "pending", "confirmed", "dead"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    WRONG = "wrong"  # a wrong code, tries left
    DEAD = "dead"  # no tries left (this one was the last, or the change died before)
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # no such change
    ALREADY = "already_confirmed"
    LIMITED = "limited"  # the agent's budget of tries is spent for now


class RequestRefused(Exception):
    """`key`: `same_phone` (already the registered phone) or `too_many` (codes sent lately)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Requested:
    change_id: str
    person_id: str
    new_phone: str
    expires_at: datetime


@dataclass(frozen=True)
class Confirmation:
    outcome: Outcome
    left: int = 0
    person: Person | None = None
    retired: tuple[str, ...] = ()
    ended: tuple[Identity, ...] = field(default_factory=tuple)


class PhoneChanges:
    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        registry: Registry,
        bindings: BindingStore,
        counters: Counters,
        outbox: Outbox,
        code_key: bytes,
        *,
        clock: Clock = utc_now,
        generate: CodeGenerator = random_code,
    ) -> None:
        self.sessions, self.registry, self.bindings, self.counters = sessions, registry, bindings, counters
        self.outbox = outbox
        self.key, self.clock, self.generate = code_key, clock, generate

    def _hash(self, change_id: str, code: str) -> str:
        return hmac.new(self.key, f"phone-change:{change_id}:{code}".encode(), hashlib.sha256).hexdigest()

    # -- step 1: a code to the new phone ----------------------------------------------------------
    async def request(self, person: Person, new_phone: str, actor: str, language: str = "vi") -> Requested:
        if person.current_phones == (new_phone,):
            raise RequestRefused("same_phone")
        sent = await self.counters.hit_now(
            f"phonechange:send:{person.id}", limit=SENDS_PER_PERSON + 1, window=SEND_WINDOW, block=SEND_WINDOW
        )
        if sent.was_blocked or sent.blocked:
            raise RequestRefused("too_many")
        now, change_id, code = self.clock(), secrets.token_hex(16), self.generate()
        minutes = int(TTL.total_seconds() // 60)

        def write(db: Session) -> None:
            db.execute(  # an older open change of this person dies: one code in play at a time
                update(PhoneChangeRow)
                .where(PhoneChangeRow.person_id == person.id, PhoneChangeRow.status == PENDING)
                .values(status=DEAD, closed_at=now)
            )
            db.add(
                PhoneChangeRow(
                    id=change_id,
                    person_id=person.id,
                    new_phone=new_phone,
                    code_hash=self._hash(change_id, code),
                    attempts=0,
                    status=PENDING,
                    requested_by=actor[:120],
                    created_at=now,
                    expires_at=now + TTL,
                )
            )
            self._enqueue(
                db,
                OutboundMessage(
                    channel="sms",
                    address=new_phone,
                    kind="otp",
                    template="sms.phone_change_code",
                    params={
                        "code": code,
                        "national_id": mask_national_id(person.national_id),
                        "minutes": minutes,
                    },
                    language=language,
                ),
                now,
            )

        await self._transaction(write)
        self.outbox.kick()
        return Requested(change_id, person.id, new_phone, now + TTL)

    # -- step 2: the code read back -----------------------------------------------------------
    async def confirm(self, change_id: str, code: str, actor: str, language: str = "vi") -> Confirmation:
        budget = await self.counters.hit_now(
            f"phonechange:agent:{actor}", limit=AGENT_TRIES, window=AGENT_WINDOW, block=AGENT_WINDOW
        )
        if budget.was_blocked:
            return Confirmation(Outcome.LIMITED)
        now = self.clock()
        counted = await self.bindings.fast.write(lambda conn: _count_try(conn, change_id))
        if counted is None:
            return Confirmation(await self._why_closed(change_id))
        attempts, code_hash, person_id, new_phone, expires_at = counted
        if as_utc(expires_at) <= now:
            await self._close(change_id, DEAD, now)
            return Confirmation(Outcome.EXPIRED)
        typed = "".join(code.split())
        if not hmac.compare_digest(self._hash(change_id, typed), code_hash):
            left = MAX_TRIES - attempts
            if left <= 0:
                await self._close(change_id, DEAD, now)
                return Confirmation(Outcome.DEAD)
            return Confirmation(Outcome.WRONG, left=left)
        return await self._apply(change_id, person_id, new_phone, actor, language)

    async def _apply(
        self, change_id: str, person_id: str, new_phone: str, actor: str, language: str
    ) -> Confirmation:
        before = await self.registry.get_person(person_id)
        retired = tuple(p for p in before.current_phones if p != new_phone)
        # The registry first (a retried confirmation repeats it harmlessly), then our side at once.
        person = await self.registry.update_contact(
            person_id,
            ContactChange(
                add_phone=new_phone,
                remove_phone=None,
                evidence=f"code read back from the new phone (change {change_id[:8]})",
                actor=actor,
                verified=True,
                replace=True,
            ),
        )
        now = self.clock()
        masked_id = mask_national_id(person.national_id)

        def write(db: Session) -> list[Identity] | None:
            done = db.execute(
                update(PhoneChangeRow)
                .where(PhoneChangeRow.id == change_id, PhoneChangeRow.status == PENDING)
                .values(status=CONFIRMED, closed_at=now)
            )
            if not getattr(done, "rowcount", 0):
                return None  # a concurrent confirmation did it
            ended = end_phone_bindings(db, person_id, retired, unknown_via=True)
            for phone in retired:
                self._tell(
                    db, phone, "sms.phone_removed", masked_id, language, f"{change_id}:removed:{phone}", now
                )
            self._tell(db, new_phone, "sms.phone_added", masked_id, language, f"{change_id}:added", now)
            return ended

        ended = await self._transaction(write)
        if ended is None:
            return Confirmation(Outcome.ALREADY, person=person)
        self.outbox.kick()
        await self.bindings.announce(ended)
        return Confirmation(Outcome.CONFIRMED, person=person, retired=retired, ended=tuple(ended))

    # -- plumbing -----------------------------------------------------------------------------------
    async def pending(self, change_id: str) -> PhoneChangeRow | None:
        async with self.sessions() as db:
            row: PhoneChangeRow | None = await db.get(PhoneChangeRow, change_id)
            return row

    async def _why_closed(self, change_id: str) -> Outcome:
        row = await self.pending(change_id)
        if row is None:
            return Outcome.UNKNOWN
        return Outcome.ALREADY if row.status == CONFIRMED else Outcome.DEAD

    async def _close(self, change_id: str, status: str, now: datetime) -> None:
        def write(db: Session) -> None:
            db.execute(
                update(PhoneChangeRow)
                .where(PhoneChangeRow.id == change_id, PhoneChangeRow.status == PENDING)
                .values(status=status, closed_at=now)
            )

        await self._transaction(write)

    def _enqueue(self, db: Session, message: OutboundMessage, now: datetime) -> None:
        seal = getattr(self.outbox, "seal", None)  # codes travel sealed when the outbox seals
        extra: dict[str, Any] = {"seal": seal} if seal is not None else {}
        enqueue_sync(db, message, clock=lambda: now, **extra)

    def _tell(
        self, db: Session, phone: str, template: str, masked_id: str, language: str, key: str, now: datetime
    ) -> None:
        self._enqueue(
            db,
            OutboundMessage(
                channel="sms",
                address=phone,
                kind="notification",
                template=template,
                params={"national_id": masked_id},
                language=language,
                idempotency_key=f"phonechange:{key}"[:120],
            ),
            now,
        )

    async def _transaction(self, fn: Any) -> Any:
        async with self.sessions() as db, db.begin():
            return await db.run_sync(fn)


_TRY = (
    update(PhoneChangeRow)
    .where(PhoneChangeRow.status == PENDING, PhoneChangeRow.attempts < MAX_TRIES)
    .values(attempts=PhoneChangeRow.attempts + 1)
    .returning(
        PhoneChangeRow.attempts,
        PhoneChangeRow.code_hash,
        PhoneChangeRow.person_id,
        PhoneChangeRow.new_phone,
        PhoneChangeRow.expires_at,
    )
)


def _count_try(conn: Connection, change_id: str) -> Sequence[Any] | None:
    """One try taken from the change before its code is compared (None: closed or no tries left)."""
    row = conn.execute(_TRY.where(PhoneChangeRow.id == change_id)).first()
    return tuple(row) if row is not None else None
