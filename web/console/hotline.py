"""What a hotline agent does for a caller: find the person, send the certificate link, file a
report on the caller's behalf, change the registered phone (effective only once the caller reads
back a code sent to the new phone). Every action is audited with the agent's name.

Nothing the agent types is ever an address for a link or an outcome: those go to the registry's
registered phone or a chat bound to the person."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import or_, select

from conversations.phone_change import Confirmation, Requested, RequestRefused
from conversations.phone_change import Outcome as ChangeOutcome
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
    chats = await console.citizen.telegram_chats(person.id, person.registered_phone)
    whatsapp = await console.citizen.bound_addresses(person.id, "whatsapp", person.registered_phone)
    messages = await recent_messages(console, list(person.current_phones), chats, whatsapp)
    await registry.audit(AuditEntry(user.actor, "person.view", person.id, None))
    return PersonOverview(person, doses, cases, messages, len(chats))


async def recent_messages(
    console: Any, phones: list[str], chats: list[str], whatsapp: Sequence[str] = (), limit: int = 10
) -> list[OutboxRow]:
    """The latest messages to the person: SMS to their phones, Telegram to their bound chats,
    WhatsApp to their bound numbers (the channel each one used is shown)."""
    if not phones and not chats and not whatsapp:
        return []
    async with console.db_sessions() as session:
        rows = await session.scalars(
            select(OutboxRow)
            .where(
                or_(
                    (OutboxRow.channel == "sms") & OutboxRow.address.in_(phones or [""]),
                    (OutboxRow.channel == "telegram") & OutboxRow.address.in_(chats or [""]),
                    (OutboxRow.channel == "whatsapp")  # what the service sent, not the chat's replies
                    & OutboxRow.address.in_(list(whatsapp) or [""])
                    & (OutboxRow.kind != "reply"),
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
    """The certificate code by SMS to the registry's phone for the person (the SMS keyword `MA`, docs/sms-keywords.md)."""
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
    registered = person.registered_phone
    if form.contact == "other":  # a call-back number for staff; no message or link goes there
        contact = normalize_phone(form.other_phone)
        if contact is None:
            raise InputProblem("bad_phone")
    else:
        contact = registered
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
            channel_address=registered or "",
            person_id=person.id,
            contact_phone=contact,
            language=form.language if form.language in ("vi", "en") else "vi",
            actor=user.actor,
            description=form.description.strip()[:2000] or None,
        )
    )
    await console.registry.audit(
        AuditEntry(
            user.actor,
            "case.filed_for_caller",
            person.id,
            f"{case.ref}; outcome to the registered phone"
            + (f" {mask_phone(registered)}" if registered else " (none on record)")
            + (f"; call-back {mask_phone(contact)}" if contact != registered else ""),
        )
    )
    return case


def _phone_changes(console: Any) -> Any:
    changes = getattr(console.app_state, "phone_changes", None)
    if changes is None:
        raise InputProblem("phone_change_unavailable")
    return changes


async def request_phone_change(
    console: Any, user: ConsoleUser, person_id: str, new_phone: str, language: str = "vi"
) -> Requested:
    """Step 1 of a phone change: a code goes by SMS to the NEW phone. Nothing changes yet."""
    person = await console.registry.get_person(person_id)
    e164 = normalize_phone(new_phone)
    if e164 is None:
        raise InputProblem("bad_phone")
    try:
        requested: Requested = await _phone_changes(console).request(person, e164, user.actor, language)
    except RequestRefused as exc:
        await console.registry.audit(
            AuditEntry(user.actor, "contact.change_refused", person.id, f"{mask_phone(e164)}: {exc.key}")
        )
        raise InputProblem(f"phone_change_{exc.key}") from None
    await console.registry.audit(
        AuditEntry(
            user.actor,
            "contact.change_requested",
            person.id,
            f"code sent to {mask_phone(e164)}; change {requested.change_id[:8]}",
        )
    )
    return requested


async def confirm_phone_change(
    console: Any, user: ConsoleUser, change_id: str, code: str, language: str = "vi"
) -> Confirmation:
    """Step 2: the code the caller reads back. Right: the new phone is the registered one, every
    binding the old phones proved ends, both numbers are told. Every try is audited."""
    changes = _phone_changes(console)
    row = await changes.pending(change_id)
    person_id = row.person_id if row is not None else None
    result: Confirmation = await changes.confirm(change_id, code, user.actor, language)
    if result.outcome == ChangeOutcome.CONFIRMED:
        detail = (
            f"change {change_id[:8]} confirmed by the code from {mask_phone(row.new_phone) if row else '?'}"
            + (f"; retired {', '.join(mask_phone(p) for p in result.retired)}" if result.retired else "")
            + f"; {len(result.ended)} binding(s) ended"
        )
        await console.registry.audit(AuditEntry(user.actor, "contact.change", person_id, detail))
    else:
        await console.registry.audit(
            AuditEntry(
                user.actor,
                "contact.change_code",
                person_id,
                f"change {change_id[:8]}: {result.outcome.value}"
                + (f", {result.left} tries left" if result.outcome == ChangeOutcome.WRONG else ""),
            )
        )
    return result


# Flash message (web/console/i18n.py key) for each outcome of a code read back.
PHONE_CHANGE_FLASH = {
    ChangeOutcome.CONFIRMED: "phone_changed",
    ChangeOutcome.WRONG: "phone_code_wrong",
    ChangeOutcome.DEAD: "phone_change_dead",
    ChangeOutcome.EXPIRED: "phone_change_expired",
    ChangeOutcome.UNKNOWN: "phone_change_dead",
    ChangeOutcome.ALREADY: "phone_changed",
    ChangeOutcome.LIMITED: "phone_change_limited",
}


@dataclass(frozen=True)
class PendingChange:
    change_id: str
    new_phone_masked: str


async def pending_phone_change(console: Any, person_id: str, change_id: str) -> PendingChange | None:
    """The open change `change_id` of this person (the person page then asks for the code)."""
    changes = getattr(console.app_state, "phone_changes", None)
    if not change_id or changes is None:
        return None
    row = await changes.pending(change_id)
    if row is None or row.person_id != person_id or row.status != "pending":
        return None
    return PendingChange(row.id, mask_phone(row.new_phone))
