"""The one registry interface every backend implements (embedded SQL, FHIR R4).

All methods are async. Errors are the types of `registry_client.errors`.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

from registry_client.models import (
    AuditEntry,
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


@runtime_checkable
class Registry(Protocol):
    # persons
    async def find_person(self, national_id: str, date_of_birth: date) -> Person:
        """The person with that national ID and date of birth; RecordNotFound otherwise."""

    async def get_person(self, person_id: str) -> Person: ...

    async def find_persons_by_phone(self, phone: str) -> list[Person]:
        """Persons whose *current* contacts hold this E.164 phone (possibly several, possibly none)."""

    async def create_person(self, new: NewPerson, actor: str) -> Person:
        """Creates a person; Conflict when the national ID + date of birth exists already."""

    async def update_contact(self, person_id: str, change: ContactChange) -> Person:
        """Adds/retires a phone, keeping history. Never touches doses. With `change.replace` the
        added phone becomes the only current one (every other current phone is retired)."""

    # sites and doses
    async def list_sites(self) -> list[Site]: ...

    async def get_site(self, code: str) -> Site: ...

    async def upsert_site(self, site: Site) -> Site: ...

    async def list_doses(self, person_id: str) -> list[Dose]:
        """Doses ordered by dose number."""

    async def record_dose(self, person_id: str, dose: NewDose) -> Dose:
        """Records a dose. The same data again is a no-op returning the stored dose; other data under
        the same dose number raises Conflict unless dose.source is CORRECTION (which replaces it)."""

    # correction cases
    async def submit_correction(self, new: NewCorrection) -> CorrectionCase:
        """Creates a case or joins the open case on the same person and dose (then the returned
        case has joined=True). A new case goes to the site the citizen named, else to the site of
        the person's latest dose, else to the hotline queue."""

    async def get_correction(self, ref: str) -> CorrectionCase: ...

    async def list_corrections(self, query: CorrectionQuery) -> list[CorrectionCase]:
        """Cases matching the query, oldest due date first."""

    async def resolve_correction(self, ref: str, resolution: Resolution) -> CorrectionCase:
        """Approves (recording resolution.dose when given) or rejects an open case.
        InvalidRequest when the case is already closed."""

    async def reassign_correction(
        self, ref: str, site_code: str | None, actor: str, note: str
    ) -> CorrectionCase:
        """Moves an open case to another site, or to the hotline queue (site_code None)."""

    async def add_attachment(self, ref: str, attachment: NewAttachment, actor: str) -> CorrectionCase: ...

    async def mark_in_review(self, ref: str, actor: str) -> CorrectionCase: ...

    # audit and health
    async def audit(self, entry: AuditEntry) -> None: ...

    async def info(self) -> RegistryInfo: ...

    async def close(self) -> None: ...
