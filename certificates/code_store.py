"""CertificateCodes: a short code per issued certificate, and checking a code with a birth year.

`code_for(holder, doses)` issues (or reuses) the holder's certificate through the certificate
service and returns the code bound to its UVCI, creating it on first use: a reissued
certificate (a correction, an import, a renewal) therefore gets a new code, and the old code
keeps answering with its own certificate's status (revoked, expired) — the status is read
from `issued_certificates` in the same indexed lookup.

`check(code, birth_year, caller=)` answers valid / revoked / expired only when the birth year
matches; an unknown code and a wrong year get the same answer ("unknown"), so a code alone
reveals nothing, not even that it exists. A mistyped code (wrong length, a character outside
the alphabet, a failed check character) is "check the code" and costs nothing.

No code is stored readable (certificates/code_secrets.py): a row keeps the code's keyed digest,
which a typed code is looked up by, and the code sealed to its UVCI, opened only to give the
holder the same code again.

Guesses are a budget: before a code is looked up, the caller (IP address, phone) takes one unit
of its budget; before a birth year is compared, the code takes one of its own. Each unit is one
atomic upsert with RETURNING, committed at once (`_take`), and the comparison happens only if
the unit was granted — so concurrent requests, on however many workers, get no more comparisons
than the limit. A right year gives both units back; a failure keeps them, and the failure that
uses up a budget blocks the caller, or locks the code, for a while.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import Table, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from certificates.code_secrets import CodeSealBroken, CodeSecrets
from certificates.code_tables import CertificateCodeRow, CodeAttemptRow
from certificates.codes import format_code, generate_code, mask_code, parse_code
from certificates.dose_series import read_series
from certificates.names import shortened_name
from certificates.protocols import DoseLike, HolderLike
from certificates.tables import IssuedCertificateRow
from db.clock import Clock, as_utc, utc_now

log = logging.getLogger(__name__)

ATTEMPTS: Table = CodeAttemptRow.__table__  # type: ignore[assignment]

# Outcomes (CodeVerdict.reason); the channels turn them into words.
VALID = "valid"
REVOKED = "revoked"
EXPIRED = "expired"
UNKNOWN = "unknown"  # no certificate with this code AND this birth year
CHECK_CODE = "check the code"  # not one of our codes as typed (a typo the check character caught)
LOCKED = "locked"  # too many wrong birth years for this code: locked for a while
TOO_MANY = "too many attempts"  # this caller failed too often: blocked for a while
REVEALING = (VALID, REVOKED, EXPIRED)


@dataclass(frozen=True)
class CodeVerdict:
    """The answer to one check. Holder fields are filled only when the birth year matched.

    Field names match `conversations.ports.CodeCheck`, which this satisfies structurally."""

    valid: bool
    reason: str
    holder_name: str | None = None  # shortened, with diacritics (`Nguyễn T. Ánh`)
    birth_year: int | None = None
    doses: int = 0
    latest_dose_date: date | None = None
    detail: str = ""  # for the audit only: "no such code" / "wrong birth year" / what was mistyped
    person_id: str | None = None  # for the audit only (also on a wrong year), never shown
    retry_after: int = 0  # seconds, with LOCKED / TOO_MANY


@dataclass(frozen=True)
class GuessingLimits:
    caller_failures: int = 10  # unknown codes or wrong years from one caller ...
    caller_window: timedelta = timedelta(minutes=15)  # ... within this window ...
    caller_block: timedelta = timedelta(minutes=15)  # ... block the caller this long
    code_failures: int = 5  # wrong birth years for one code ...
    code_window: timedelta = timedelta(hours=1)
    code_lock: timedelta = timedelta(hours=1)  # ... lock the code this long (right year too)


class IssuedLike(Protocol):
    @property
    def uvci(self) -> str: ...


class CertificateIssuer(Protocol):
    async def issue(self, holder: HolderLike, doses: Sequence[DoseLike]) -> IssuedLike: ...


def certificate_status(expires_at: datetime, revoked_at: datetime | None, at: datetime) -> str:
    expires_at = as_utc(expires_at)
    if revoked_at is not None and as_utc(revoked_at) <= at:
        # replaced after it had already run out (a renewal): it is simply expired
        return EXPIRED if as_utc(revoked_at) > expires_at else REVOKED
    return EXPIRED if at > expires_at else VALID


class CertificateCodes:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        issuer: CertificateIssuer,
        *,
        secrets: CodeSecrets,
        clock: Clock = utc_now,
        limits: GuessingLimits | None = None,
        generate: Callable[[], str] = generate_code,
    ) -> None:
        self.sessions = sessions
        self.issuer = issuer
        self.secrets = secrets
        self.clock = clock
        self.limits = limits or GuessingLimits()
        self.generate = generate

    # -- issuing -------------------------------------------------------------------------------
    async def code_for(self, holder: HolderLike, doses: Sequence[DoseLike]) -> str:
        """The code of the holder's current certificate (`VX7K-3D9Q-MRT4`), issuing the
        certificate and the code as needed. Raises the service's CertificateError (NoDoses, …)."""
        issued = await self.issuer.issue(holder, doses)
        existing = await self._code_of(issued.uvci)
        if existing is not None:
            return format_code(existing)
        reading = read_series(doses)  # the count and the latest dose as the certificate reads them
        latest = reading.latest
        assert latest is not None  # issue() refused a record without doses
        for _ in range(8):
            code = self.generate()
            row = CertificateCodeRow(
                code_digest=self.secrets.digest(code),
                code_sealed=self.secrets.seal(code, issued.uvci),
                uvci=issued.uvci,
                person_id=holder.id,
                holder_name=shortened_name(holder.full_name)[:120],
                birth_year=holder.date_of_birth.year,
                dose_count=reading.given,
                latest_dose_on=latest.dose.administered_on,
                created_at=self.clock(),
            )
            try:
                async with self.sessions() as session, session.begin():
                    session.add(row)
                return format_code(code)
            except IntegrityError:  # a concurrent request coded this certificate, or a collision
                existing = await self._code_of(issued.uvci)
                if existing is not None:
                    return format_code(existing)
        raise RuntimeError("no free certificate code after 8 draws")  # pragma: no cover

    async def has_code(self, person_id: str) -> bool:
        """Whether the person was ever given a code (then a reissue should send the new one)."""
        async with self.sessions() as session:
            found = await session.scalar(
                select(CertificateCodeRow.id).where(CertificateCodeRow.person_id == person_id).limit(1)
            )
            return found is not None

    async def _code_of(self, uvci: str) -> str | None:
        """The code of this certificate (canonical), opened from its seal; None when it has none."""
        for _ in range(8):
            async with self.sessions() as session:
                sealed: str | None = await session.scalar(
                    select(CertificateCodeRow.code_sealed).where(CertificateCodeRow.uvci == uvci)
                )
            if sealed is None:
                return None
            try:
                return self.secrets.open(sealed, uvci)
            except CodeSealBroken:
                recoded = await self._recode(uvci, sealed)
                if recoded is not None:
                    return recoded
                # another request replaced that seal meanwhile: read it again
        raise RuntimeError("the certificate code could not be read")  # pragma: no cover

    async def _recode(self, uvci: str, stale: str) -> str | None:
        """A new code for a certificate whose code was sealed under another SECRET_KEY: that code
        can be neither sent again nor found (its digest was keyed the same way). None when
        another request replaced the stale seal first."""
        code = self.generate()
        try:
            async with self.sessions() as session, session.begin():
                changed = await session.execute(
                    update(CertificateCodeRow)
                    .where(CertificateCodeRow.uvci == uvci, CertificateCodeRow.code_sealed == stale)
                    .values(code_digest=self.secrets.digest(code), code_sealed=self.secrets.seal(code, uvci))
                )
        except IntegrityError:  # pragma: no cover - a digest collision (1 in 2**54): draw again
            return None
        if not getattr(changed, "rowcount", 0):
            return None
        log.warning("certificate code of %s was sealed under another SECRET_KEY: a new code issued", uvci)
        return code

    # -- checking ------------------------------------------------------------------------------
    async def verify_code(self, code: str, birth_year: int, *, caller: str | None = None) -> CodeVerdict:
        """The engine's `CertificateCodePort.verify_code` (same as `check`)."""
        return await self.check(code, birth_year, caller=caller)

    async def check(self, text: object, birth_year: int, *, caller: str | None = None) -> CodeVerdict:
        """One check: `caller` identifies who asks (`ip:203.0.113.9`, `sms:+8490…`) for the
        per-caller limit; None counts only against the code."""
        parsed = parse_code(text)
        if parsed.code is None:
            return CodeVerdict(False, CHECK_CODE, detail=parsed.problem or "")
        code = parsed.code
        now = self.clock()
        limits = self.limits
        caller_key = self.secrets.attempt_key("caller", caller) if caller else None
        code_key = self.secrets.attempt_key("code", code)
        taken: list[Budget] = []
        if caller_key is not None:
            budget = Budget(caller_key, limits.caller_failures, limits.caller_window, limits.caller_block)
            if wait := await self._take(budget, now):
                return CodeVerdict(False, TOO_MANY, detail="caller blocked", retry_after=wait)
            taken.append(budget)
        found = await self._find(code)
        if found is None:
            await self._failed(taken, now)
            return CodeVerdict(False, UNKNOWN, detail="no such code")
        budget = Budget(code_key, limits.code_failures, limits.code_window, limits.code_lock)
        if wait := await self._take(budget, now):
            await self._give_back(taken)  # nothing was compared
            return CodeVerdict(False, LOCKED, detail="code locked", retry_after=wait)
        taken.append(budget)
        row, expires_at, revoked_at = found
        if row.birth_year != birth_year:
            await self._failed(taken, now)
            return CodeVerdict(False, UNKNOWN, detail="wrong birth year", person_id=row.person_id)
        await self._give_back(taken)  # only failures stay counted
        status = certificate_status(expires_at, revoked_at, now)
        return CodeVerdict(
            status == VALID,
            status,
            holder_name=row.holder_name,
            birth_year=row.birth_year,
            doses=row.dose_count,
            latest_dose_date=row.latest_dose_on,
            detail=f"uvci {row.uvci}",
            person_id=row.person_id,
        )

    async def _find(self, code: str) -> tuple[CertificateCodeRow, datetime, datetime | None] | None:
        async with self.sessions() as session:
            found = (
                await session.execute(
                    select(
                        CertificateCodeRow, IssuedCertificateRow.expires_at, IssuedCertificateRow.revoked_at
                    )
                    .join(IssuedCertificateRow, IssuedCertificateRow.uvci == CertificateCodeRow.uvci)
                    .where(CertificateCodeRow.code_digest == self.secrets.digest(code))
                )
            ).first()
        return None if found is None else (found[0], found[1], found[2])

    # -- the budgets -----------------------------------------------------------------------------
    async def _take(self, budget: Budget, now: datetime) -> int:
        """Takes one unit in one atomic upsert (the row lock on PostgreSQL, the writer lock on
        SQLite), committed at once. 0: granted; else the seconds the key stays blocked (a key
        whose units are all spent waits for its window to end) and nothing is counted."""
        expired = ATTEMPTS.c.window_start <= now - budget.window
        insert = postgresql.insert if self._dialect() == "postgresql" else sqlite.insert
        stmt = (
            insert(ATTEMPTS)
            .values(key=budget.key, failures=1, window_start=now, blocked_until=None)
            .on_conflict_do_update(
                index_elements=[ATTEMPTS.c.key],
                set_={
                    "failures": case((expired, 1), else_=ATTEMPTS.c.failures + 1),
                    "window_start": case((expired, now), else_=ATTEMPTS.c.window_start),
                },
            )
            .returning(ATTEMPTS.c.failures, ATTEMPTS.c.window_start, ATTEMPTS.c.blocked_until)
        )
        async with self.sessions() as session, session.begin():
            used, window_start, blocked_until = (await session.execute(stmt)).one()
            wait = _seconds_left(blocked_until, now)
            if not wait and used > budget.limit:  # all spent: free again when the window ends
                wait = max(1, _seconds_left(as_utc(window_start) + budget.window, now))
            if wait:  # refused: the try is taken back in the same transaction
                await session.execute(
                    update(ATTEMPTS)
                    .where(ATTEMPTS.c.key == budget.key)
                    .values(failures=ATTEMPTS.c.failures - 1)
                )
        return wait

    async def _failed(self, budgets: list[Budget], now: datetime) -> None:
        """A failed comparison keeps its units; the one that used up a budget starts the block."""
        async with self.sessions() as session, session.begin():
            for budget in budgets:
                await session.execute(
                    update(ATTEMPTS)
                    .where(ATTEMPTS.c.key == budget.key, ATTEMPTS.c.failures >= budget.limit)
                    .values(blocked_until=now + budget.block, failures=0, window_start=now)
                )

    async def _give_back(self, budgets: list[Budget]) -> None:
        if not budgets:
            return
        async with self.sessions() as session, session.begin():
            for budget in budgets:
                await session.execute(
                    update(ATTEMPTS)
                    .where(ATTEMPTS.c.key == budget.key, ATTEMPTS.c.failures > 0)
                    .values(failures=ATTEMPTS.c.failures - 1)
                )

    def _dialect(self) -> str:
        bind = self.sessions.kw.get("bind")
        return bind.dialect.name if bind is not None else "sqlite"

    # -- housekeeping --------------------------------------------------------------------------
    async def cleanup(self) -> int:
        """Forgets counters whose window and block are over (a background job)."""
        now = self.clock()
        oldest = now - max(self.limits.caller_window, self.limits.code_window)
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                delete(CodeAttemptRow).where(
                    CodeAttemptRow.window_start < oldest,
                    or_(CodeAttemptRow.blocked_until.is_(None), CodeAttemptRow.blocked_until < now),
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Budget:
    key: str
    limit: int
    window: timedelta
    block: timedelta


def _seconds_left(until: datetime | None, now: datetime) -> int:
    if until is None:
        return 0
    left = (as_utc(until) - now).total_seconds()
    return math.ceil(left) if left > 0 else 0


__all__ = [
    "CHECK_CODE",
    "EXPIRED",
    "LOCKED",
    "REVOKED",
    "TOO_MANY",
    "UNKNOWN",
    "VALID",
    "CertificateCodes",
    "CodeVerdict",
    "GuessingLimits",
    "mask_code",
]
