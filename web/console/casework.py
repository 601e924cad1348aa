"""Resolving correction reports: approve (dose recorded, certificate reissued, citizen told with the
fresh link), reject with a reason (citizen told), reassign, bulk approve. Shared by the console
pages and the JSON API, permissions included."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from certificates.dose_series import SequenceProblem, next_dose_number, problems_added_by
from certificates.protocols import DoseLike
from registry_client.errors import InvalidRequest
from registry_client.models import (
    AuditEntry,
    CaseKind,
    CaseStatus,
    CorrectionCase,
    Decision,
    DosesConcerned,
    DoseSource,
    NewDose,
    Resolution,
)
from registry_client.vaccines import lookup_product
from web.console.access import Denied, can_reassign_case, can_resolve_case, require_case_view
from web.console.hotline import InputProblem, parse_date_of_birth
from web.console.notifications import site_audience
from web.console.users import ConsoleUser

log = logging.getLogger(__name__)

DOSE_KINDS = (CaseKind.MISSING_DOSE, CaseKind.WRONG_DOSE)


@dataclass(frozen=True)
class DoseInput:
    dose_number: str | int | None
    vaccine: str | None
    lot: str | None
    administered_on: str | date | None
    site_code: str | None


class SequenceNeedsOverride(Exception):
    """The dose would leave a gap, reuse a number or date, or come before its predecessor
    (certificates.dose_series); approving it anyway takes an explicit reason."""

    def __init__(self, problems: tuple[SequenceProblem, ...], dose: NewDose) -> None:
        super().__init__("; ".join(p.describe() for p in problems))
        self.problems = problems
        self.dose = dose


MIN_OVERRIDE_REASON = 5


@dataclass(frozen=True)
class Outcome:
    case: CorrectionCase
    citizen_told: bool
    certificate_reissued: bool


def parse_dose(given: DoseInput, actor: str, today: date) -> NewDose:
    """The dose an agent typed; `today` is the service's day (a dose cannot be in the future)."""
    try:
        number = int(str(given.dose_number).strip())
    except (TypeError, ValueError):
        raise InputProblem("bad_dose_number") from None
    if not 1 <= number <= 9:
        raise InputProblem("bad_dose_number")
    product = lookup_product((given.vaccine or "").strip())
    if product is None:
        raise InputProblem("bad_vaccine")
    when = given.administered_on
    if not isinstance(when, date):
        when = parse_date_of_birth(when)
    if when is None or when > today or when.year < 2020:
        raise InputProblem("bad_dose_date")
    site_code = (given.site_code or "").strip().upper()
    if not site_code:
        raise InputProblem("bad_site")
    lot = (given.lot or "").strip()[:40] or None
    return NewDose(
        number, product.code, when, site_code, lot, source=DoseSource.CORRECTION, recorded_by=actor
    )


async def load_case(console: Any, user: ConsoleUser, ref: str) -> CorrectionCase:
    case = await console.registry.get_correction(ref.strip().upper())
    require_case_view(user, case)
    return case


async def _close_the_loop(console: Any, case: CorrectionCase, dose_recorded: bool) -> tuple[bool, bool]:
    reissued, link, person = False, None, None
    doses: list[Any] = []
    if case.status.value == Decision.APPROVED.value and case.person_id is not None:
        person = await console.registry.get_person(case.person_id)
        doses = await console.registry.list_doses(case.person_id)
        if dose_recorded and doses:
            try:
                reissued = await console.citizen.reissue_certificate(person, doses)
            except Exception:  # the registry is updated; the certificate can be issued later
                log.exception("certificate reissue failed for report %s", case.ref)
        if doses:
            link = await console.citizen.certificate_link(person.id, case.language or "vi")
    told = False
    try:
        told = await console.citizen.case_resolved(case, link)
    except Exception:
        log.exception("could not tell the citizen about report %s", case.ref)
    if reissued and person is not None:  # a certificate-code user gets the new code (issue 9)
        try:
            await console.citizen.renew_code_if_used(person, doses, "console:case-approval", case.language)
        except Exception:
            log.exception("could not send the new certificate code for report %s", case.ref)
    return told, reissued


REVIEWABLE = (CaseStatus.RECEIVED, CaseStatus.ROUTED)


def can_start_review(user: ConsoleUser, case: CorrectionCase) -> bool:
    return case.status in REVIEWABLE and can_resolve_case(user, case)


async def start_review(console: Any, user: ConsoleUser, ref: str) -> CorrectionCase:
    """Marks a report "in review" (a POST by someone who may resolve it; opening it changes nothing)."""
    case = await load_case(console, user, ref)
    if not can_resolve_case(user, case):
        raise Denied("cannot_resolve")
    if case.status not in REVIEWABLE:
        raise InvalidRequest("already_in_review" if case.is_open else "already_closed")
    reviewed: CorrectionCase = await console.registry.mark_in_review(case.ref, user.actor)
    await console.registry.audit(AuditEntry(user.actor, "case.start_review", case.person_id, case.ref))
    return reviewed


async def _sequence_check(
    console: Any, user: ConsoleUser, case: CorrectionCase, new_dose: NewDose, override: str | None
) -> str | None:
    """Problems the dose brings into the record: refused without an override reason; with one,
    audited and written into the resolution note (shown on the case). Answers the note's addition."""
    if case.person_id is None:
        return None
    existing = await console.registry.list_doses(case.person_id)
    problems = problems_added_by(existing, new_dose, replaces_same_number=case.kind == CaseKind.WRONG_DOSE)
    if not problems:
        return None
    reason = " ".join((override or "").split())[:500]
    if len(reason) < MIN_OVERRIDE_REASON:
        if override:
            raise InputProblem("override_reason_short")
        raise SequenceNeedsOverride(problems, new_dose)
    described = "; ".join(p.describe() for p in problems)
    await console.registry.audit(
        AuditEntry(
            user.actor, "dose.sequence_override", case.person_id, f"{case.ref}: {described}; reason: {reason}"
        )
    )
    return f"Sequence override ({described}): {reason}"


async def approve(
    console: Any,
    user: ConsoleUser,
    ref: str,
    dose: DoseInput | None,
    note: str,
    override: str | None = None,
) -> Outcome:
    """Approves a report. A dose that breaks the sequence raises SequenceNeedsOverride unless
    `override` gives the reason (a few words at least), which is audited and kept on the case."""
    case = await load_case(console, user, ref)
    if not can_resolve_case(user, case):
        raise Denied("cannot_resolve")
    if not case.is_open:
        raise InvalidRequest("already_closed")
    new_dose = parse_dose(dose, user.actor, console.today()) if dose is not None else None
    if new_dose is None and case.kind in DOSE_KINDS:
        raise InputProblem("dose_required")
    note = (note or "").strip()[:1000]
    if new_dose is not None:
        overridden = await _sequence_check(console, user, case, new_dose, override)
        if overridden:
            note = f"{note}\n{overridden}" if note else overridden
    resolved = await console.registry.resolve_correction(
        case.ref, Resolution(Decision.APPROVED, note, user.actor, new_dose)
    )
    detail = f"{case.ref}" + (
        f"; dose {new_dose.dose_number} {new_dose.product} {new_dose.administered_on}" if new_dose else ""
    )
    await console.registry.audit(AuditEntry(user.actor, "case.approve", case.person_id, detail))
    told, reissued = await _close_the_loop(console, resolved, new_dose is not None)
    return Outcome(resolved, told, reissued)


async def reject(console: Any, user: ConsoleUser, ref: str, reason: str) -> Outcome:
    case = await load_case(console, user, ref)
    if not can_resolve_case(user, case):
        raise Denied("cannot_resolve")
    if not case.is_open:
        raise InvalidRequest("already_closed")
    reason = (reason or "").strip()[:1000]
    if len(reason) < 3:
        raise InputProblem("reason_required")
    resolved = await console.registry.resolve_correction(
        case.ref, Resolution(Decision.REJECTED, reason, user.actor)
    )
    await console.registry.audit(
        AuditEntry(user.actor, "case.reject", case.person_id, f"{case.ref}; {reason[:200]}")
    )
    told, _ = await _close_the_loop(console, resolved, False)
    return Outcome(resolved, told, False)


async def reassign(console: Any, user: ConsoleUser, ref: str, target: str, note: str) -> CorrectionCase:
    case = await load_case(console, user, ref)
    if not can_reassign_case(user, case):
        raise Denied("forbidden")
    if not case.is_open:
        raise InvalidRequest("already_closed")
    target = (target or "").strip()
    site_code = None if target.lower() in ("", "hotline") else target.upper()
    if site_code == case.site_code:
        raise InputProblem("same_queue")
    moved = await console.registry.reassign_correction(
        case.ref, site_code, user.actor, (note or "").strip()[:500]
    )
    await console.registry.audit(
        AuditEntry(
            user.actor,
            "case.reassign",
            case.person_id,
            f"{case.ref}: {case.site_code or 'hotline'} -> {site_code or 'hotline'}",
        )
    )
    await console.notifications.add(
        [site_audience(site_code)],
        "reassigned",
        case.ref,
        f"{case.site_code or 'hotline'} → {site_code or 'hotline'} ({user.actor})",
    )
    return moved


@dataclass(frozen=True)
class BulkItem:
    ref: str
    approved: bool
    reason: str | None  # i18n key when not approved


def _dose_number(case: CorrectionCase) -> int | None:
    if case.doses_concerned is None or case.doses_concerned == DosesConcerned.BOTH:
        return None
    return case.doses_concerned.dose_numbers()[0]


def suggested_dose_number(case: CorrectionCase, doses: Sequence[DoseLike]) -> int | str:
    """What the approval form proposes: a booster is the next number on record (never a number
    that leaves a gap); dose 1 or 2 as reported; nothing for "both"."""
    if case.doses_concerned == DosesConcerned.BOOSTER:
        return next_dose_number(doses)
    number = _dose_number(case)
    return number if number is not None else ""


def batch_mismatch(case: CorrectionCase, vaccine_code: str, administered_on: date) -> str | None:
    """Why a report does not match the batch (i18n key), or None when it does."""
    if case.kind not in DOSE_KINDS:
        return "bulk_not_dose_report"
    if _dose_number(case) is None:
        return "bulk_needs_single_dose"
    if case.claimed.administered_on != administered_on:
        return "bulk_date_differs"
    claimed = lookup_product(case.claimed.vaccine or "")
    if claimed is None or claimed.code != vaccine_code:
        return "bulk_vaccine_differs"
    return None


async def bulk_approve(
    console: Any, user: ConsoleUser, refs: list[str], batch: DoseInput, note: str
) -> list[BulkItem]:
    """Approves every selected report whose claimed dose matches the batch (date and vaccine);
    the dose number comes from each report. Others are left open with the reason."""
    template = parse_dose(
        DoseInput(1, batch.vaccine, batch.lot, batch.administered_on, batch.site_code),
        user.actor,
        console.today(),
    )
    results: list[BulkItem] = []
    for ref in dict.fromkeys(r.strip().upper() for r in refs if r.strip()):
        try:
            case = await load_case(console, user, ref)
        except Denied:
            results.append(BulkItem(ref, False, "other_site"))
            continue
        if not case.is_open:
            results.append(BulkItem(ref, False, "already_closed"))
            continue
        reason = batch_mismatch(case, template.product, template.administered_on)
        if reason is not None:
            results.append(BulkItem(ref, False, reason))
            continue
        on_record = await console.registry.list_doses(case.person_id) if case.person_id else []
        dose = DoseInput(
            suggested_dose_number(case, on_record),
            template.product,
            template.lot or case.claimed.lot,
            template.administered_on,
            template.site_code,
        )
        try:
            await approve(console, user, ref, dose, note or "bulk")
        except SequenceNeedsOverride:  # a dose out of sequence is approved one by one, with a reason
            results.append(BulkItem(ref, False, "sequence_needs_override"))
            continue
        except (InvalidRequest, InputProblem, Denied) as exc:
            results.append(BulkItem(ref, False, getattr(exc, "key", None) or str(exc) or "refused"))
            continue
        results.append(BulkItem(ref, True, None))
    return results
