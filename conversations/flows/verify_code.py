"""Checking someone's certificate code with their year of birth (USSD 6, SMS `KT <code> <year>`)."""

from __future__ import annotations

import re

from certificates.codes import canonical, parse_code
from conversations.context import Context
from conversations.ports import CertificateCodePort
from conversations.text import ddmmyyyy

NAME = "verify"
_YEAR = re.compile(r"^(19|20)\d\d$")
# CodeCheck.reason → catalogue key; the first three show the holder (the year matched)
_ANSWERS = {
    "valid": "verify.valid",
    "revoked": "verify.revoked",
    "expired": "verify.expired",
    "unknown": "verify.unknown",
    "check the code": "verify.check_code",
    "locked": "verify.locked",
    "too many attempts": "verify.too_many",
}
_SHOWN = ("valid", "revoked", "expired")


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
        code = canonical(text)
        if not code:
            await prompt(ctx, step)
            return
        if not parse_code(code).ok:  # the check character caught a typo: re-ask at once
            ctx.ask(ctx.t("verify.check_code_again"))
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
    result = await certificates.verify_code(code, year, caller=f"{ctx.channel.value}:{ctx.address}")
    detail = f"{canonical(code)[:4]}… {year}: {result.reason}"
    ctx.audit("certificate.verify_code", getattr(result, "person_id", None), detail)
    key = _ANSWERS.get(result.reason, "verify.unknown")
    if result.reason in _SHOWN:
        ctx.say(
            key,
            name=result.holder_name or "",
            year=result.birth_year or year,
            doses=result.doses,
            date=ddmmyyyy(result.latest_dose_date) if result.latest_dose_date else "-",
        )
    elif result.reason in ("locked", "too many attempts"):
        wait = int(getattr(result, "retry_after", 0) or 0)
        ctx.say(key, minutes=max(1, -(-wait // 60)))
    else:
        ctx.say(key)  # unknown code or wrong year: nothing more is revealed
    ctx.finish()
