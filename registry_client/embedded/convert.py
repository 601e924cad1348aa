"""Rows of the embedded registry to domain values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from registry_client.clock import as_utc
from registry_client.embedded.tables import (
    CaseAttachmentRow,
    CaseEventRow,
    CaseRow,
    ContactRow,
    DoseRow,
    PersonRow,
    SiteRow,
)
from registry_client.models import (
    Attachment,
    CaseEvent,
    CaseKind,
    CaseStatus,
    ClaimedDose,
    Contact,
    CorrectionCase,
    Dose,
    DosesConcerned,
    DoseSource,
    Person,
    Sex,
    Site,
)


def person(row: PersonRow, contacts: Sequence[ContactRow]) -> Person:
    return Person(
        id=str(row.id),
        national_id=row.national_id,
        date_of_birth=row.date_of_birth,
        full_name=row.full_name,
        sex=Sex(row.sex) if row.sex else None,
        contacts=tuple(
            contact(c.phone, c.added_at, c.removed_at, c.verified, c.verified_at, c.evidence)
            for c in sorted(contacts, key=lambda c: c.id)
        ),
    )


def contact(
    phone: str,
    added_at: datetime,
    removed_at: datetime | None,
    verified: bool | None,
    verified_at: datetime | None,
    evidence: str | None,
) -> Contact:
    """A contact from stored columns (SQLite hands back naive UTC datetimes)."""
    return Contact(
        phone=phone,
        added_at=as_utc(added_at),
        removed_at=as_utc(removed_at) if removed_at else None,
        verified=bool(verified),
        verified_at=as_utc(verified_at) if verified_at else None,
        evidence=evidence,
    )


def site(row: SiteRow) -> Site:
    return Site(code=row.code, name=row.name, province=row.province)


def dose(row: DoseRow, site_name: str) -> Dose:
    return Dose(
        id=str(row.id),
        person_id=str(row.person_id),
        dose_number=row.dose_number,
        product=row.product,
        lot=row.lot,
        administered_on=row.administered_on,
        site_code=row.site_code,
        site_name=site_name,
        source=DoseSource(row.source),
        recorded_by=row.recorded_by,
        recorded_at=as_utc(row.recorded_at),
    )


def case(
    row: CaseRow,
    events: Sequence[CaseEventRow],
    attachments: Sequence[CaseAttachmentRow],
    joined: bool = False,
) -> CorrectionCase:
    return CorrectionCase(
        ref=row.ref,
        person_id=str(row.person_id) if row.person_id is not None else None,
        claimed_national_id=row.claimed_national_id,
        claimed_date_of_birth=row.claimed_date_of_birth,
        claimed_name=row.claimed_name,
        kind=CaseKind(row.kind),
        doses_concerned=DosesConcerned(row.doses_concerned) if row.doses_concerned else None,
        claimed=ClaimedDose(
            administered_on=row.claimed_date,
            vaccine=row.claimed_vaccine,
            site=row.claimed_site,
            lot=row.claimed_lot,
        ),
        workplace=row.workplace,
        contact_phone=row.contact_phone,
        channel=row.channel,
        channel_address=row.channel_address,
        language=row.language,
        status=CaseStatus(row.status),
        site_code=row.site_code,
        due_on=row.due_on,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        description=row.description,
        resolution_note=row.resolution_note,
        resolved_at=as_utc(row.resolved_at) if row.resolved_at else None,
        attachments=tuple(
            Attachment(
                id=str(a.id),
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                storage_path=a.storage_path,
                added_at=as_utc(a.added_at),
            )
            for a in sorted(attachments, key=lambda a: a.id)
        ),
        history=tuple(
            CaseEvent(at=as_utc(e.at), actor=e.actor, action=e.action, note=e.note)
            for e in sorted(events, key=lambda e: e.id)
        ),
        joined=joined,
    )
