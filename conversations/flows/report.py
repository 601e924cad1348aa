"""Reporting a missing or wrong dose: kind → which dose → date → site → vaccine → workplace →
contact phone → confirm → `registry.submit_correction` → the reference, and how to add a photo."""

from __future__ import annotations

from conversations.context import Context
from conversations.flows.status import product_name
from conversations.model import Channel, Reply
from conversations.text import ddmmyyyy
from conversations.upload_links import make_upload_link
from outbox.store import OutboundMessage
from registry_client.errors import RecordNotFound
from registry_client.identity import mask_phone, normalize_phone, parse_ddmmyyyy
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from registry_client.routing import match_site, site_candidates
from registry_client.vaccines import lookup_product

NAME = "report"
SKIP = "9"
STEPS = ("kind", "dose", "date", "site", "vaccine", "workplace", "contact", "confirm")
KINDS = {"1": CaseKind.MISSING_DOSE, "2": CaseKind.WRONG_DOSE}
DOSES = {
    "1": DosesConcerned.FIRST,
    "2": DosesConcerned.SECOND,
    "3": DosesConcerned.BOTH,
    "4": DosesConcerned.BOOSTER,
}
DOSE_LABELS = {
    "1": "report.dose_1",
    "2": "report.dose_2",
    "both": "report.dose_both",
    "booster": "report.dose_booster",
}
VACCINES = {"1": "AstraZeneca", "2": "Pfizer", "3": "Moderna", "4": "Vero Cell"}


async def begin(ctx: Context) -> None:
    ctx.start_flow(NAME, "kind")
    await prompt(ctx, "kind")


def _contact_default(ctx: Context) -> str | None:
    return ctx.caller_phone or ctx.state.data.get("registered_phone")


async def prompt(ctx: Context, step: str) -> None:
    skip = (SKIP, ctx.t("common.skip"))
    if step == "kind":
        ctx.ask(
            ctx.t("report.ask_kind"), [("1", ctx.t("report.kind_missing")), ("2", ctx.t("report.kind_wrong"))]
        )
    elif step == "dose":
        ctx.ask(ctx.t("report.ask_dose"), [(k, ctx.t(DOSE_LABELS[v.value])) for k, v in DOSES.items()])
    elif step == "date":
        ctx.ask(ctx.t("report.ask_date"), [skip])
    elif step == "site":
        ctx.ask(ctx.t("report.ask_site"), [skip])
    elif step == "site_pick":
        picks = ctx.state.data.get("site_picks", [])
        options = [(str(i), name) for i, (_, name) in enumerate(picks, start=1)]
        ctx.ask(ctx.t("report.pick_site"), [*options, (SKIP, ctx.t("report.site_none_of_these"))])
    elif step == "vaccine":
        ctx.ask(ctx.t("report.ask_vaccine"), [*VACCINES.items(), (SKIP, ctx.t("report.vaccine_other"))])
    elif step == "workplace":
        ctx.ask(ctx.t("report.ask_workplace"), [skip])
    elif step == "contact":
        if "registered_phone" not in ctx.state.data and ctx.state.person_id:
            person = await ctx.person(ctx.state.person_id)
            ctx.state.data["registered_phone"] = person.registered_phone
        default = _contact_default(ctx)
        options = [("1", ctx.t("report.contact_this", phone=mask_phone(default)))] if default else []
        ctx.ask(ctx.t("report.ask_contact"), options)
    else:
        ctx.ask(ctx.t("report.confirm", **_summary(ctx)), [("1", ctx.t("report.send"))])


def _summary(ctx: Context) -> dict[str, str]:
    data = ctx.state.data
    unknown = ctx.t("report.unknown")
    kind = ctx.t(
        "report.kind_missing" if data["kind"] == CaseKind.MISSING_DOSE.value else "report.kind_wrong"
    )
    return {
        "kind": kind,
        "dose": ctx.t(DOSE_LABELS[data["dose"]]),
        "date": data.get("date_text") or unknown,
        "site": data.get("site_name") or data.get("site") or unknown,
        "vaccine": data.get("vaccine_name") or unknown,
    }


async def _next(ctx: Context, step: str) -> None:
    ctx.advance(step)
    await prompt(ctx, step)


async def handle(ctx: Context, step: str, text: str) -> None:
    answer = text.strip()
    data = ctx.state.data
    if step == "kind":
        if answer not in KINDS:
            return await _invalid(ctx, step)
        data["kind"] = KINDS[answer].value
        await _next(ctx, "dose")
    elif step == "dose":
        if answer not in DOSES:
            return await _invalid(ctx, step)
        data["dose"] = DOSES[answer].value
        await _next(ctx, "date")
    elif step == "date":
        if answer != SKIP:
            when = parse_ddmmyyyy(answer)
            if when is None or when > ctx.services.clock().date() or when.year < 2020:
                ctx.ask(ctx.t("report.bad_date"), [(SKIP, ctx.t("common.skip"))])
                return
            data["date"], data["date_text"] = when.isoformat(), ddmmyyyy(when)
        await _next(ctx, "site")
    elif step == "site":
        await _site(ctx, None if answer == SKIP or not answer else answer[:120])
    elif step == "site_pick":
        picks = data.get("site_picks", [])
        if answer == SKIP:
            data.pop("site_picks", None)  # none of these: the typed name is kept, as typed
            await _next(ctx, "vaccine")
        elif answer.isdigit() and 1 <= int(answer) <= len(picks):
            data["site"], data["site_name"] = picks[int(answer) - 1]
            data.pop("site_picks", None)
            await _next(ctx, "vaccine")
        else:
            await _invalid(ctx, step)
    elif step == "vaccine":
        await _vaccine(ctx, answer)
    elif step == "workplace":
        data["workplace"] = None if answer == SKIP or not answer else answer[:200]
        await _next(ctx, "contact")
    elif step == "contact":
        phone = _contact_default(ctx) if answer == "1" else normalize_phone(answer)
        if phone is None:
            ctx.ask(ctx.t("report.bad_phone"))
            return
        data["contact_phone"] = phone
        await _next(ctx, "confirm")
    elif answer == "1":
        await _submit(ctx)
    else:
        await _invalid(ctx, step)


async def _site(ctx: Context, typed: str | None) -> None:
    """The site named: one that matches without doubt is taken (its code routes the report); a name
    close to several sites offers the best 2–3 to pick from; anything else is kept as typed."""
    data = ctx.state.data
    data["site"], data["site_name"] = typed, None
    if typed is None:
        await _next(ctx, "vaccine")
        return
    sites = await ctx.registry.list_sites()
    site = match_site(typed, sites)
    candidates = [site] if site is not None else site_candidates(typed, sites)
    if len(candidates) == 1:
        data["site"], data["site_name"] = candidates[0].code, candidates[0].name
        await _next(ctx, "vaccine")
    elif candidates:
        data["site_picks"] = [[c.code, c.name] for c in candidates]
        await _next(ctx, "site_pick")
    else:
        await _next(ctx, "vaccine")


async def _vaccine(ctx: Context, answer: str) -> None:
    data = ctx.state.data
    if answer in VACCINES:
        product = lookup_product(VACCINES[answer])
    elif answer == SKIP:
        product = None
    else:
        product = lookup_product(answer)
        if product is None and answer:
            data["vaccine"], data["vaccine_name"] = answer[:60], answer[:60]
            await _next(ctx, "workplace")
            return
    if product is not None:
        data["vaccine"], data["vaccine_name"] = product.code, product_name(product.code)
    await _next(ctx, "workplace")


async def _invalid(ctx: Context, step: str) -> None:
    ctx.say("common.invalid_choice")
    await prompt(ctx, step)


async def _submit(ctx: Context) -> None:
    from datetime import date

    assert ctx.state.person_id is not None
    data = ctx.state.data
    new = NewCorrection(
        kind=CaseKind(data["kind"]),
        doses_concerned=DosesConcerned(data["dose"]),
        claimed=ClaimedDose(
            administered_on=date.fromisoformat(data["date"]) if data.get("date") else None,
            vaccine=data.get("vaccine"),
            site=data.get("site"),
        ),
        channel=ctx.channel.value,
        channel_address=ctx.address,
        person_id=ctx.state.person_id,
        workplace=data.get("workplace"),
        contact_phone=data.get("contact_phone"),
        language=ctx.lang,
        actor=ctx.actor,
    )
    case = await ctx.registry.submit_correction(new)
    ctx.audit("case.submit", ctx.state.person_id, case.ref)
    ctx.state.last_ref = case.ref
    due = ddmmyyyy(case.due_on)
    if case.queued:
        ctx.say("report.queued", ref=case.ref)
    elif case.joined:
        ctx.say("report.joined", ref=case.ref, due=due)
    elif case.site_code is None:
        ctx.say("report.sent_hotline", ref=case.ref, due=due)
    else:
        ctx.say("report.sent", ref=case.ref, site=await site_name(ctx, case.site_code), due=due)
    _photo_instructions(ctx, case.ref)
    ctx.finish(end=True)


async def site_name(ctx: Context, code: str) -> str:
    try:
        return (await ctx.registry.get_site(code)).name
    except RecordNotFound:
        return code


def _photo_instructions(ctx: Context, ref: str) -> None:
    if ctx.channel in (Channel.TELEGRAM, Channel.WHATSAPP):  # a photo sent in the chat is attached
        ctx.say("report.photo_telegram")
        return
    phone = ctx.caller_phone
    if phone is None:
        return
    link = make_upload_link(ctx.config.public_base_url, ctx.config.upload_link_key, ref)
    ctx.send(
        OutboundMessage(
            channel="sms",
            address=phone,
            kind="upload_link",
            template="sms.upload_link",
            params={"ref": ref, "link": link},
            language=ctx.lang,
            idempotency_key=f"upload:{ref}:{phone}",
        )
    )
    ctx.say("report.photo_sms" if ctx.channel == Channel.SMS else "report.photo_ussd")
    if ctx.channel == Channel.VOICE:  # a caller who cannot type a site name can say it
        ctx.turn.replies.append(Reply(ctx.t("report.record_voice"), record_for=ref))
