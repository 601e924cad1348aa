"""EmbeddedRegistry: the Registry protocol over SQL tables in DATABASE_URL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import TypeVar

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.fast_access import FastAccess
from registry_client import refs
from registry_client.case_pages import CasePage, QueueQuery
from registry_client.clock import Clock, service_date, utc_now
from registry_client.dose_validation import validated_dose
from registry_client.embedded import case_pages, convert, fast_reads
from registry_client.embedded.dose_matching import case_closed_by_dose, dose_data, import_resolution_note
from registry_client.embedded.tables import (
    AuditRow,
    CaseAttachmentRow,
    CaseEventRow,
    CaseRow,
    ContactRow,
    DoseRow,
    PersonRow,
    SiteRow,
)
from registry_client.errors import Conflict, InvalidRequest, RecordNotFound, RegistryUnavailable
from registry_client.models import (
    OPEN_STATUSES,
    AuditEntry,
    CaseStatus,
    ContactChange,
    CorrectionCase,
    CorrectionQuery,
    Decision,
    Dose,
    DosesConcerned,
    DoseSource,
    NewAttachment,
    NewCorrection,
    NewDose,
    NewPerson,
    Person,
    RegistryInfo,
    Resolution,
    Site,
)
from registry_client.routing import add_working_days, route_case

T = TypeVar("T")


def _person_id(person_id: str) -> int:
    try:
        return int(person_id)
    except (TypeError, ValueError):
        raise RecordNotFound(f"no person {person_id!r}") from None


class EmbeddedRegistry:
    """Reference implementation. Database outages surface as RegistryUnavailable."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now, sla_working_days: int = 5) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._fast = FastAccess.for_engine(engine)
        self._clock = clock
        self._sla_days = sla_working_days

    def set_sla_working_days(self, days: int) -> None:
        """Working days to the due date of reports filed from now on (the console's SLA setting)."""
        self._sla_days = days

    # -- plumbing ---------------------------------------------------------------------------
    def _session(self) -> AsyncSession:
        return self._sessions()

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        """The hot reads (a person, their doses): prebuilt Core statements, one round trip, through
        `db.fast_access` (no aiosqlite thread hops on SQLite)."""
        try:
            return await self._fast.read(fn)
        except (OperationalError, SAInterfaceError, OSError, ConnectionError) as exc:
            raise RegistryUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    async def _run(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        try:
            async with self._session() as session:
                async with session.begin():
                    return await fn(session)
        except (OperationalError, SAInterfaceError, OSError, ConnectionError) as exc:
            raise RegistryUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    @staticmethod
    async def _load_person(session: AsyncSession, row: PersonRow) -> Person:
        contacts = (await session.scalars(select(ContactRow).where(ContactRow.person_id == row.id))).all()
        return convert.person(row, contacts)

    @staticmethod
    async def _person_row(session: AsyncSession, person_id: str) -> PersonRow:
        row = await session.get(PersonRow, _person_id(person_id))
        if row is None:
            raise RecordNotFound(f"no person {person_id}")
        return row

    # -- persons ----------------------------------------------------------------------------
    async def find_person(self, national_id: str, date_of_birth: date) -> Person:
        return await self._read(lambda conn: fast_reads.person_by_identity(conn, national_id, date_of_birth))

    async def get_person(self, person_id: str) -> Person:
        key = _person_id(person_id)
        return await self._read(lambda conn: fast_reads.person_by_id(conn, key))

    async def find_persons_by_phone(self, phone: str) -> list[Person]:
        return await self._read(lambda conn: fast_reads.persons_by_phone(conn, phone))

    async def create_person(self, new: NewPerson, actor: str) -> Person:
        async def op(session: AsyncSession) -> Person:
            existing = await session.scalar(
                select(PersonRow.id).where(
                    PersonRow.national_id == new.national_id, PersonRow.date_of_birth == new.date_of_birth
                )
            )
            if existing is not None:
                raise Conflict("a person with this national ID and date of birth exists")
            now = self._clock()
            row = PersonRow(
                national_id=new.national_id,
                date_of_birth=new.date_of_birth,
                full_name=new.full_name,
                sex=new.sex.value if new.sex else None,
                created_at=now,
            )
            session.add(row)
            await session.flush()
            if new.phone:
                session.add(
                    ContactRow(
                        person_id=row.id, phone=new.phone, added_at=now, verified=False, added_by=actor
                    )
                )
                await session.flush()
            return await self._load_person(session, row)

        return await self._run(op)

    async def update_contact(self, person_id: str, change: ContactChange) -> Person:
        async def op(session: AsyncSession) -> Person:
            row = await self._person_row(session, person_id)
            now = self._clock()
            current = (
                await session.scalars(
                    select(ContactRow).where(ContactRow.person_id == row.id, ContactRow.removed_at.is_(None))
                )
            ).all()
            for contact in current:
                retired = contact.phone == change.remove_phone or (
                    change.replace and change.add_phone is not None and contact.phone != change.add_phone
                )
                if retired:
                    contact.removed_at = now
            if change.add_phone:
                same = [c for c in current if c.phone == change.add_phone]
                if same:
                    for contact in same:
                        if change.verified and not contact.verified:
                            contact.verified, contact.verified_at, contact.evidence = (
                                True,
                                now,
                                change.evidence,
                            )
                else:
                    session.add(
                        ContactRow(
                            person_id=row.id,
                            phone=change.add_phone,
                            added_at=now,
                            verified=change.verified,
                            verified_at=now if change.verified else None,
                            evidence=change.evidence,
                            added_by=change.actor,
                        )
                    )
            await session.flush()
            return await self._load_person(session, row)

        return await self._run(op)

    # -- sites and doses --------------------------------------------------------------------
    async def list_sites(self) -> list[Site]:
        async def op(session: AsyncSession) -> list[Site]:
            return [
                convert.site(r) for r in (await session.scalars(select(SiteRow).order_by(SiteRow.code))).all()
            ]

        return await self._run(op)

    async def get_site(self, code: str) -> Site:
        async def op(session: AsyncSession) -> Site:
            row = await session.get(SiteRow, code)
            if row is None:
                raise RecordNotFound(f"no site {code}")
            return convert.site(row)

        return await self._run(op)

    async def upsert_site(self, site: Site) -> Site:
        async def op(session: AsyncSession) -> Site:
            row = await session.get(SiteRow, site.code)
            if row is None:
                row = SiteRow(code=site.code, name=site.name, province=site.province)
                session.add(row)
            else:
                row.name, row.province = site.name, site.province or row.province
            await session.flush()
            return convert.site(row)

        return await self._run(op)

    async def _doses(self, session: AsyncSession, person_id: int) -> list[Dose]:
        rows = (
            await session.execute(
                select(DoseRow, SiteRow.name)
                .join(SiteRow, SiteRow.code == DoseRow.site_code)
                .where(DoseRow.person_id == person_id)
                .order_by(DoseRow.dose_number)
            )
        ).all()
        return [convert.dose(r, name) for r, name in rows]

    async def list_doses(self, person_id: str) -> list[Dose]:
        key = _person_id(person_id)
        return await self._read(lambda conn: fast_reads.doses_of(conn, key))

    async def _record_dose(self, session: AsyncSession, person_id: int, new: NewDose) -> Dose:
        product, new = validated_dose(new)  # the rule every backend shares
        site = await session.get(SiteRow, new.site_code)
        if site is None:
            if not new.site_name:
                raise InvalidRequest(f"unknown site {new.site_code!r}")
            site = SiteRow(code=new.site_code, name=new.site_name)
            session.add(site)
            await session.flush()
        existing = await session.scalar(
            select(DoseRow).where(DoseRow.person_id == person_id, DoseRow.dose_number == new.dose_number)
        )
        now = self._clock()
        if existing is not None:
            same = dose_data(
                existing.product, existing.administered_on, existing.site_code, existing.lot
            ) == dose_data(product.code, new.administered_on, new.site_code, new.lot)
            if same:
                return convert.dose(existing, site.name)
            if new.source != DoseSource.CORRECTION:
                raise Conflict(f"dose {new.dose_number} is recorded with other data")
            existing.product, existing.administered_on, existing.site_code = (
                product.code,
                new.administered_on,
                new.site_code,
            )
            existing.lot, existing.source, existing.recorded_by, existing.recorded_at = (
                new.lot,
                new.source.value,
                new.recorded_by,
                now,
            )
            await session.flush()
            return convert.dose(existing, site.name)
        row = DoseRow(
            person_id=person_id,
            dose_number=new.dose_number,
            product=product.code,
            lot=new.lot,
            administered_on=new.administered_on,
            site_code=new.site_code,
            source=new.source.value,
            recorded_by=new.recorded_by,
            recorded_at=now,
        )
        session.add(row)
        await session.flush()
        return convert.dose(row, site.name)

    async def record_dose(self, person_id: str, dose: NewDose) -> Dose:
        async def op(session: AsyncSession) -> Dose:
            row = await self._person_row(session, person_id)
            return await self._record_dose(session, row.id, dose)

        return await self._run(op)

    # -- correction cases -------------------------------------------------------------------
    async def _load_case(self, session: AsyncSession, row: CaseRow, joined: bool = False) -> CorrectionCase:
        events = (await session.scalars(select(CaseEventRow).where(CaseEventRow.ref == row.ref))).all()
        attachments = (
            await session.scalars(select(CaseAttachmentRow).where(CaseAttachmentRow.ref == row.ref))
        ).all()
        return convert.case(row, events, attachments, joined)

    async def _case_row(self, session: AsyncSession, ref: str, *, lock: bool = False) -> CaseRow:
        stmt = select(CaseRow).where(CaseRow.ref == ref)
        if lock:
            stmt = stmt.with_for_update()
        row = await session.scalar(stmt)
        if row is None:
            alias = await session.scalar(
                select(CaseEventRow.ref).where(CaseEventRow.action == "alias", CaseEventRow.note == ref)
            )
            if alias is not None:
                return await self._case_row(session, alias, lock=lock)
            raise RecordNotFound(f"no report {ref}")
        return row

    def _event(
        self, session: AsyncSession, ref: str, actor: str, action: str, note: str | None = None
    ) -> None:
        session.add(CaseEventRow(ref=ref, at=self._clock(), actor=actor, action=action, note=note))

    def _attach(self, session: AsyncSession, ref: str, attachments: Sequence[NewAttachment]) -> None:
        for a in attachments:
            session.add(
                CaseAttachmentRow(
                    ref=ref,
                    filename=a.filename,
                    content_type=a.content_type,
                    size=a.size,
                    storage_path=a.storage_path,
                    added_at=self._clock(),
                )
            )

    async def _open_case_for(self, session: AsyncSession, new: NewCorrection) -> CaseRow | None:
        stmt = select(CaseRow).where(
            CaseRow.status.in_([s.value for s in OPEN_STATUSES]), CaseRow.kind == new.kind.value
        )
        if new.person_id is not None:
            stmt = stmt.where(CaseRow.person_id == _person_id(new.person_id))
        elif new.claimed_national_id:
            stmt = stmt.where(
                CaseRow.person_id.is_(None),
                CaseRow.claimed_national_id == new.claimed_national_id,
                CaseRow.claimed_date_of_birth == new.claimed_date_of_birth,
            )
        else:
            return None
        wanted = set(new.doses_concerned.dose_numbers()) if new.doses_concerned else None
        for row in (await session.scalars(stmt.order_by(CaseRow.created_at))).all():
            if wanted is None or row.doses_concerned is None:
                if wanted is None and row.doses_concerned is None:
                    return row
                continue
            if wanted & set(DosesConcerned(row.doses_concerned).dose_numbers()):
                return row
        return None

    async def submit_correction(self, new: NewCorrection) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            if new.ref is not None:
                already = await session.get(CaseRow, new.ref)
                if already is not None:  # a retried submission: answer it, do not file twice
                    return await self._load_case(session, already)
            person_row = await self._person_row(session, new.person_id) if new.person_id is not None else None
            open_row = await self._open_case_for(session, new)
            if open_row is not None:
                note = new.description or (new.claimed.site and f"site: {new.claimed.site}") or None
                self._event(session, open_row.ref, new.actor, "joined", note)
                if new.ref is not None:  # the citizen was already given this reference: keep it working
                    self._event(session, open_row.ref, "system", "alias", new.ref)
                self._attach(session, open_row.ref, new.attachments)
                open_row.updated_at = self._clock()
                await session.flush()
                return await self._load_case(session, open_row, joined=True)
            sites = [convert.site(s) for s in (await session.scalars(select(SiteRow))).all()]
            doses = await self._doses(session, person_row.id) if person_row is not None else []
            site_code = route_case(new.claimed.site, sites, doses)
            now = self._clock()
            ref = new.ref or refs.new_case_ref()
            while new.ref is None and await session.get(CaseRow, ref) is not None:
                ref = refs.new_case_ref()
            row = CaseRow(
                ref=ref,
                person_id=person_row.id if person_row is not None else None,
                claimed_national_id=new.claimed_national_id
                or (person_row.national_id if person_row else None),
                claimed_date_of_birth=new.claimed_date_of_birth
                or (person_row.date_of_birth if person_row else None),
                claimed_name=new.claimed_name or (person_row.full_name if person_row else None),
                kind=new.kind.value,
                doses_concerned=new.doses_concerned.value if new.doses_concerned else None,
                claimed_date=new.claimed.administered_on,
                claimed_vaccine=new.claimed.vaccine,
                claimed_site=new.claimed.site,
                claimed_lot=new.claimed.lot,
                workplace=new.workplace,
                contact_phone=new.contact_phone,
                description=new.description,
                channel=new.channel,
                channel_address=new.channel_address,
                language=new.language,
                status=CaseStatus.ROUTED.value,
                site_code=site_code,
                due_on=add_working_days(service_date(now), self._sla_days),  # days in Viet Nam
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            self._event(session, ref, new.actor, "received", new.description)
            self._event(session, ref, "system", "routed", site_code or "hotline")
            self._attach(session, ref, new.attachments)
            await session.flush()
            return await self._load_case(session, row)

        return await self._run(op)

    async def get_correction(self, ref: str) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            return await self._load_case(session, await self._case_row(session, ref))

        return await self._run(op)

    async def list_corrections(self, query: CorrectionQuery) -> list[CorrectionCase]:
        async def op(session: AsyncSession) -> list[CorrectionCase]:
            stmt = select(CaseRow)
            if query.statuses is not None:
                stmt = stmt.where(CaseRow.status.in_([s.value for s in query.statuses]))
            if query.hotline_queue:
                stmt = stmt.where(CaseRow.site_code.is_(None))
            elif query.site_code is not None:
                stmt = stmt.where(CaseRow.site_code == query.site_code)
            if query.person_id is not None:
                stmt = stmt.where(CaseRow.person_id == _person_id(query.person_id))
            if query.resolved_since is not None:
                stmt = stmt.where(CaseRow.resolved_at >= query.resolved_since)
            stmt = stmt.order_by(CaseRow.due_on, CaseRow.created_at).limit(query.limit)
            return [await self._load_case(session, r) for r in (await session.scalars(stmt)).all()]

        return await self._run(op)

    async def page_corrections(self, query: QueueQuery) -> CasePage:
        """A queue page filtered, counted and cut in SQL (registry_client/case_pages.py)."""
        person = _person_id(query.base.person_id) if query.base.person_id is not None else None

        async def op(session: AsyncSession) -> CasePage:
            stmt = case_pages.matching_cases(query, person)
            total = int(await session.scalar(case_pages.count_of(stmt)) or 0)
            rows = (await session.scalars(case_pages.page_of(stmt, query))).all()
            cases = [await self._load_case(session, r) for r in rows]
            return CasePage(cases, total, query.offset, query.limit)

        return await self._run(op)

    async def _resolve(self, session: AsyncSession, row: CaseRow, resolution: Resolution) -> None:
        if not CaseStatus(row.status).is_open:
            raise InvalidRequest(f"report {row.ref} is already {row.status}")
        if resolution.decision == Decision.APPROVED and resolution.dose is not None:
            if row.person_id is None:
                raise InvalidRequest("this report has no person on record; create the person first")
            dose = await self._record_dose(session, row.person_id, resolution.dose)
            self._event(
                session,
                row.ref,
                resolution.actor,
                "dose_recorded",
                f"dose {dose.dose_number}: {dose.product} {dose.administered_on.isoformat()} {dose.site_code}",
            )
        now = self._clock()
        row.status = resolution.decision.value
        row.resolution_note = resolution.note
        row.resolved_at = now
        row.updated_at = now
        self._event(session, row.ref, resolution.actor, resolution.decision.value, resolution.note)

    async def resolve_correction(self, ref: str, resolution: Resolution) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            row = await self._case_row(session, ref, lock=True)
            await self._resolve(session, row, resolution)
            await session.flush()
            return await self._load_case(session, row)

        return await self._run(op)

    async def reassign_correction(
        self, ref: str, site_code: str | None, actor: str, note: str
    ) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            row = await self._case_row(session, ref, lock=True)
            if not CaseStatus(row.status).is_open:
                raise InvalidRequest(f"report {ref} is already {row.status}")
            if site_code is not None and await session.get(SiteRow, site_code) is None:
                raise InvalidRequest(f"unknown site {site_code!r}")
            row.site_code = site_code
            row.status = CaseStatus.ROUTED.value
            row.updated_at = self._clock()
            self._event(
                session, ref, actor, "reassigned", f"{site_code or 'hotline'}: {note}" if note else site_code
            )
            await session.flush()
            return await self._load_case(session, row)

        return await self._run(op)

    async def add_attachment(self, ref: str, attachment: NewAttachment, actor: str) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            row = await self._case_row(session, ref)
            self._attach(session, ref, [attachment])
            self._event(session, ref, actor, "attachment", attachment.filename)
            row.updated_at = self._clock()
            await session.flush()
            return await self._load_case(session, row)

        return await self._run(op)

    async def mark_in_review(self, ref: str, actor: str) -> CorrectionCase:
        async def op(session: AsyncSession) -> CorrectionCase:
            row = await self._case_row(session, ref, lock=True)
            if row.status in (CaseStatus.RECEIVED.value, CaseStatus.ROUTED.value):
                row.status = CaseStatus.IN_REVIEW.value
                row.updated_at = self._clock()
                self._event(session, ref, actor, "in_review")
                await session.flush()
            return await self._load_case(session, row)

        return await self._run(op)

    # -- audit and health -------------------------------------------------------------------
    async def audit(self, entry: AuditEntry) -> None:
        async def op(session: AsyncSession) -> None:
            session.add(
                AuditRow(
                    at=entry.at or self._clock(),
                    actor=entry.actor,
                    action=entry.action,
                    person_id=entry.person_id,
                    detail=entry.detail,
                )
            )

        await self._run(op)

    async def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Several audit lines in one transaction (the conversation engine's batched audit queue)."""
        now = self._clock()
        rows = [
            {
                "at": e.at or now,
                "actor": e.actor,
                "action": e.action,
                "person_id": e.person_id,
                "detail": e.detail,
            }
            for e in entries
        ]

        if not rows:
            return
        try:  # the writer thread on SQLite: no aiosqlite transaction holding the write lock
            await self._fast.write(lambda conn: conn.execute(insert(AuditRow), rows))
        except (OperationalError, SAInterfaceError, OSError, ConnectionError) as exc:
            raise RegistryUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    async def info(self) -> RegistryInfo:
        async def op(session: AsyncSession) -> RegistryInfo:
            persons = await session.scalar(select(PersonRow.id).limit(1))
            return RegistryInfo(
                backend="embedded",
                reachable=True,
                detail=f"{self._engine.url.render_as_string(hide_password=True)}"
                + ("" if persons is not None else " (empty)"),
                capabilities=("persons", "doses", "corrections", "audit"),
            )

        try:
            return await self._run(op)
        except RegistryUnavailable as exc:
            return RegistryInfo(backend="embedded", reachable=False, detail=str(exc))

    async def close(self) -> None:
        return None

    # -- used by the dose import to close matching cases (embedded only) ----------------------
    async def close_cases_matched_by_dose(self, person_id: str, dose_number: int, actor: str) -> list[str]:
        """Approves open missing/wrong-dose cases of this person that concern `dose_number`."""

        async def op(session: AsyncSession) -> list[str]:
            rows = (
                await session.scalars(
                    select(CaseRow).where(
                        CaseRow.person_id == _person_id(person_id),
                        CaseRow.status.in_([s.value for s in OPEN_STATUSES]),
                    )
                )
            ).all()
            closed = []
            for row in rows:
                if case_closed_by_dose(row.status, row.doses_concerned, dose_number):
                    await self._resolve(
                        session,
                        row,
                        Resolution(Decision.APPROVED, import_resolution_note(dose_number), actor),
                    )
                    closed.append(row.ref)
            return closed

        return await self._run(op)
