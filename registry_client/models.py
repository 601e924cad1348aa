"""Domain values of the registry: the package's own types, never ORM rows.

A person is identified by national ID + date of birth. Phones are contacts with
history; they never identify anyone and changing them never touches doses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"


class DoseSource(StrEnum):
    IMPORT = "import"
    CORRECTION = "correction"
    CONSOLE = "console"


class CaseKind(StrEnum):
    MISSING_DOSE = "missing_dose"
    WRONG_DOSE = "wrong_dose"
    WRONG_PERSONAL_DATA = "wrong_personal_data"
    DUPLICATE_PERSON = "duplicate_person"
    OTHER = "other"


class DosesConcerned(StrEnum):
    FIRST = "1"
    SECOND = "2"
    BOTH = "both"
    BOOSTER = "booster"

    def dose_numbers(self) -> tuple[int, ...]:
        return {"1": (1,), "2": (2,), "both": (1, 2), "booster": (3,)}[self.value]


class CaseStatus(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self not in (CaseStatus.APPROVED, CaseStatus.REJECTED)


OPEN_STATUSES = frozenset(s for s in CaseStatus if s.is_open)


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Contact:
    phone: str  # E.164
    added_at: datetime
    removed_at: datetime | None = None
    verified: bool = False
    verified_at: datetime | None = None
    evidence: str | None = None

    @property
    def is_current(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True)
class Person:
    id: str  # the registry's opaque identifier
    national_id: str
    date_of_birth: date
    full_name: str
    sex: Sex | None
    contacts: tuple[Contact, ...] = ()

    @property
    def current_phones(self) -> tuple[str, ...]:
        return tuple(c.phone for c in self.contacts if c.is_current)

    @property
    def registered_phone(self) -> str | None:
        """The phone one-time codes and links go to: the newest current contact, verified first."""
        current = [c for c in self.contacts if c.is_current]
        if not current:
            return None
        current.sort(key=lambda c: (c.verified, c.added_at), reverse=True)
        return current[0].phone


@dataclass(frozen=True)
class Site:
    code: str
    name: str
    province: str | None = None


@dataclass(frozen=True)
class Dose:
    id: str
    person_id: str
    dose_number: int
    product: str  # EU DCC medicinal product code, see registry_client.vaccines
    lot: str | None
    administered_on: date
    site_code: str
    site_name: str
    source: DoseSource
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class NewPerson:
    national_id: str
    date_of_birth: date
    full_name: str
    sex: Sex | None
    phone: str | None = None


@dataclass(frozen=True)
class NewDose:
    dose_number: int
    product: str
    administered_on: date
    site_code: str
    lot: str | None = None
    site_name: str | None = None
    source: DoseSource = DoseSource.CONSOLE
    recorded_by: str = "system"


@dataclass(frozen=True)
class ContactChange:
    """Add a phone to a person (optionally retiring another), with the evidence of verification.

    `replace`: `add_phone` becomes the person's only current phone (the registered one) and every
    other current phone is retired — a change of the registered phone."""

    add_phone: str | None
    remove_phone: str | None
    evidence: str
    actor: str
    verified: bool = True
    replace: bool = False


@dataclass(frozen=True)
class ClaimedDose:
    administered_on: date | None = None
    vaccine: str | None = None
    site: str | None = None
    lot: str | None = None


@dataclass(frozen=True)
class Attachment:
    id: str
    filename: str
    content_type: str
    size: int
    storage_path: str
    added_at: datetime


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    size: int
    storage_path: str


@dataclass(frozen=True)
class CaseEvent:
    at: datetime
    actor: str
    action: str
    note: str | None = None


@dataclass(frozen=True)
class NewCorrection:
    kind: CaseKind
    doses_concerned: DosesConcerned | None
    claimed: ClaimedDose
    channel: str  # sms | ussd | telegram | console
    channel_address: str
    person_id: str | None = None
    claimed_national_id: str | None = None
    claimed_date_of_birth: date | None = None
    claimed_name: str | None = None
    workplace: str | None = None
    contact_phone: str | None = None
    language: str = "vi"
    actor: str = "citizen"
    attachments: tuple[NewAttachment, ...] = ()
    description: str | None = None
    ref: str | None = None  # proposed reference; makes a retried submission idempotent


@dataclass(frozen=True)
class CorrectionCase:
    ref: str
    person_id: str | None
    claimed_national_id: str | None
    claimed_date_of_birth: date | None
    claimed_name: str | None
    kind: CaseKind
    doses_concerned: DosesConcerned | None
    claimed: ClaimedDose
    workplace: str | None
    contact_phone: str | None
    channel: str
    channel_address: str
    language: str
    status: CaseStatus
    site_code: str | None  # None: the hotline queue
    due_on: date
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    resolution_note: str | None = None
    resolved_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()
    history: tuple[CaseEvent, ...] = ()
    joined: bool = False  # True when a submission joined this already-open case
    queued: bool = False  # True when the registry was down and the report waits in the durable queue

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class Resolution:
    decision: Decision
    note: str
    actor: str
    dose: NewDose | None = None


@dataclass(frozen=True)
class CorrectionQuery:
    statuses: frozenset[CaseStatus] | None = None
    site_code: str | None = None
    hotline_queue: bool = False  # only cases with no site
    person_id: str | None = None
    resolved_since: datetime | None = None
    limit: int = 200


@dataclass(frozen=True)
class AuditEntry:
    actor: str  # e.g. "sms:+8490…", "telegram:12345", "agent:lan", "site:hn001/minh"
    action: str  # e.g. "person.view", "doses.view", "case.resolve"
    person_id: str | None = None
    detail: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class CaseNotice:
    """What a citizen was told about a report, and when — for registries whose staff see it
    (FHIR: a Communication about the Task). `topics`: e.g. ("report-approved", "certificate-reissued")."""

    ref: str
    person_id: str | None
    channel: str  # the outbox channel: "sms", "telegram"
    address: str  # the phone (E.164) or chat the message goes to
    text: str  # the message as the citizen reads it, links left out
    topics: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class RegistryInfo:
    backend: str
    reachable: bool
    detail: str
    capabilities: tuple[str, ...] = field(default_factory=tuple)
