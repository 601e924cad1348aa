"""ResilientRegistry: wraps any Registry with timeouts, retries, a circuit breaker, a stale-read
cache, and a durable queue for correction reports (a report is never lost).

Reads that fail while the backend is down are answered from a short cache; the age of such an
answer is readable through `served_stale_age()` in the same task, so the conversation can say
"as of N minutes ago". Correction submissions get their reference before the first attempt, so
retries and later replays are idempotent; when the backend is down the report is stored in
`pending_registry_writes` (or, if the database itself is down, in a JSONL journal in DATA_DIR)
and replayed by `replay_pending()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import fcntl
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from registry_client import refs
from registry_client.case_pages import CasePage, QueueQuery, page_in_memory
from registry_client.clock import Clock, service_date, utc_now
from registry_client.errors import RegistryError, RegistryUnavailable
from registry_client.models import (
    AuditEntry,
    CaseNotice,
    CaseStatus,
    ClaimedDose,
    ContactChange,
    CorrectionCase,
    CorrectionQuery,
    Dose,
    NewAttachment,
    NewCorrection,
    NewDose,
    NewPerson,
    Person,
    RegistryInfo,
    Resolution,
    Site,
)
from registry_client.pending_writes import PendingWriteRow
from registry_client.protocol import Registry
from registry_client.routing import add_working_days

log = logging.getLogger(__name__)
T = TypeVar("T")

_stale_age: contextvars.ContextVar[float | None] = contextvars.ContextVar("registry_stale_age", default=None)


def served_stale_age() -> float | None:
    """Seconds of age of the oldest cached answer served in this task since `reset_stale_marker()`."""
    return _stale_age.get()


def reset_stale_marker() -> None:
    _stale_age.set(None)


Ticks = Callable[[], float]  # a monotonic clock in seconds (time.monotonic; tests pin it)


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; lets one trial call through after `cooldown` s."""

    def __init__(self, threshold: int = 5, cooldown: float = 15.0, clock: Ticks = time.monotonic):
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self.clock()


class _ReadCache:
    def __init__(self, ttl: float, max_items: int = 50_000, clock: Ticks = time.monotonic) -> None:
        self.ttl, self.max_items, self.clock = ttl, max_items, clock
        self._items: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def get(self, key: tuple[Any, ...]) -> tuple[float, Any] | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        age = self.clock() - hit[0]
        if age > self.ttl:
            del self._items[key]
            return None
        return age, hit[1]

    def forget_person(self, person_id: str) -> None:
        for key in [k for k in self._items if person_id in k]:
            del self._items[key]


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    return value


def correction_to_json(new: NewCorrection) -> dict[str, Any]:
    return _to_jsonable(new)  # type: ignore[no-any-return]


def correction_from_json(data: dict[str, Any]) -> NewCorrection:
    from registry_client.models import CaseKind, DosesConcerned

    claimed = data["claimed"]
    return NewCorrection(
        kind=CaseKind(data["kind"]),
        doses_concerned=DosesConcerned(data["doses_concerned"]) if data.get("doses_concerned") else None,
        claimed=ClaimedDose(
            administered_on=date.fromisoformat(claimed["administered_on"])
            if claimed.get("administered_on")
            else None,
            vaccine=claimed.get("vaccine"),
            site=claimed.get("site"),
            lot=claimed.get("lot"),
        ),
        channel=data["channel"],
        channel_address=data["channel_address"],
        person_id=data.get("person_id"),
        claimed_national_id=data.get("claimed_national_id"),
        claimed_date_of_birth=date.fromisoformat(data["claimed_date_of_birth"])
        if data.get("claimed_date_of_birth")
        else None,
        claimed_name=data.get("claimed_name"),
        workplace=data.get("workplace"),
        contact_phone=data.get("contact_phone"),
        language=data.get("language", "vi"),
        actor=data.get("actor", "citizen"),
        attachments=tuple(NewAttachment(**a) for a in data.get("attachments", [])),
        description=data.get("description"),
        ref=data.get("ref"),
    )


class PendingWrites:
    """Durable queue of correction submissions (database table, with a file journal as last resort)."""

    def __init__(self, sessions: async_sessionmaker[Any], journal: Path, clock: Clock = utc_now) -> None:
        self._sessions, self._journal, self._clock = sessions, journal, clock

    async def put(self, key: str, operation: str, payload: dict[str, Any]) -> None:
        try:
            async with self._sessions() as session, session.begin():
                exists = await session.scalar(select(PendingWriteRow.id).where(PendingWriteRow.key == key))
                if exists is None:
                    session.add(
                        PendingWriteRow(
                            key=key, operation=operation, payload=payload, created_at=self._clock()
                        )
                    )
        except Exception as exc:  # the database is down too: a local journal keeps the report
            log.warning(
                "pending-writes table unavailable (%s); journaling %s to file", type(exc).__name__, key
            )
            self._append_to_journal({"key": key, "operation": operation, "payload": payload})

    def _append_to_journal(self, item: dict[str, Any]) -> None:
        """One line, under an exclusive lock on the file it lands in. If the journal was renamed for
        ingestion while we waited for the lock, the line goes to a fresh journal instead."""
        self._journal.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with self._journal.open("a", encoding="utf-8") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    current = os.stat(self._journal).st_ino == os.fstat(fh.fileno()).st_ino
                except FileNotFoundError:
                    current = False
                if current:
                    fh.write(json.dumps(item) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                    return

    async def ingest_journal(self) -> None:
        """Moves the journal into the table. The file is renamed first and read after, under the
        lock writers take, so a line appended meanwhile is either read here or in the next journal."""
        moving = self._journal.with_suffix(".ingesting")
        if not moving.exists():  # else an earlier ingestion stopped half-way: finish it first
            try:
                self._journal.replace(moving)
            except FileNotFoundError:
                return
        try:
            with moving.open(encoding="utf-8") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # waits for a writer still on this file
                lines = fh.read().splitlines()
        except FileNotFoundError:  # another worker ingested it meanwhile
            return
        for line in lines:
            if line.strip():
                item = json.loads(line)
                await self.put(item["key"], item["operation"], item["payload"])  # idempotent by key
        moving.unlink(missing_ok=True)

    async def open_items(self, limit: int = 100) -> list[PendingWriteRow]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(PendingWriteRow)
                .where(PendingWriteRow.done_at.is_(None))
                .order_by(PendingWriteRow.id)
                .limit(limit)
            )
            return list(rows.all())

    async def count_open(self) -> int:
        return len(await self.open_items(limit=100_000))

    async def finish(self, key: str, *, error: str | None = None, result_ref: str | None = None) -> None:
        """Marks an item done; with `error`, done but kept with the reason for an operator to see."""
        async with self._sessions() as session, session.begin():
            row = await session.scalar(select(PendingWriteRow).where(PendingWriteRow.key == key))
            if row is None:
                return
            row.attempts += 1
            row.done_at, row.result_ref, row.last_error = self._clock(), result_ref, error


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RegistryError) and exc.retryable


class ResilientRegistry:
    """A Registry in front of a Registry. Same protocol; see the module docstring."""

    def __init__(
        self,
        inner: Registry,
        pending: PendingWrites,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
        cache_ttl: float = 900.0,
        sla_working_days: int = 5,
        clock: Clock = utc_now,
        ticks: Ticks = time.monotonic,
    ) -> None:
        self.inner = inner
        self.pending = pending
        self.timeout, self.attempts = timeout, attempts
        self.breaker = breaker or CircuitBreaker(clock=ticks)
        self.cache = _ReadCache(cache_ttl, clock=ticks)
        self._sla_days, self._clock = sla_working_days, clock

    def use_ticks(self, ticks: Ticks) -> None:
        """The monotonic clock of the breaker's cool-down and the cache's ages (tests pin it)."""
        self.breaker.clock = self.cache.clock = ticks

    def set_sla_working_days(self, days: int) -> None:
        """Working days to the due date of reports filed from now on (the console's SLA setting)."""
        self._sla_days = days
        setter = getattr(self.inner, "set_sla_working_days", None)
        if setter is not None:
            setter(days)

    # -- core ---------------------------------------------------------------------------------
    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            raise RegistryUnavailable("registry circuit open")
        try:
            # One time budget for the call, retries included: a slow registry must not cost a
            # caller `attempts x timeout` (a USSD gateway drops the hop after ~15 s).
            async with asyncio.timeout(self.timeout):
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.attempts),
                    wait=wait_exponential(multiplier=0.05, max=0.5),
                    retry=retry_if_exception(_retryable),
                    reraise=True,
                ):
                    with attempt:
                        result = await fn()
        except TimeoutError as exc:
            self.breaker.failure()
            raise RegistryUnavailable("registry timed out") from exc
        except RegistryUnavailable:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    async def _read(self, key: tuple[Any, ...], fn: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await self._call(fn)
        except RegistryUnavailable:
            hit = self.cache.get(key)
            if hit is None:
                raise
            age, value = hit
            current = _stale_age.get()
            _stale_age.set(age if current is None else max(age, current))
            return value  # type: ignore[no-any-return]
        self.cache.put(key, result)
        return result

    # -- reads --------------------------------------------------------------------------------
    async def find_person(self, national_id: str, date_of_birth: date) -> Person:
        return await self._read(
            ("find_person", national_id, date_of_birth),
            lambda: self.inner.find_person(national_id, date_of_birth),
        )

    async def get_person(self, person_id: str) -> Person:
        return await self._read(("get_person", person_id), lambda: self.inner.get_person(person_id))

    async def find_persons_by_phone(self, phone: str) -> list[Person]:
        return await self._read(("by_phone", phone), lambda: self.inner.find_persons_by_phone(phone))

    async def list_sites(self) -> list[Site]:
        return await self._read(("sites",), self.inner.list_sites)

    async def get_site(self, code: str) -> Site:
        return await self._read(("site", code), lambda: self.inner.get_site(code))

    async def list_doses(self, person_id: str) -> list[Dose]:
        return await self._read(("doses", person_id), lambda: self.inner.list_doses(person_id))

    async def get_correction(self, ref: str) -> CorrectionCase:
        try:
            return await self._read(("case", ref), lambda: self.inner.get_correction(ref))
        except RegistryUnavailable:
            queued = await self._queued_case(ref)
            if queued is None:
                raise
            return queued

    async def list_corrections(self, query: CorrectionQuery) -> list[CorrectionCase]:
        return await self._read(("cases", query), lambda: self.inner.list_corrections(query))

    async def page_corrections(self, query: QueueQuery) -> CasePage:
        """A queue page with its total: in the backend when it can (SQL), else filtered here."""
        native = getattr(self.inner, "page_corrections", None)
        if native is not None:
            return await self._read(("page", query), lambda: native(query))
        return await self._read(("page", query), lambda: page_in_memory(self.inner, query))

    # -- writes -------------------------------------------------------------------------------
    async def create_person(self, new: NewPerson, actor: str) -> Person:
        return await self._call(lambda: self.inner.create_person(new, actor))

    async def update_contact(self, person_id: str, change: ContactChange) -> Person:
        result = await self._call(lambda: self.inner.update_contact(person_id, change))
        self.cache.forget_person(person_id)
        return result

    async def upsert_site(self, site: Site) -> Site:
        return await self._call(lambda: self.inner.upsert_site(site))

    async def record_dose(self, person_id: str, dose: NewDose) -> Dose:
        result = await self._call(lambda: self.inner.record_dose(person_id, dose))
        self.cache.forget_person(person_id)
        return result

    async def submit_correction(self, new: NewCorrection) -> CorrectionCase:
        if new.ref is None:
            new = dataclasses.replace(new, ref=refs.new_case_ref())
        try:
            return await self._call(lambda: self.inner.submit_correction(new))
        except RegistryUnavailable as exc:
            assert new.ref is not None
            await self.pending.put(new.ref, "submit_correction", correction_to_json(new))
            log.warning("registry down (%s): report %s queued for replay", exc.message, new.ref)
            return self._provisional_case(new)

    async def resolve_correction(self, ref: str, resolution: Resolution) -> CorrectionCase:
        return await self._call(lambda: self.inner.resolve_correction(ref, resolution))

    async def reassign_correction(
        self, ref: str, site_code: str | None, actor: str, note: str
    ) -> CorrectionCase:
        return await self._call(lambda: self.inner.reassign_correction(ref, site_code, actor, note))

    async def add_attachment(self, ref: str, attachment: NewAttachment, actor: str) -> CorrectionCase:
        return await self._call(lambda: self.inner.add_attachment(ref, attachment, actor))

    async def mark_in_review(self, ref: str, actor: str) -> CorrectionCase:
        return await self._call(lambda: self.inner.mark_in_review(ref, actor))

    async def audit(self, entry: AuditEntry) -> None:
        if entry.at is None:
            entry = dataclasses.replace(entry, at=self._clock())
        try:
            await self._call(lambda: self.inner.audit(entry))
        except RegistryUnavailable:
            # a random key: two lines of one actor, action and instant are two lines
            await self.pending.put(f"audit:{uuid.uuid4().hex}", "audit", _to_jsonable(entry))

    async def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Several audit lines in one call when the backend has `audit_many` (else `audit` each);
        what the backend cannot take now goes to the durable queue, as with `audit`."""
        stamped = [e if e.at is not None else dataclasses.replace(e, at=self._clock()) for e in entries]
        many = getattr(self.inner, "audit_many", None)
        if many is None:
            for entry in stamped:
                await self.audit(entry)
            return
        try:
            await self._call(lambda: many(stamped))
        except RegistryUnavailable:
            for entry in stamped:  # a random key: entries of one batch may be alike in every field
                await self.pending.put(f"audit:{uuid.uuid4().hex}", "audit", _to_jsonable(entry))

    async def record_notice(self, notice: CaseNotice) -> None:
        """Keeps what a citizen was told where the backend can show it (`record_notice`, the FHIR
        backend); best effort: the message itself is already in the outbox."""
        record = getattr(self.inner, "record_notice", None)
        if record is not None:
            await self._call(lambda: record(notice))

    async def info(self) -> RegistryInfo:
        info = await self.inner.info()
        return dataclasses.replace(info, detail=f"{info.detail}; breaker {self.breaker.state}")

    async def close(self) -> None:
        await self.inner.close()

    # -- the durable queue --------------------------------------------------------------------
    def _provisional_case(self, new: NewCorrection) -> CorrectionCase:
        now = self._clock()
        assert new.ref is not None
        return CorrectionCase(
            ref=new.ref,
            person_id=new.person_id,
            claimed_national_id=new.claimed_national_id,
            claimed_date_of_birth=new.claimed_date_of_birth,
            claimed_name=new.claimed_name,
            kind=new.kind,
            doses_concerned=new.doses_concerned,
            claimed=new.claimed,
            workplace=new.workplace,
            contact_phone=new.contact_phone,
            channel=new.channel,
            channel_address=new.channel_address,
            language=new.language,
            status=CaseStatus.RECEIVED,
            site_code=None,
            due_on=add_working_days(service_date(now), self._sla_days),
            created_at=now,
            updated_at=now,
            description=new.description,
            queued=True,
        )

    async def _queued_case(self, ref: str) -> CorrectionCase | None:
        try:
            for row in await self.pending.open_items(limit=10_000):
                if row.key == ref and row.operation == "submit_correction":
                    return self._provisional_case(correction_from_json(row.payload))
        except Exception:
            return None
        return None

    async def replay_pending(self) -> int:
        """Sends queued writes to the backend; returns how many went through. Idempotent."""
        await self.pending.ingest_journal()
        done = 0
        for row in await self.pending.open_items():
            try:
                if row.operation == "submit_correction":
                    new = correction_from_json(row.payload)
                    case = await self._call(partial(self.inner.submit_correction, new))
                    await self.pending.finish(row.key, result_ref=case.ref)
                elif row.operation == "audit":
                    payload = dict(row.payload)
                    payload["at"] = datetime.fromisoformat(payload["at"]) if payload.get("at") else None
                    await self._call(partial(self.inner.audit, AuditEntry(**payload)))
                    await self.pending.finish(row.key)
                else:
                    await self.pending.finish(row.key, error=f"unknown operation {row.operation}")
                    continue
                done += 1
            except RegistryUnavailable:
                break  # still down: try again on the next tick
            except RegistryError as exc:  # refused for good (e.g. invalid): kept with its reason
                log.error("queued %s %s refused by the registry: %s", row.operation, row.key, exc)
                await self.pending.finish(row.key, error=str(exc))
        return done
