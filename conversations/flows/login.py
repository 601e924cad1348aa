"""Login: national ID → date of birth → a one-time code to the phone the registry holds for that
person → the code. Nothing about the person is shown before the code is right; the plain "no
record" answer is itself rate-limited per caller."""

from __future__ import annotations

from datetime import date, timedelta

from conversations.context import Context
from conversations.model import Channel
from conversations.otp import looks_like_code
from outbox.store import OutboundMessage
from registry_client.errors import RecordNotFound
from registry_client.identity import mask_phone, normalize_national_id, normalize_phone, parse_ddmmyyyy
from registry_client.models import Person

NAME = "login"
NOT_FOUND_LIMIT = 5
NOT_FOUND_WINDOW = timedelta(minutes=15)
# Per national ID, whoever asks: guessing someone's date of birth from many phones stays slow.
ID_MISS_LIMIT = 10
ID_MISS_WINDOW = timedelta(hours=1)
RESEND = "1"


def _not_found_key(ctx: Context) -> str:
    return f"notfound:{ctx.channel.value}:{ctx.address}"


def _id_miss_key(national_id: str) -> str:
    return f"notfound-id:{national_id}"


async def begin(ctx: Context, then: str | None) -> None:
    ctx.start_flow(NAME, "id", then=then)
    await prompt(ctx, "id")


async def begin_with_argument(ctx: Context, argument: str | None) -> None:
    """SMS `DK <ID> <DDMMYYYY>`; without both parts, the step-by-step login."""
    parts = (argument or "").split()
    if len(parts) >= 2:
        national_id = normalize_national_id("".join(parts[:-1]))
        born = parse_ddmmyyyy(parts[-1])
        if national_id and born:
            ctx.start_flow(NAME, "dob", then=None, national_id=national_id)
            await _lookup(ctx, national_id, born)
            return
        ctx.say("login.sms_usage")
        return
    await begin(ctx, None)


async def begin_enter_code(ctx: Context) -> None:
    ctx.start_flow(NAME, "code", then=None)
    await prompt(ctx, "code")


async def begin_by_phone(ctx: Context, phone_text: str) -> None:
    """Telegram: the user shared their own number; a code goes to it when the registry holds it."""
    phone = normalize_phone(phone_text)
    count, blocked = await ctx.services.counters.read(_not_found_key(ctx), NOT_FOUND_WINDOW)
    if blocked:
        ctx.say("login.not_found_limited", minutes=max(1, blocked // 60))
        ctx.finish()
        return
    persons = await ctx.registry.find_persons_by_phone(phone) if phone else []
    holders = [p for p in persons if p.registered_phone == phone]
    if not holders or phone is None:
        _count_not_found(ctx, count)
        ctx.say("login.phone_not_found")
        await begin(ctx, None)
        return
    ctx.start_flow(NAME, "code", then=None, by_phone=phone)
    await _send_code(ctx, holders[0], phone, sent_key="login.phone_code_sent")


async def prompt(ctx: Context, step: str) -> None:
    if step == "id":  # Telegram also offers "share my phone number"
        ctx.ask(ctx.t("login.ask_id"), back=True, ask_contact=ctx.channel == Channel.TELEGRAM)
    elif step == "dob":
        ctx.ask(ctx.t("login.ask_dob"))
    else:
        ctx.ask(ctx.t("login.ask_code"), [(RESEND, ctx.t("login.resend"))])


async def handle(ctx: Context, step: str, text: str) -> None:
    if step == "id":
        national_id = normalize_national_id(text)
        if national_id is None:
            ctx.ask(ctx.t("login.bad_id"))
            return
        ctx.state.data["national_id"] = national_id
        ctx.advance("dob")
        await prompt(ctx, "dob")
    elif step == "dob":
        born = parse_ddmmyyyy(text)
        if born is None:
            ctx.ask(ctx.t("login.bad_dob"))
            return
        await _lookup(ctx, ctx.state.data["national_id"], born)
    elif text.strip() == RESEND:
        await _resend(ctx)
    elif looks_like_code(text):
        await enter_code(ctx, text)
    else:
        ctx.ask(ctx.t("login.ask_code"), [(RESEND, ctx.t("login.resend"))])


def _count_not_found(ctx: Context, count: int) -> None:
    ctx.effect(
        ctx.services.counters.hit(
            _not_found_key(ctx), limit=NOT_FOUND_LIMIT, window=NOT_FOUND_WINDOW, block=NOT_FOUND_WINDOW
        )
    )


async def _lookup(ctx: Context, national_id: str, born: date) -> None:
    counters = ctx.services.counters
    count, blocked = await counters.read(_not_found_key(ctx), NOT_FOUND_WINDOW)
    if not blocked:  # this ID had too many wrong dates of birth lately, from any caller
        blocked = (await counters.read(_id_miss_key(national_id), ID_MISS_WINDOW))[1]
    if blocked:
        ctx.say("login.not_found_limited", minutes=max(1, -(-blocked // 60)))
        ctx.finish()
        return
    try:
        person = await ctx.registry.find_person(national_id, born)
    except RecordNotFound:
        _count_not_found(ctx, count)
        ctx.effect(
            counters.hit(
                _id_miss_key(national_id), limit=ID_MISS_LIMIT, window=ID_MISS_WINDOW, block=ID_MISS_WINDOW
            )
        )
        if count + 1 >= NOT_FOUND_LIMIT:
            ctx.say("login.not_found_limited", minutes=int(NOT_FOUND_WINDOW.total_seconds() // 60))
            ctx.finish()
            return
        ctx.state.data.pop("national_id", None)
        ctx.state.step, ctx.state.back = "id", []
        ctx.ask(ctx.t("login.not_found"))
        return
    phone = person.registered_phone
    if phone is None:
        ctx.say("login.no_phone")
        ctx.finish()
        return
    ctx.state.step, ctx.state.back = "code", []
    await _send_code(ctx, person, phone)


async def _send_code(ctx: Context, person: Person, phone: str, *, sent_key: str = "login.code_sent") -> None:
    otp = ctx.services.otp
    refusal = await otp.refusal(person.id, phone)
    if refusal is not None:
        ctx.say(refusal.key, **refusal.params)
        if refusal.key == "login.resend_wait" and await otp.has_live_code(ctx.channel, ctx.address):
            ctx.state.flow, ctx.state.step = NAME, "code"
            ctx.ask(ctx.t("login.ask_code"), [(RESEND, ctx.t("login.resend"))])
        else:
            ctx.finish()
        return
    code, effect = otp.issue(person.id, phone, ctx.channel.value, ctx.address)
    ctx.effect(effect)
    ctx.state.code_until = (ctx.services.clock() + otp.ttl).isoformat()
    ctx.send(
        OutboundMessage(
            channel="sms",
            address=phone,
            kind="otp",
            template="sms.otp",
            params={"code": code, "minutes": max(1, ctx.config.otp_ttl_seconds // 60)},
            language=ctx.lang,
        )
    )
    ctx.audit("login.code_sent", person.id, f"to {phone[:3]}…{phone[-2:]}")
    ctx.state.flow, ctx.state.step = NAME, "code"
    ctx.ask(ctx.t(sent_key), [(RESEND, ctx.t("login.resend"))])


async def _resend(ctx: Context) -> None:
    challenge = await ctx.services.otp.pending_for(ctx.channel.value, ctx.address)
    if challenge is None:
        ctx.say("login.no_pending")
        await begin(ctx, ctx.state.data.get("then"))
        return
    person = await ctx.person(challenge.person_id)
    phone = person.registered_phone if challenge.phone != ctx.state.data.get("by_phone") else challenge.phone
    if phone is None:
        ctx.say("login.no_phone")
        ctx.finish()
        return
    await _send_code(ctx, person, phone)


async def enter_code(ctx: Context, text: str) -> None:
    """A typed code: from the code step, the menu's "enter code", or a bare 6 digits by SMS."""
    from conversations.flows.run import start_target, with_person

    otp = ctx.services.otp
    challenge = await otp.pending_for(ctx.channel.value, ctx.address)
    if challenge is None:
        ctx.say("login.no_pending")
        ctx.finish()
        return
    result = await otp.check(challenge, text)
    ctx.effect(*result.effects)
    if result.outcome == "wrong":
        ctx.state.flow, ctx.state.step = NAME, "code"
        ctx.ask(ctx.t("login.bad_code", left=result.left), [(RESEND, ctx.t("login.resend"))])
        return
    if result.outcome == "expired":
        ctx.state.flow, ctx.state.step = NAME, "code"
        ctx.ask(ctx.t("login.code_expired"), [(RESEND, ctx.t("login.resend"))])
        return
    if result.outcome == "locked":
        ctx.state.code_until = None
        ctx.say("login.locked", minutes=15)
        ctx.finish()
        return
    ctx.code_settled = True
    ctx.state.code_until = None
    then = ctx.state.data.get("then")
    by_phone = ctx.state.data.get("by_phone")
    person = await ctx.person(challenge.person_id)
    bound = [person.id]
    bindings = ctx.services.bindings
    ctx.effect(bindings.bind_effect(ctx.channel.value, ctx.address, person.id))
    if challenge.phone in (ctx.caller_phone, by_phone):
        # The code reached this very phone: it also proves the caller holds the number of everyone
        # registered on it (a family phone). Bind them all; a picker follows.
        for other in await ctx.registry.find_persons_by_phone(challenge.phone):
            if other.id != person.id and other.registered_phone == challenge.phone:
                ctx.effect(bindings.bind_effect(ctx.channel.value, ctx.address, other.id))
                bound.append(other.id)
    ctx.audit("login.verified", person.id, f"{ctx.channel.value} binding")
    if by_phone:
        ctx.say("login.phone_verified", phone=mask_phone(by_phone))
    else:
        ctx.say("login.success", name=person.full_name)
    ctx.forget_bound_cache()
    ctx.note_bound(bound + [p for p in await ctx.bound_persons() if p not in bound])
    if by_phone and len(bound) > 1:
        ctx.state.person_id = None
        await with_person(ctx, then)
        return
    ctx.state.person_id = person.id
    await start_target(ctx, then)


def answers_code_anywhere(ctx: Context, text: str) -> bool:
    """A bare 6-digit message outside a flow is a code (SMS users just reply with it)."""
    return ctx.channel != Channel.USSD and looks_like_code(text)
