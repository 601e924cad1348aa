"""Checking someone's certificate code with their year of birth (USSD 6, SMS `KT <code> <year>`)."""

from __future__ import annotations

import re

from conversations.context import Context
from conversations.ports import CertificateCodePort
from conversations.text import ddmmyyyy

NAME = "verify"
_YEAR = re.compile(r"^(19|20)\d\d$")


async def begin(ctx: Context, argument: str | None) -> None:
    parts = (argument or "").split()
    if len(parts) >= 2 and _YEAR.match(parts[-1]):
        await _check(ctx, "".join(parts[:-1]), int(parts[-1]))
        return
    if argument:
        ctx.say("verify.sms_usage")
        return
    ctx.start_flow(NAME, "code")
    await prompt(ctx, "code")


async def prompt(ctx: Context, step: str) -> None:
    ctx.ask(ctx.t("verify.ask_code" if step == "code" else "verify.ask_year"))


async def handle(ctx: Context, step: str, text: str) -> None:
    if step == "code":
        code = "".join(text.split()).upper()
        if not code:
            await prompt(ctx, step)
            return
        ctx.state.data["code"] = code
        ctx.advance("year")
        await prompt(ctx, "year")
        return
    year = text.strip()
    if not _YEAR.match(year):
        ctx.ask(ctx.t("verify.bad_year"))
        return
    await _check(ctx, ctx.state.data["code"], int(year))


async def _check(ctx: Context, code: str, year: int) -> None:
    certificates = ctx.services.certificates
    if not isinstance(certificates, CertificateCodePort):
        ctx.say("verify.unavailable")
        ctx.finish()
        return
    result = await certificates.verify_code(code, year)
    ctx.audit("certificate.verify_code", None, "valid" if result.valid else "invalid")
    if result.valid:
        ctx.say(
            "verify.valid",
            name=result.holder_name or "",
            year=result.birth_year or year,
            doses=result.doses,
            date=ddmmyyyy(result.latest_dose_date) if result.latest_dose_date else "",
        )
    else:
        ctx.say("verify.invalid", reason=ctx.t("verify.invalid_generic"))  # reveals nothing more
    ctx.finish()
