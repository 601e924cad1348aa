"""The certificate: a link by SMS to the registered phone (SMS, USSD), the QR image itself on
Telegram and WhatsApp (with the certificate code in the caption); and the short certificate code by SMS
(`MA`, or "certificate code" offered on USSD after menu 2 sent the link)."""

from __future__ import annotations

from certificates.dose_series import read_series
from conversations.context import Context
from conversations.flows.status import product_name
from conversations.model import Certificate, Channel, Reply
from conversations.ports import CertificateCodePort
from conversations.text import ddmmyyyy
from outbox.store import OutboundMessage
from registry_client.identity import mask_phone
from registry_client.models import Dose, Person

NAME = "certificate"
OFFER_CODE = "1"


async def _holder_with_doses(ctx: Context) -> tuple[Person, list[Dose]] | None:
    """The logged-in person and their doses; None (after saying so) when no dose is on record."""
    assert ctx.state.person_id is not None
    person = await ctx.person(ctx.state.person_id)
    doses = await ctx.registry.list_doses(person.id)
    if not doses:
        ctx.say("cert.no_doses")
        ctx.finish()
        return None
    return person, doses


async def begin(ctx: Context) -> None:
    found = await _holder_with_doses(ctx)
    if found is None:
        return
    person, doses = found
    certificates = ctx.services.certificates
    if certificates is None:
        ctx.say("cert.unavailable")
        ctx.finish()
        return
    link = certificates.make_link(person.id, ctx.lang)
    if ctx.channel in (Channel.TELEGRAM, Channel.WHATSAPP):  # the QR image itself, in the chat
        issued = await certificates.issue(person, doses)
        caption = ctx.t(
            "cert.caption",
            name=person.full_name,
            dob=ddmmyyyy(person.date_of_birth),
            valid_until=ddmmyyyy(issued.expires_at.date()),
            doses="; ".join(
                ctx.t(
                    "cert.caption_dose",
                    number=c.ordinal,
                    product=product_name(c.dose.product),
                    date=ddmmyyyy(c.dose.administered_on),
                )
                for c in read_series(doses).counted  # numbered by the rule the QR follows
            ),
        )
        if isinstance(certificates, CertificateCodePort):
            code = await certificates.code_for(person, doses)
            caption += "\n" + ctx.t("cert.caption_code", code=code)
        ctx.turn.replies.append(
            Reply(
                caption, certificate=Certificate(png=issued.png, hc1=issued.hc1, link=link, caption=caption)
            )
        )
        ctx.audit("certificate.issue", person.id, f"{ctx.channel.value} {issued.uvci}")
        ctx.finish()
        return
    phone = person.registered_phone
    if phone is None:
        ctx.say("cert.no_phone")
        ctx.finish()
        return
    ctx.send(
        OutboundMessage(
            channel="sms",
            address=phone,
            kind="link",
            template="sms.cert_link",
            params={"name": person.full_name, "link": link, "days": ctx.config.cert_link_ttl_days},
            language=ctx.lang,
        )
    )
    ctx.audit("certificate.link", person.id, f"sms to {mask_phone(phone)}")
    if ctx.channel.keypad and isinstance(certificates, CertificateCodePort):
        ctx.start_flow(NAME, "offer_code")  # no data: a dropped session is not offered for resumption
        await prompt(ctx, "offer_code")  # the link is on its way; the code too, if wanted
        return
    ctx.say("cert.sent", phone=mask_phone(phone))
    ctx.finish(end=True)


async def prompt(ctx: Context, step: str) -> None:
    assert ctx.state.person_id is not None
    phone = (await ctx.person(ctx.state.person_id)).registered_phone
    ctx.ask(
        ctx.t("cert.sent", phone=mask_phone(phone) if phone else ""),
        [(OFFER_CODE, ctx.t("cert.offer_code")), ("0", ctx.t("common.menu"))],
        back=False,
    )


async def handle(ctx: Context, step: str, text: str) -> None:
    from conversations.flows import menu

    ctx.state.clear_flow()
    if text.strip() == OFFER_CODE:
        await begin_code(ctx)
    else:
        await menu.choose(ctx, text)


async def begin_code(ctx: Context) -> None:
    """`MA`/`CODE`: the certificate code by SMS to the registered phone."""
    found = await _holder_with_doses(ctx)
    if found is None:
        return
    person, doses = found
    certificates = ctx.services.certificates
    if not isinstance(certificates, CertificateCodePort):
        ctx.say("cert.unavailable")
        ctx.finish()
        return
    phone = person.registered_phone
    if phone is None:
        ctx.say("cert.no_phone")
        ctx.finish()
        return
    code = await certificates.code_for(person, doses)
    ctx.send(
        OutboundMessage(
            channel="sms",
            address=phone,
            kind="code",
            template="sms.cert_code",
            params={"name": person.full_name, "code": code},
            language=ctx.lang,
        )
    )
    ctx.audit("certificate.code", person.id, f"sms to {mask_phone(phone)}")
    ctx.say("cert.code_sent", phone=mask_phone(phone))
    ctx.finish(end=True)
