"""One-time codes: 6 digits from `secrets`, stored as HMAC-SHA256, checked in constant time.

Limits: valid `ttl` seconds; 5 tries (across codes; a right code gives its try back) lock that
person's login for 15 minutes; a new code only 60 s after the previous one; at most 5 codes an
hour per person and per destination phone. Each try and each code sent is counted atomically
before it happens (`conversations.limits`), so batched or concurrent requests get no more.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session

from conversations.effects import Effect
from conversations.limits import Counters, RateCounters
from conversations.tables import OtpChallengeRow
from db.fast_access import FastAccess
from registry_client.clock import Clock, as_utc, utc_now

CODE_DIGITS = 6
MAX_WRONG = 5
LOCK = timedelta(minutes=15)
RESEND_AFTER = timedelta(seconds=60)
MAX_PER_HOUR = 5
HOUR = timedelta(hours=1)

CodeGenerator = Callable[[], str]


def random_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def looks_like_code(text: str) -> bool:
    digits = text.replace(" ", "")
    return len(digits) == CODE_DIGITS and digits.isdigit()


@dataclass(frozen=True)
class Refusal:
    key: str  # catalogue key
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Challenge:
    id: int
    nonce: str
    person_id: str
    phone: str
    code_hash: str
    created_at: datetime
    expires_at: datetime


class CheckOutcome(StrEnum):
    """What a typed code turned out to be. Callers match it exhaustively; only OK logs in."""

    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    LOCKED = "locked"


@dataclass(frozen=True)
class CheckResult:
    outcome: CheckOutcome
    left: int = 0
    effects: tuple[Effect, ...] = ()


class OtpService:
    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        secret: bytes,
        ttl_seconds: int,
        *,
        clock: Clock = utc_now,
        generate: CodeGenerator = random_code,
        counters: Counters | None = None,
        resend_after: timedelta = RESEND_AFTER,
    ) -> None:
        self.sessions, self.secret, self.ttl = sessions, secret, timedelta(seconds=ttl_seconds)
        self.resend_after = resend_after
        self.clock, self.generate = clock, generate
        self.fast = FastAccess.for_engine(sessions.kw["bind"])
        self.counters: Counters = counters if counters is not None else RateCounters(sessions, clock)

    def _hash(self, nonce: str, code: str) -> str:
        return hmac.new(self.secret, f"{nonce}:{code}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _fail_key(person_id: str) -> str:
        return f"otp-fail:{person_id}"

    async def pending_for(self, channel: str, address: str) -> Challenge | None:
        """The caller's newest code that is not used, replaced or burnt (it may have expired)."""
        stmt = (
            select(
                OtpChallengeRow.id,
                OtpChallengeRow.nonce,
                OtpChallengeRow.person_id,
                OtpChallengeRow.phone,
                OtpChallengeRow.code_hash,
                OtpChallengeRow.created_at,
                OtpChallengeRow.expires_at,
            )
            .where(
                OtpChallengeRow.channel == channel,
                OtpChallengeRow.address == address,
                OtpChallengeRow.closed_at.is_(None),
            )
            .order_by(OtpChallengeRow.id.desc())
            .limit(1)
        )
        row = await self.fast.read(lambda conn: conn.execute(stmt).first())
        if row is None:
            return None
        return Challenge(
            row.id,
            row.nonce,
            row.person_id,
            row.phone,
            row.code_hash,
            as_utc(row.created_at),
            as_utc(row.expires_at),
        )

    async def has_live_code(self, channel: str, address: str) -> bool:
        challenge = await self.pending_for(channel, address)
        return challenge is not None and challenge.expires_at > self.clock()

    async def lock_seconds(self, person_id: str) -> int:
        return (await self.counters.read(self._fail_key(person_id), LOCK))[1]

    async def reserve_send(self, person_id: str, phone: str) -> Refusal | None:
        """Reserves the send slot of one new code, or says why no code may be sent now (locked,
        too soon, too many). The slots are atomic counters, taken before anything is sent: however
        many requests ask at once, on however many workers, at most the limits' worth of codes go
        out. The committed codes of the last hour are checked as well (a sliding hour)."""
        locked = await self.lock_seconds(person_id)
        if locked:
            return Refusal("login.locked", {"minutes": math.ceil(locked / 60)})
        now = self.clock()
        recent = OtpChallengeRow.created_at > now - HOUR
        per_person = select(
            func.count(), func.max(OtpChallengeRow.created_at), func.min(OtpChallengeRow.created_at)
        ).where(OtpChallengeRow.person_id == person_id, recent)
        per_phone = select(func.count(), func.min(OtpChallengeRow.created_at)).where(
            OtpChallengeRow.phone == phone, recent
        )

        def counts(conn: Connection) -> tuple[Any, Any]:
            return conn.execute(per_person).one(), conn.execute(per_phone).one()

        by_person, by_phone = await self.fast.read(counts)
        count, newest, oldest = by_person
        if newest is not None and now - as_utc(newest) < self.resend_after:
            wait = self.resend_after - (now - as_utc(newest))
            return Refusal("login.resend_wait", {"seconds": max(1, math.ceil(wait.total_seconds()))})
        for n, first in ((count, oldest), (by_phone[0], by_phone[1])):
            if n >= MAX_PER_HOUR and first is not None:
                free = as_utc(first) + HOUR - now
                return Refusal(
                    "login.too_many_codes", {"minutes": max(1, math.ceil(free.total_seconds() / 60))}
                )
        return await self._take_send_slots(person_id, phone)

    async def _take_send_slots(self, person_id: str, phone: str) -> Refusal | None:
        if not await self.counters.take(self.resend_key(person_id), limit=1, window=self.resend_after):
            return Refusal("login.resend_wait", {"seconds": math.ceil(self.resend_after.total_seconds())})
        taken = [self.resend_key(person_id)]
        for key in (f"otp-sent:person:{person_id}", f"otp-sent:phone:{phone}"):
            if not await self.counters.take(key, limit=MAX_PER_HOUR, window=HOUR):
                for done in taken:  # nothing is sent: the slots taken so far are free again
                    await self.counters.give_back(done)
                return Refusal("login.too_many_codes", {"minutes": 60})
            taken.append(key)
        return None

    @staticmethod
    def resend_key(person_id: str) -> str:
        return f"otp-resend:{person_id}"

    def issue(self, person_id: str, phone: str, channel: str, address: str) -> tuple[str, Effect]:
        """A new code for `person_id`, to be sent to `phone`; replaces the caller's previous one.
        Only after `reserve_send` granted its slot."""
        code = self.generate()
        nonce = secrets.token_hex(12)
        code_hash = self._hash(nonce, code)
        now = self.clock()
        expires = now + self.ttl

        def apply(db: Session) -> None:
            db.execute(
                update(OtpChallengeRow)
                .where(
                    OtpChallengeRow.channel == channel,
                    OtpChallengeRow.address == address,
                    OtpChallengeRow.closed_at.is_(None),
                )
                .values(closed_at=now)
            )
            db.add(
                OtpChallengeRow(
                    nonce=nonce,
                    person_id=person_id,
                    channel=channel,
                    address=address,
                    phone=phone,
                    code_hash=code_hash,
                    attempts=0,
                    created_at=now,
                    expires_at=expires,
                )
            )

        return code, Effect(sql=apply)

    async def check(self, challenge: Challenge, typed: str) -> CheckResult:
        """Counts the attempt first (atomically, shared by every worker), then compares: however
        many guesses arrive at once, at most MAX_WRONG are compared per lock period."""
        now = self.clock()
        if challenge.expires_at <= now:
            return CheckResult(CheckOutcome.EXPIRED)  # kept open: "resend" knows whom it was for
        fail_key = self._fail_key(challenge.person_id)
        attempt = await self.counters.hit_now(fail_key, limit=MAX_WRONG, window=LOCK, block=LOCK)
        if attempt.was_blocked:
            return CheckResult(CheckOutcome.LOCKED, effects=(self._close(challenge.id, now),))
        candidate = self._hash(challenge.nonce, typed.replace(" ", ""))
        if hmac.compare_digest(candidate, challenge.code_hash):
            return CheckResult(
                CheckOutcome.OK, effects=(self._close(challenge.id, now), self.counters.reset(fail_key))
            )
        left = MAX_WRONG - attempt.count
        effects: list[Effect] = [self._count_attempt(challenge.id)]
        if left <= 0 or attempt.blocked:
            effects.append(self._close_person(challenge.person_id, now))
            return CheckResult(CheckOutcome.LOCKED, effects=tuple(effects))
        return CheckResult(CheckOutcome.WRONG, left=left, effects=tuple(effects))

    @staticmethod
    def _close(challenge_id: int, now: datetime) -> Effect:
        def apply(db: Session) -> None:
            db.execute(
                update(OtpChallengeRow).where(OtpChallengeRow.id == challenge_id).values(closed_at=now)
            )

        return Effect(sql=apply)

    @staticmethod
    def _close_person(person_id: str, now: datetime) -> Effect:
        def apply(db: Session) -> None:
            db.execute(
                update(OtpChallengeRow)
                .where(OtpChallengeRow.person_id == person_id, OtpChallengeRow.closed_at.is_(None))
                .values(closed_at=now)
            )

        return Effect(sql=apply)

    @staticmethod
    def _count_attempt(challenge_id: int) -> Effect:
        def apply(db: Session) -> None:
            db.execute(
                update(OtpChallengeRow)
                .where(OtpChallengeRow.id == challenge_id)
                .values(attempts=OtpChallengeRow.attempts + 1)
            )

        return Effect(sql=apply)
