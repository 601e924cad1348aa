"""The embedded registry's hot reads (a person with contacts, a person's doses) as prebuilt Core
statements over one synchronous `Connection`, one round trip each (persons joined to contacts or
doses). Run through `db.fast_access`: on SQLite the synchronous driver on one thread instead of
aiosqlite's per-cursor-call thread hops; on PostgreSQL through the async engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, select

from registry_client.clock import as_utc
from registry_client.embedded import convert
from registry_client.embedded.tables import ContactRow, DoseRow, PersonRow, SiteRow
from registry_client.errors import RecordNotFound
from registry_client.models import Contact, Dose, DoseSource, Person, Sex

PERSONS = cast(Table, PersonRow.__table__)
CONTACTS = cast(Table, ContactRow.__table__)
DOSES = cast(Table, DoseRow.__table__)
SITES = cast(Table, SiteRow.__table__)

_CONTACT_COLUMNS = ("id", "phone", "added_at", "removed_at", "verified", "verified_at", "evidence")
_PERSON_WITH_CONTACTS = select(
    PERSONS.c.id,
    PERSONS.c.national_id,
    PERSONS.c.date_of_birth,
    PERSONS.c.full_name,
    PERSONS.c.sex,
    *(CONTACTS.c[name].label(f"c_{name}") for name in _CONTACT_COLUMNS),
).select_from(PERSONS.outerjoin(CONTACTS, CONTACTS.c.person_id == PERSONS.c.id))

BY_ID = _PERSON_WITH_CONTACTS.where(PERSONS.c.id == bindparam("person_id")).order_by(CONTACTS.c.id)
BY_IDENTITY = _PERSON_WITH_CONTACTS.where(
    PERSONS.c.national_id == bindparam("national_id"),
    PERSONS.c.date_of_birth == bindparam("date_of_birth", type_=PERSONS.c.date_of_birth.type),
).order_by(CONTACTS.c.id)
BY_PHONE = _PERSON_WITH_CONTACTS.where(
    PERSONS.c.id.in_(
        select(CONTACTS.c.person_id).where(
            CONTACTS.c.phone == bindparam("phone"), CONTACTS.c.removed_at.is_(None)
        )
    )
).order_by(PERSONS.c.date_of_birth, PERSONS.c.id, CONTACTS.c.id)

DOSES_OF = (
    select(
        PERSONS.c.id.label("p_id"),
        DOSES.c.id,
        DOSES.c.person_id,
        DOSES.c.dose_number,
        DOSES.c.product,
        DOSES.c.lot,
        DOSES.c.administered_on,
        DOSES.c.site_code,
        DOSES.c.source,
        DOSES.c.recorded_by,
        DOSES.c.recorded_at,
        SITES.c.name.label("site_name"),
    )
    .select_from(
        PERSONS.outerjoin(DOSES, DOSES.c.person_id == PERSONS.c.id).outerjoin(
            SITES, and_(SITES.c.code == DOSES.c.site_code)
        )
    )
    .where(PERSONS.c.id == bindparam("person_id"))
    .order_by(DOSES.c.dose_number)
)


def _persons(rows: Sequence[Row[Any]]) -> list[Person]:
    """Rows of `_PERSON_WITH_CONTACTS` (grouped by person, in order) → persons."""
    persons: list[Person] = []
    current: Any = None
    contacts: list[Contact] = []
    for row in rows:
        if current is None or row.id != current.id:
            if current is not None:
                persons.append(_person(current, contacts))
            current, contacts = row, []
        if row.c_id is not None:
            contacts.append(
                convert.contact(
                    row.c_phone,
                    row.c_added_at,
                    row.c_removed_at,
                    row.c_verified,
                    row.c_verified_at,
                    row.c_evidence,
                )
            )
    if current is not None:
        persons.append(_person(current, contacts))
    return persons


def _person(row: Any, contacts: list[Contact]) -> Person:
    return Person(
        id=str(row.id),
        national_id=row.national_id,
        date_of_birth=row.date_of_birth,
        full_name=row.full_name,
        sex=Sex(row.sex) if row.sex else None,
        contacts=tuple(contacts),
    )


def person_by_id(conn: Connection, person_id: int) -> Person:
    found = _persons(conn.execute(BY_ID, {"person_id": person_id}).all())
    if not found:
        raise RecordNotFound(f"no person {person_id}")
    return found[0]


def person_by_identity(conn: Connection, national_id: str, date_of_birth: date) -> Person:
    found = _persons(
        conn.execute(BY_IDENTITY, {"national_id": national_id, "date_of_birth": date_of_birth}).all()
    )
    if not found:
        raise RecordNotFound("no person with this national ID and date of birth")
    return found[0]


def persons_by_phone(conn: Connection, phone: str) -> list[Person]:
    return _persons(conn.execute(BY_PHONE, {"phone": phone}).all())


def doses_of(conn: Connection, person_id: int) -> list[Dose]:
    rows = conn.execute(DOSES_OF, {"person_id": person_id}).all()
    if not rows:
        raise RecordNotFound(f"no person {person_id}")
    return [
        Dose(
            id=str(r.id),
            person_id=str(r.person_id),
            dose_number=r.dose_number,
            product=r.product,
            lot=r.lot,
            administered_on=r.administered_on,
            site_code=r.site_code,
            site_name=r.site_name,
            source=DoseSource(r.source),
            recorded_by=r.recorded_by,
            recorded_at=as_utc(r.recorded_at),
        )
        for r in rows
        if r.id is not None
    ]
