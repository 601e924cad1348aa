"""What a hotline agent does for a caller: find the person, send the certificate link, file a
report on the caller's behalf, record a verified phone change. Every action is audited with the
agent's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import or_, select

from outbox.tables import OutboxRow
from registry_client.errors import RecordNotFound
from registry_client.identity import (
    mask_national_id,
    mask_phone,
    normalize_national_id,
    normalize_phone,
    parse_ddmmyyyy,
    parse_iso_date,
)
from registry_client.models import (
    AuditEntry,
    CaseKind,
    ClaimedDose,
    ContactChange,
    CorrectionCase,
    CorrectionQuery,
    Dose,
    DosesConcerned,
    NewCorrection,
    Person,
)
from web.console.citizen import SentLink
from web.console.users import ConsoleUser


class InputProblem(Exception):
    """A field the agent has to correct; `key` is the i18n key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def parse_date_of_birth(text: str | None) -> date | None:
    text = (text or "").strip()
    return parse_iso_date(text) or parse_ddmmyyyy(text)


@dataclass
class SearchOutcome:
    persons: list[Person] = field(default_factory=list)
    problem: str | None = None
    searched: bool = False


async def search_persons(
    console: Any, user: ConsoleUser, national_id: str, dob: str, phone: str
) -> SearchOutcome:
    registry = console.registry
    national_id, dob, phone = (national_id or "").strip(), (dob or "").strip(), (phone or "").strip()
    if not (national_id or dob or phone):
        return SearchOutcome()
    if phone and not national_id:
        e164 = normalize_phone(phone)
        if e164 is None:
            return SearchOutcome(problem="bad_phone", searched=True)
        persons = await registry.find_persons_by_phone(e164)
        await registry.audit(
            AuditEntry(user.actor, "person.search", None, f"phone {mask_phone(e164)}: {len(persons)}")
        )
        return SearchOutcome(persons, None if persons else "no_match", True)
    nid = normalize_national_id(national_id)
    if nid is None:
        return SearchOutcome(problem="bad_national_id", searched=True)
    born = parse_date_of_birth(dob)
    if born is None:
        return SearchOutcome(problem="bad_dob", searched=True)
    try:
        person = await registry.find_person(nid, born)
    except RecordNotFound:
        await registry.audit(AuditEntry(user.actor, "person.search", None, f"id {mask_national_id(nid)}: 0"))
        return SearchOutcome(problem="no_match", searched=True)
    await registry.audit(AuditEntry(user.actor, "person.search", person.id, f"id {mask_national_id(nid)}: 1"))
    return SearchOutcome([person], None, True)


@dataclass
class PersonOverview:
    person: Person
    doses: list[Dose]
    cases: list[CorrectionCase]
    messages: list[OutboxRow]
    telegram_chats: int


async def person_overview(console: Any, user: ConsoleUser, person_id: str) -> PersonOverview:
    registry = console.registry
    person = await registry.get_person(person_id)
    doses = await registry.list_doses(person.id)
    cases = await registry.list_corrections(CorrectionQuery(person_id=person.id, limit=50))
    cases.sort(key=lambda c: (not c.is_open, c.due_on))
    chats = await console.citizen.telegram_chats(person.id)
    messages = await recent_messages(console, list(person.current_phones), chats)
    await registry.audit(AuditEntry(user.actor, "person.view", person.id, None))
    return PersonOverview(person, doses, cases, messages, len(chats))


async def recent_messages(
    console: Any, phones: list[str], chats: list[str], limit: int = 10
) -> list[OutboxRow]:
    if not phones and not chats:
        return []
    async with console.db_sessions() as session:
        rows = await session.scalars(
            select(OutboxRow)
            .where(
                or_(
                    (OutboxRow.channel == "sms") & OutboxRow.address.in_(phones or [""]),
                    (OutboxRow.channel == "telegram") & OutboxRow.address.in_(chats or [""]),
                )
            )
            .order_by(OutboxRow.id.desc())
            .limit(limit)
        )
        return list(rows.all())


async def send_link(
    console: Any, user: ConsoleUser, person_id: str, channel: str, language: str = "vi"
) -> SentLink:
    if channel not in ("sms", "telegram"):
        raise InputProblem("bad_channel")
    person = await console.registry.get_person(person_id)
    sent = await console.citizen.send_certificate_link(person, channel, user.actor, language)
    await console.registry.audit(
        AuditEntry(user.actor, "certificate.link_sent", person.id, f"{channel} to {sent.shown_address}")
    )
    return sent


async def send_code(console: Any, user: ConsoleUser, person_id: str, language: str = "vi") -> SentLink:
    """The certificate code by SMS to the registry's phone for the person (INTERFACES §7 `MA`)."""
    person = await console.registry.get_person(person_id)
    doses = await console.registry.list_doses(person.id)
    if not doses:
        raise InputProblem("no_doses")
    sent = await console.citizen.send_certificate_code(person, doses, user.actor, language)
    await console.registry.audit(
        AuditEntry(user.actor, "certificate.code_sent", person.id, f"sms to {sent.shown_address}")
    )
    return sent


@dataclass(frozen=True)
class ReportForm:
    kind: str
    doses_concerned: str
    claimed_date: str
    vaccine: str
    site: str
    lot: str
    description: str
    contact: str  # "registered" | "other"
    other_phone: str
    language: str = "vi"


async def file_report(console: Any, user: ConsoleUser, person_id: str, form: ReportForm) -> CorrectionCase:
    person = await console.registry.get_person(person_id)
    try:
        kind = CaseKind(form.kind)
    except ValueError:
        raise InputProblem("bad_kind") from None
    concerned = None
    if form.doses_concerned:
        try:
            concerned = DosesConcerned(form.doses_concerned)
        except ValueError:
            raise InputProblem("bad_doses_concerned") from None
    if kind in (CaseKind.MISSING_DOSE, CaseKind.WRONG_DOSE) and concerned is None:
        raise InputProblem("doses_concerned_required")
    claimed_date = None
    if form.claimed_date.strip():
        claimed_date = parse_date_of_birth(form.claimed_date)
        if claimed_date is None:
            raise InputProblem("bad_claimed_date")
    if form.contact == "other":
        contact = normalize_phone(form.other_phone)
        if contact is None:
            raise InputProblem("bad_phone")
    else:
        contact = person.registered_phone
        if contact is None:
            raise InputProblem("no_phone")
    case = await console.registry.submit_correction(
        NewCorrection(
            kind=kind,
            doses_concerned=concerned,
            claimed=ClaimedDose(
                claimed_date,
                form.vaccine.strip()[:100] or None,
                form.site.strip()[:200] or None,
                form.lot.strip()[:40] or None,
            ),
            channel="console",
            channel_address=contact,
            person_id=person.id,
            contact_phone=contact,
            language=form.language if form.language in ("vi", "en") else "vi",
            actor=user.actor,
            description=form.description.strip()[:2000] or None,
        )
    )
    await console.registry.audit(
        AuditEntry(
            user.actor, "case.filed_for_caller", person.id, f"{case.ref}; outcome to {mask_phone(contact)}"
        )
    )
    return case


async def change_phone(
    console: Any, user: ConsoleUser, person_id: str, new_phone: str, retire_phone: str, evidence: str
) -> Person:
    person = await console.registry.get_person(person_id)
    e164 = normalize_phone(new_phone)
    if e164 is None:
        raise InputProblem("bad_phone")
    evidence = evidence.strip()
    if len(evidence) < 3:
        raise InputProblem("evidence_required")
    retire = None
    if (
        retire_phone.strip()
    ):  # the position of the number among the current ones (the page never holds numbers)
        phones = person.current_phones
        if not retire_phone.strip().isdigit() or int(retire_phone) >= len(phones):
            raise InputProblem("bad_retire_phone")
        retire = phones[int(retire_phone)]
    updated = await console.registry.update_contact(
        person.id,
        ContactChange(
            add_phone=e164, remove_phone=retire, evidence=evidence[:300], actor=user.actor, verified=True
        ),
    )
    await console.registry.audit(
        AuditEntry(
            user.actor,
            "contact.change",
            person.id,
            f"added {mask_phone(e164)}"
            + (f", retired {mask_phone(retire)}" if retire else "")
            + f"; {evidence[:100]}",
        )
    )
    return updated
