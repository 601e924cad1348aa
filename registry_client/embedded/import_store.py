"""Set-at-a-time reads and writes of the dose import, on one sync connection.

Reads are SQLAlchemy Core selects over the registry tables (`= ANY(array)` on PostgreSQL,
chunked `IN (...)` on SQLite). Bulk writes are executemany on SQLite and COPY into a temporary
staging table followed by `INSERT ... SELECT ... ON CONFLICT DO NOTHING` on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Integer, String, Table, any_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from registry_client.embedded.dose_matching import OPEN_STATUS_VALUES
from registry_client.embedded.tables import (
    AuditRow,
    CaseEventRow,
    CaseRow,
    ContactRow,
    DoseRow,
    PersonRow,
    SiteRow,
)
from registry_client.models import Decision, DoseSource

PERSONS = cast(Table, PersonRow.__table__)
DOSES = cast(Table, DoseRow.__table__)
CONTACTS = cast(Table, ContactRow.__table__)
SITES = cast(Table, SiteRow.__table__)
CASES = cast(Table, CaseRow.__table__)
EVENTS = cast(Table, CaseEventRow.__table__)
AUDIT = cast(Table, AuditRow.__table__)

# What a failing database raises here: SQLAlchemy's errors, and psycopg's own from the COPY path.
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, psycopg.Error)

PersonKey = tuple[str, date]  # national ID, date of birth
NewPersonValues = tuple[str, date, str, str]  # national ID, date of birth, full name, sex
NewDoseValues = tuple[int, int, str, str | None, date, str]  # person, number, product, lot, date, site


@dataclass(frozen=True, slots=True)
class StoredPerson:
    id: int
    national_id: str
    date_of_birth: date
    full_name: str
    sex: str | None


@dataclass(frozen=True, slots=True)
class StoredDose:
    person_id: int
    dose_number: int
    product: str
    administered_on: date
    site_code: str
    lot: str | None


@dataclass(frozen=True, slots=True)
class OpenCase:
    ref: str
    person_id: int | None
    claimed_national_id: str | None
    claimed_date_of_birth: date | None
    status: str
    doses_concerned: str | None


class ImportStore:
    """Reads shared by both databases; subclasses provide the bulk inserts."""

    chunk = 5000

    def __init__(self, conn: Connection, actor: str) -> None:
        self.conn = conn
        self.actor = actor

    def begin_batch(self) -> None:
        """Called first in each batch's transaction."""

    # -- reads ------------------------------------------------------------------------------
    def _chunks(self, values: Sequence[Any]) -> Iterator[Sequence[Any]]:
        for start in range(0, len(values), self.chunk):
            yield values[start : start + self.chunk]

    def _member(self, column: Any, values: Sequence[Any], kind: TypeEngine[Any]) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], column.in_(values))

    def persons_by_national_id(self, national_ids: Sequence[str]) -> list[StoredPerson]:
        c = PERSONS.c
        found: list[StoredPerson] = []
        for part in self._chunks(national_ids):
            stmt = select(c.id, c.national_id, c.date_of_birth, c.full_name, c.sex).where(
                self._member(c.national_id, part, String())
            )
            found.extend(StoredPerson(*row) for row in self.conn.execute(stmt))
        return found

    def doses_of(self, person_ids: Sequence[int]) -> list[StoredDose]:
        c = DOSES.c
        found: list[StoredDose] = []
        for part in self._chunks(person_ids):
            stmt = select(c.person_id, c.dose_number, c.product, c.administered_on, c.site_code, c.lot).where(
                self._member(c.person_id, part, Integer())
            )
            found.extend(StoredDose(*row) for row in self.conn.execute(stmt))
        return found

    def contacts_of(self, person_ids: Sequence[int]) -> list[tuple[int, str, bool]]:
        """(person, phone, still current) for every contact, current or removed."""
        c = CONTACTS.c
        found: list[tuple[int, str, bool]] = []
        for part in self._chunks(person_ids):
            stmt = select(c.person_id, c.phone, c.removed_at.is_(None)).where(
                self._member(c.person_id, part, Integer())
            )
            found.extend((pid, phone, bool(current)) for pid, phone, current in self.conn.execute(stmt))
        return found

    def open_cases(self, person_ids: Sequence[int], national_ids: Sequence[str]) -> list[OpenCase]:
        """Open cases of these persons, and open cases filed for these IDs before a record existed."""
        c = CASES.c
        columns = (
            c.ref,
            c.person_id,
            c.claimed_national_id,
            c.claimed_date_of_birth,
            c.status,
            c.doses_concerned,
        )
        found: list[OpenCase] = []
        for pids in self._chunks(person_ids):
            stmt = select(*columns).where(
                c.status.in_(OPEN_STATUS_VALUES), self._member(c.person_id, pids, Integer())
            )
            found.extend(OpenCase(*row) for row in self.conn.execute(stmt))
        for nids in self._chunks(national_ids):
            stmt = select(*columns).where(
                c.status.in_(OPEN_STATUS_VALUES),
                c.person_id.is_(None),
                self._member(c.claimed_national_id, nids, String()),
            )
            found.extend(OpenCase(*row) for row in self.conn.execute(stmt))
        return found

    def sites(self) -> dict[str, str]:
        return {code: name for code, name in self.conn.execute(select(SITES.c.code, SITES.c.name))}

    # -- writes shared by both --------------------------------------------------------------
    def _insert_ignore(self, table: Any) -> Any:
        return sqlite.insert(table).on_conflict_do_nothing()

    def insert_sites(self, sites: Sequence[tuple[str, str]]) -> int:
        """Inserts the sites not stored yet, in the given order; answers how many it inserted.

        Writers insert their new sites first in their transaction and in code order, so two
        writers naming the same new site wait for each other in one direction only.
        """
        inserted = 0
        for code, name in sites:
            stmt = self._insert_ignore(SITES).values(code=code, name=name).returning(SITES.c.code)
            inserted += len(self.conn.execute(stmt).all())
        return inserted

    def link_case(self, ref: str, person_id: int, now: datetime) -> bool:
        done = self.conn.execute(
            update(CASES)
            .where(CASES.c.ref == ref, CASES.c.person_id.is_(None))
            .values(person_id=person_id, updated_at=now)
        )
        if done.rowcount != 1:
            return False
        self._event(ref, "linked", "person record matched by national ID and date of birth in an import", now)
        return True

    def approve_case(self, ref: str, note: str, now: datetime) -> bool:
        """Approves an open case the way EmbeddedRegistry._resolve does (status, note, times, event)."""
        done = self.conn.execute(
            update(CASES)
            .where(CASES.c.ref == ref, CASES.c.status.in_(OPEN_STATUS_VALUES))
            .values(status=Decision.APPROVED.value, resolution_note=note, resolved_at=now, updated_at=now)
        )
        if done.rowcount != 1:
            return False
        self._event(ref, Decision.APPROVED.value, note, now)
        return True

    def _event(self, ref: str, action: str, note: str, now: datetime) -> None:
        self.conn.execute(insert(EVENTS).values(ref=ref, at=now, actor=self.actor, action=action, note=note))

    def audit(self, action: str, detail: str, now: datetime, person_id: int | None = None) -> None:
        person = str(person_id) if person_id is not None else None
        self.conn.execute(
            insert(AUDIT).values(at=now, actor=self.actor, action=action, person_id=person, detail=detail)
        )

    # -- bulk inserts (SQLite: executemany) -------------------------------------------------
    def insert_persons(self, persons: Sequence[NewPersonValues], now: datetime) -> dict[PersonKey, int]:
        """Inserts persons not yet stored; answers the id of every given key."""
        if not persons:
            return {}
        self.conn.execute(
            self._insert_ignore(PERSONS),
            [
                {"national_id": n, "date_of_birth": d, "full_name": f, "sex": s, "created_at": now}
                for n, d, f, s in persons
            ],
        )
        wanted = {(p[0], p[1]) for p in persons}
        stored = self.persons_by_national_id(sorted({p[0] for p in persons}))
        return {
            (p.national_id, p.date_of_birth): p.id
            for p in stored
            if (p.national_id, p.date_of_birth) in wanted
        }

    def insert_doses(self, doses: Sequence[NewDoseValues], now: datetime) -> set[tuple[int, int]]:
        """Inserts doses; answers the (person, dose number) pairs actually inserted."""
        if not doses:
            return set()
        self.conn.execute(
            self._insert_ignore(DOSES),
            [
                {
                    "person_id": p,
                    "dose_number": n,
                    "product": prod,
                    "lot": lot,
                    "administered_on": on,
                    "site_code": site,
                    "source": DoseSource.IMPORT.value,
                    "recorded_by": self.actor,
                    "recorded_at": now,
                }
                for p, n, prod, lot, on, site in doses
            ],
        )
        return {(d[0], d[1]) for d in doses}  # SQLite serialises writers: nobody else got in between

    def insert_contacts(self, contacts: Sequence[tuple[int, str]], now: datetime) -> None:
        if contacts:
            self.conn.execute(
                insert(CONTACTS),
                [
                    {"person_id": p, "phone": ph, "added_at": now, "verified": False, "added_by": self.actor}
                    for p, ph in contacts
                ],
            )


_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS import_stage_persons (national_id varchar(12), date_of_birth date,"
    " full_name varchar(200), sex varchar(1)) ON COMMIT DELETE ROWS",
    "CREATE TEMP TABLE IF NOT EXISTS import_stage_doses (person_id bigint, dose_number integer,"
    " product varchar(40), lot varchar(40), administered_on date, site_code varchar(32)) ON COMMIT DELETE ROWS",
)


class PostgresImportStore(ImportStore):
    """COPY into temporary staging tables, then one INSERT ... SELECT per table and batch."""

    chunk = 50_000

    def __init__(self, conn: Connection, actor: str) -> None:
        super().__init__(conn, actor)
        self._staged = False

    def _member(self, column: Any, values: Sequence[Any], kind: TypeEngine[Any]) -> ColumnElement[bool]:
        return cast(
            ColumnElement[bool], column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(kind)))
        )

    def _insert_ignore(self, table: Any) -> Any:
        return postgresql.insert(table).on_conflict_do_nothing()

    def begin_batch(self) -> None:
        # A batch need not wait for its WAL flush: after a crash the last batches may be missing,
        # never half-written, and running the same import again brings them in.
        self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def _raw(self) -> psycopg.Connection[Any]:
        raw = self.conn.connection.dbapi_connection
        assert raw is not None
        conn = cast(psycopg.Connection[Any], raw)
        if not self._staged:
            with conn.cursor() as cur:
                for ddl in _STAGING:
                    cur.execute(ddl)
            self._staged = True
        return conn

    def _copy(self, cur: psycopg.Cursor[Any], sql: str, lines: Iterator[str]) -> None:
        with cur.copy(sql) as copy:
            copy.write("".join(lines))

    def insert_persons(self, persons: Sequence[NewPersonValues], now: datetime) -> dict[PersonKey, int]:
        if not persons:
            return {}
        with self._raw().cursor() as cur:
            self._copy(
                cur,
                "COPY import_stage_persons (national_id, date_of_birth, full_name, sex) FROM STDIN",
                (f"{n}\t{d.isoformat()}\t{copy_text(f)}\t{s}\n" for n, d, f, s in persons),
            )
            cur.execute(
                "INSERT INTO persons (national_id, date_of_birth, full_name, sex, created_at)"
                " SELECT national_id, date_of_birth, full_name, sex, %s FROM import_stage_persons"
                " ON CONFLICT ON CONSTRAINT uq_persons_identity DO NOTHING"
                " RETURNING national_id, date_of_birth, id",
                (now,),
            )
            ids: dict[PersonKey, int] = {(n, d): i for n, d, i in cur.fetchall()}
        if len(ids) < len(persons):  # stored meanwhile by another writer
            wanted = {(p[0], p[1]) for p in persons} - ids.keys()
            for p in self.persons_by_national_id(sorted({k[0] for k in wanted})):
                if (p.national_id, p.date_of_birth) in wanted:
                    ids[(p.national_id, p.date_of_birth)] = p.id
        return ids

    def insert_doses(self, doses: Sequence[NewDoseValues], now: datetime) -> set[tuple[int, int]]:
        if not doses:
            return set()
        with self._raw().cursor() as cur:
            self._copy(
                cur,
                "COPY import_stage_doses (person_id, dose_number, product, lot, administered_on, site_code)"
                " FROM STDIN",
                (
                    f"{p}\t{n}\t{prod}\t{copy_text(lot)}\t{on.isoformat()}\t{copy_text(site)}\n"
                    for p, n, prod, lot, on, site in doses
                ),
            )
            cur.execute(
                "INSERT INTO doses (person_id, dose_number, product, lot, administered_on, site_code,"
                " source, recorded_by, recorded_at)"
                " SELECT person_id, dose_number, product, lot, administered_on, site_code, %s, %s, %s"
                " FROM import_stage_doses"
                " ON CONFLICT ON CONSTRAINT uq_doses_person_number DO NOTHING",
                (DoseSource.IMPORT.value, self.actor, now),
            )
            if cur.rowcount == len(doses):
                return {(d[0], d[1]) for d in doses}
        # another writer stored some of these meanwhile: ours are the ones recorded now by us
        c = DOSES.c
        ours: set[tuple[int, int]] = set()
        for part in self._chunks(sorted({d[0] for d in doses})):
            stmt = select(c.person_id, c.dose_number).where(
                self._member(c.person_id, part, Integer()), c.recorded_at == now, c.recorded_by == self.actor
            )
            ours.update((p, n) for p, n in self.conn.execute(stmt))
        return ours

    def insert_contacts(self, contacts: Sequence[tuple[int, str]], now: datetime) -> None:
        if not contacts:
            return
        rest = f"\t{now.isoformat()}\tf\t{copy_text(self.actor)}\n"
        with self._raw().cursor() as cur:
            self._copy(
                cur,
                "COPY contacts (person_id, phone, added_at, verified, added_by) FROM STDIN",
                (f"{p}\t{copy_text(phone)}{rest}" for p, phone in contacts),
            )


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str | None) -> str:
    """A value in PostgreSQL's COPY text format (None is NULL)."""
    if value is None:
        return "\\N"
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def import_store(conn: Connection, actor: str) -> ImportStore:
    if conn.dialect.name == "postgresql":
        return PostgresImportStore(conn, actor)
    return ImportStore(conn, actor)
