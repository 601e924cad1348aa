"""Login: national ID → date of birth → a one-time code to the phone the registry holds for that
person → the code. Nothing about the person is shown before the code is right.

Every date-of-birth try takes a unit from two budgets before the registry compares it: the
caller's (NOT_FOUND_LIMIT) and the national ID's, whoever asks (ID_MISS_LIMIT); a person found
gives both back, so only misses stay counted. Every typed code is counted by `OtpService.check`,
every code sent is reserved by `OtpService.reserve_send`. The counters are atomic and written at
once, so many inputs in one USSD request, or many requests at once, get no more tries."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import TYPE_CHECKING, assert_never

from conversations.context import Context
from conversations.limits import Hit
from conversations.model import Channel
from conversations.otp import Challenge, CheckOutcome, looks_like_code
from outbox.store import OutboundMessage
from registry_client.errors import RecordNotFound
from registry_client.identity import mask_phone, normalize_national_id, normalize_phone, parse_ddmmyyyy
from registry_client.models import Person

log = logging.getLogger(__name__)

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
    """Telegram: the user shared their own number; a code goes to it when the registry holds it.
    What the user asked for before logging in (`/status` …) still follows the right code."""
    then = ctx.state.data.get("then") if ctx.state.flow == NAME else None
    phone = normalize_phone(phone_text)
    counters, key = ctx.services.counters, _not_found_key(ctx)
    caller = await _try_budget(ctx, key, NOT_FOUND_LIMIT, NOT_FOUND_WINDOW)
    if caller.was_blocked:
        _limited(ctx, caller.blocked)
        return
    persons = await ctx.registry.find_persons_by_phone(phone) if phone else []
    holders = [p for p in persons if p.registered_phone == phone]
    if not holders or phone is None:
        if blocked := await _failed(ctx, key, NOT_FOUND_LIMIT, NOT_FOUND_WINDOW):
            _limited(ctx, blocked)
            return
        ctx.say("login.phone_not_found")
        await begin(ctx, then)
        return
    await counters.give_back(key)
    ctx.start_flow(NAME, "code", then=then, by_phone=phone)
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


async def _try_budget(ctx: Context, key: str, limit: int, window: timedelta) -> Hit:
    """One unit of a date-of-birth budget, counted at once (conversations.limits)."""
    return await ctx.services.counters.spend_now(key, limit=limit, window=window)


async def _failed(ctx: Context, key: str, limit: int, window: timedelta) -> int:
    """A miss keeps its unit; the one that spends the budget blocks the key for one window."""
    return await ctx.services.counters.failed_now(key, limit=limit, block=window)


def _limited(ctx: Context, blocked_seconds: int) -> None:
    ctx.say("login.not_found_limited", minutes=max(1, -(-blocked_seconds // 60)))
    ctx.finish()


async def _lookup(ctx: Context, national_id: str, born: date) -> None:
    counters = ctx.services.counters
    caller_key, id_key = _not_found_key(ctx), _id_miss_key(national_id)
    caller = await _try_budget(ctx, caller_key, NOT_FOUND_LIMIT, NOT_FOUND_WINDOW)
    if caller.was_blocked:
        _limited(ctx, caller.blocked)
        return
    per_id = await _try_budget(ctx, id_key, ID_MISS_LIMIT, ID_MISS_WINDOW)
    if per_id.was_blocked:  # this ID had too many wrong dates of birth lately, from any caller
        await counters.give_back(caller_key)
        _limited(ctx, per_id.blocked)
        return
    try:
        person = await ctx.registry.find_person(national_id, born)
    except RecordNotFound:
        await _failed(ctx, id_key, ID_MISS_LIMIT, ID_MISS_WINDOW)  # a blocked ID shows on the next try
        if blocked := await _failed(ctx, caller_key, NOT_FOUND_LIMIT, NOT_FOUND_WINDOW):
            _limited(ctx, blocked)  # that was this caller's last try
            return
        ctx.state.data.pop("national_id", None)
        ctx.state.step, ctx.state.back = "id", []
        ctx.ask(ctx.t("login.not_found"))
        return
    except Exception:  # nothing was compared (the registry failed): the tries are not spent
        for key in (caller_key, id_key):
            await counters.give_back(key)
        raise
    for key in (caller_key, id_key):  # found: only misses stay counted
        await counters.give_back(key)
    phone = person.registered_phone
    if phone is None:
        ctx.say("login.no_phone")
        ctx.finish()
        return
    ctx.state.step, ctx.state.back = "code", []
    await _send_code(ctx, person, phone)


async def _send_code(ctx: Context, person: Person, phone: str, *, sent_key: str = "login.code_sent") -> None:
    otp = ctx.services.otp
    refusal = await otp.reserve_send(person.id, phone)
    if refusal is not None:
        waiting_here = refusal.key == "login.resend_wait" and await otp.has_live_code(
            ctx.channel, ctx.address
        )
        if refusal.key == "login.resend_wait" and not waiting_here:  # the code went to another chat
            ctx.say("login.code_wait", **refusal.params)
        else:
            ctx.say(refusal.key, **refusal.params)
        if waiting_here:
            ctx.state.flow, ctx.state.step = NAME, "code"
            ctx.ask(ctx.t("login.ask_code"), [(RESEND, ctx.t("login.resend"))])
        elif refusal.key == "login.resend_wait" and ctx.state.data.get("by_phone"):
            await begin(ctx, ctx.state.data.get("then"))  # Telegram: share the number again after the wait
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
    otp = ctx.services.otp
    challenge = await otp.pending_for(ctx.channel.value, ctx.address)
    if challenge is None:
        ctx.say("login.no_pending")
        ctx.finish()
        return
    result = await otp.check(challenge, text)
    ctx.effect(*result.effects)
    outcome = result.outcome
    match outcome:
        case CheckOutcome.OK:
            await _logged_in(ctx, challenge)
        case CheckOutcome.WRONG:
            ctx.state.flow, ctx.state.step = NAME, "code"
            ctx.ask(ctx.t("login.bad_code", left=result.left), [(RESEND, ctx.t("login.resend"))])
        case CheckOutcome.EXPIRED:
            ctx.state.flow, ctx.state.step = NAME, "code"
            ctx.ask(ctx.t("login.code_expired"), [(RESEND, ctx.t("login.resend"))])
        case CheckOutcome.LOCKED:
            ctx.state.code_until = None
            ctx.say("login.locked", minutes=15)
            ctx.finish()
        case _:
            # Not a CheckOutcome: refused, never logged in. mypy proves every member is handled
            # above (assert_never); at run time an unknown value fails closed instead of raising.
            log.error("one-time code check gave an unknown outcome %r: refused", outcome)
            ctx.state.code_until = None
            ctx.say("login.locked", minutes=15)
            ctx.finish()
            if TYPE_CHECKING:
                assert_never(outcome)


async def _logged_in(ctx: Context, challenge: Challenge) -> None:
    """The code was right: bind the caller to the person (and the family on that phone)."""
    from conversations.flows.run import start_target, with_person

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
    return not ctx.channel.keypad and looks_like_code(text)
