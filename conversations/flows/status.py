"""Dose status: each dose (number, product, date, site), whether the primary series is complete,
and when the next dose is due where the product's schedule says so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from conversations.context import Context
from conversations.text import ddmmyyyy
from registry_client.identity import mask_national_id
from registry_client.models import Dose
from registry_client.resilience import reset_stale_marker, served_stale_age
from registry_client.vaccines import Product, lookup_product

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


def series_state(doses: Sequence[Dose]) -> tuple[Product | None, int, int, date | None]:
    """(product of the series, primary doses done, doses the series needs, next dose due)."""
    if not doses:
        return None, 0, 0, None
    first = min(doses, key=lambda d: d.dose_number)
    product = lookup_product(first.product)
    if product is None:
        return None, len(doses), 0, None
    primary = [d for d in doses if d.dose_number <= product.series_doses]
    done = len(primary)
    due = None
    if done < product.series_doses and product.interval_days and primary:
        latest = max(primary, key=lambda d: d.administered_on)
        due = latest.administered_on + timedelta(days=product.interval_days)
    return product, done, product.series_doses, due


async def begin(ctx: Context) -> None:
    assert ctx.state.person_id is not None
    reset_stale_marker()
    person = await ctx.person(ctx.state.person_id)
    doses = await ctx.registry.list_doses(person.id)
    ctx.audit("doses.view", person.id)
    lines = [ctx.t("status.header", name=person.full_name, national_id=mask_national_id(person.national_id))]
    if not doses:
        lines.append(ctx.t("status.no_doses"))
    product, done, total, due = series_state(doses)
    for dose in doses:
        key = "status.booster" if total and dose.dose_number > total else "status.dose"
        lines.append(
            ctx.t(
                key,
                number=dose.dose_number,
                product=product_name(dose.product),
                date=ddmmyyyy(dose.administered_on),
                site=dose.site_name,
            )
        )
    if product is not None and total:
        lines.append(
            ctx.t("status.complete") if done >= total else ctx.t("status.incomplete", done=done, total=total)
        )
        if due is not None:
            lines.append(ctx.t("status.next_due", date=ddmmyyyy(due)))
    age = served_stale_age()
    if age is not None:
        lines.append(ctx.t("common.stale", minutes=max(1, round(age / 60))))
    ctx.ask("\n".join(lines), back=False)
    ctx.finish()
