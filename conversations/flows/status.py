"""Dose status: each dose (number, product, date, site), whether the primary series is complete,
what the record lacks, and when the next dose is due where the product's schedule says so.
What the doses prove is read from `certificates.dose_series`, the rule the certificate follows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from certificates.dose_series import SeriesReading, read_series
from conversations.context import Context
from conversations.text import ddmmyyyy
from registry_client.identity import mask_national_id
from registry_client.models import Dose
from registry_client.resilience import reset_stale_marker, served_stale_age
from registry_client.vaccines import lookup_product

# The names people in Viet Nam use for the products (shorter than the DCC display names).
COMMON_NAMES = {
    "EU/1/21/1529": "AstraZeneca",
    "EU/1/20/1528": "Pfizer",
    "EU/1/20/1507": "Moderna",
    "EU/1/20/1525": "Janssen",
    "BBIBP-CorV": "Vero Cell",
    "Sputnik-V": "Sputnik V",
}


def product_name(code: str) -> str:
    found = lookup_product(code)
    if found is None:
        return code
    return COMMON_NAMES.get(found.code, found.name)


def next_dose_due(reading: SeriesReading) -> date | None:
    """When the next primary dose is due, where the product's schedule says so."""
    latest = reading.latest
    if latest is None or reading.primary_complete:
        return None
    product = lookup_product(latest.dose.product)
    if product is None or not product.interval_days:
        return None
    return latest.dose.administered_on + timedelta(days=product.interval_days)


def status_lines(ctx: Context, doses: Sequence[Dose]) -> list[str]:
    """One line per dose as the rule counts it (certificates.dose_series), then what it proves."""
    reading = read_series(doses)
    lines = []
    for counted in reading.counted:
        dose = counted.dose
        assert isinstance(dose, Dose)
        line = ctx.t(
            "status.booster" if counted.role == "booster" else "status.dose",
            number=counted.ordinal,
            product=product_name(dose.product),
            date=ddmmyyyy(dose.administered_on),
            site=dose.site_name,
        )
        if counted.renumbered:
            line += " " + ctx.t("status.filed_as", recorded=counted.recorded_number)
        lines.append(line)
    if reading.given:
        lines.append(
            ctx.t("status.complete")
            if reading.primary_complete
            else ctx.t("status.incomplete", done=reading.primary_given, total=reading.primary_required)
        )
    if reading.missing:
        lines.append(ctx.t("status.missing", numbers=", ".join(str(n) for n in reading.missing)))
    due = next_dose_due(reading)
    if due is not None:
        lines.append(ctx.t("status.next_due", date=ddmmyyyy(due)))
    return lines


async def begin(ctx: Context) -> None:
    assert ctx.state.person_id is not None
    reset_stale_marker()
    person = await ctx.person(ctx.state.person_id)
    doses = await ctx.registry.list_doses(person.id)
    ctx.audit("doses.view", person.id)
    lines = [ctx.t("status.header", name=person.full_name, national_id=mask_national_id(person.national_id))]
    if not doses:
        lines.append(ctx.t("status.no_doses"))
    lines += status_lines(ctx, doses)
    age = served_stale_age()
    if age is not None:
        lines.append(ctx.t("common.stale", minutes=max(1, round(age / 60))))
    ctx.ask("\n".join(lines), back=False)
    ctx.finish()
