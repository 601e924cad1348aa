"""Checking a report: by reference (`KQ PA-7K3D-9Q`), or the person's open reports. A report is
shown only to the channel identity it came from or to someone bound to its person."""

from __future__ import annotations

from conversations.context import Context
from conversations.flows.report import site_name
from conversations.model import Channel
from conversations.text import ddmmyyyy
from registry_client.errors import RecordNotFound
from registry_client.models import OPEN_STATUSES, CaseStatus, CorrectionCase, CorrectionQuery
from registry_client.refs import parse_case_ref
from registry_client.resilience import reset_stale_marker, served_stale_age

NAME = "check"
# A voice caller types a reference on the keypad: each letter by its key (A, B, C → 2 …)
_KEYPAD = {
    c: d
    for d, letters in {
        "2": "ABC",
        "3": "DEF",
        "4": "GHI",
        "5": "JKL",
        "6": "MNO",
        "7": "PQRS",
        "8": "TUV",
        "9": "WXYZ",
    }.items()
    for c in letters
}


def keypad_digits(ref: str) -> str:
    """`PA-CKGA-RP` → `72254277` (P→7, A→2, C→2, K→5, G→4, A→2, R→7, P→7)."""
    return "".join(_KEYPAD.get(c, c) for c in ref.upper() if c.isalnum())


def _ask_ref_key(ctx: Context) -> str:
    return "check.ask_ref_keypad" if ctx.channel == Channel.VOICE else "check.ask_ref"


async def begin(ctx: Context, argument: str | None) -> None:
    """With a reference: its state. Without: the open reports of the person when one is bound
    (USSD menu 4), else ask for a reference."""
    if argument:
        await show_ref(ctx, argument)
        return
    bound = await ctx.bound_persons()
    if ctx.state.person_id in bound or len(bound) == 1:
        from conversations.flows.run import with_person

        await with_person(ctx, "check")
        return
    ctx.start_flow(NAME, "ref")
    await prompt(ctx, "ref")


def _with_age(ctx: Context, text: str) -> str:
    """A state read from the cache while the registry is down says how old it is."""
    age = served_stale_age()
    return text if age is None else text + "\n" + ctx.t("common.stale", minutes=max(1, round(age / 60)))


async def begin_for_person(ctx: Context) -> None:
    assert ctx.state.person_id is not None
    reset_stale_marker()
    cases = await ctx.registry.list_corrections(
        CorrectionQuery(statuses=frozenset(OPEN_STATUSES), person_id=ctx.state.person_id, limit=10)
    )
    ctx.audit("case.list", ctx.state.person_id)
    ctx.start_flow(NAME, "ref")
    lines = [ctx.t("check.list_title")] if cases else [ctx.t("check.none_open")]
    for case in cases:
        lines.append(await _describe(ctx, case))
    lines.append(ctx.t(_ask_ref_key(ctx)))
    ctx.ask(_with_age(ctx, "\n".join(lines)))


async def prompt(ctx: Context, step: str) -> None:
    ctx.ask(ctx.t(_ask_ref_key(ctx)))


async def handle(ctx: Context, step: str, text: str) -> None:
    await show_ref(ctx, text)


async def _ref_by_keypad(ctx: Context, typed: str) -> str | None:
    """The reference of one of the caller's own reports whose keypad digits were typed (with or
    without the `PA` prefix); never a lookup among other people's reports."""
    digits = "".join(c for c in typed if c.isdigit())
    if len(digits) < 6:
        return None
    for person_id in await ctx.bound_persons():
        for case in await ctx.registry.list_corrections(CorrectionQuery(person_id=person_id, limit=50)):
            full = keypad_digits(case.ref)
            if digits in (full, full[2:]):
                return case.ref
    return None


async def show_ref(ctx: Context, text: str) -> None:
    ref = parse_case_ref(text)
    if ref is None and ctx.channel == Channel.VOICE:
        ref = await _ref_by_keypad(ctx, text)
    if ref is None:
        ctx.start_flow(NAME, "ref")
        ctx.ask(ctx.t("check.bad_ref"))
        return
    reset_stale_marker()
    try:
        case = await ctx.registry.get_correction(ref)
    except RecordNotFound:
        case = None
    if case is None or not await _may_see(ctx, case):
        ctx.say("check.not_found", ref=ref)
        ctx.finish()
        return
    ctx.audit("case.view", case.person_id, case.ref)
    ctx.ask(_with_age(ctx, await _describe(ctx, case)), back=False)
    ctx.finish()


async def _may_see(ctx: Context, case: CorrectionCase) -> bool:
    if case.person_id is not None:
        # About a person on record: its outcome is theirs, seen from their registered phone or an
        # identity bound to them — not from a number the record no longer holds, nor a typed contact.
        if case.person_id in await ctx.bound_persons():
            return True
        try:
            person = await ctx.person(case.person_id)
        except RecordNotFound:
            return False
        return ctx.caller_phone is not None and ctx.caller_phone == person.registered_phone
    if case.channel == ctx.channel.value and case.channel_address == ctx.address:
        return True
    if ctx.caller_phone is not None and ctx.caller_phone in (case.contact_phone, case.channel_address):
        return True
    return case.person_id is not None and case.person_id in await ctx.bound_persons()


async def _describe(ctx: Context, case: CorrectionCase) -> str:
    due = ddmmyyyy(case.due_on)
    if case.queued:
        return ctx.t("check.queued", ref=case.ref)
    if case.status == CaseStatus.APPROVED:
        when = case.resolved_at.date() if case.resolved_at else case.updated_at.date()
        return ctx.t("check.approved", ref=case.ref, date=ddmmyyyy(when))
    if case.status == CaseStatus.REJECTED:
        return ctx.t("check.rejected", ref=case.ref, note=case.resolution_note or "")
    if case.site_code is None:
        return ctx.t("check.open_hotline", ref=case.ref, due=due)
    key = "check.in_review" if case.status == CaseStatus.IN_REVIEW else "check.open"
    return ctx.t(key, ref=case.ref, site=await site_name(ctx, case.site_code), due=due)
