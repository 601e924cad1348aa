"""The one basic rule for a dose any registry backend stores (embedded SQL and FHIR alike).

Fields only: a known vaccine, a dose number 1–9, a date in the vaccination era, a site code, a
lot of sensible length. Whether the dose fits the person's series (order, gaps) is decided
elsewhere, with the person's other doses at hand.
"""

from __future__ import annotations

import dataclasses
from datetime import date

from registry_client.errors import InvalidRequest
from registry_client.models import NewDose
from registry_client.vaccines import Product, lookup_product

FIRST_DOSE_DAY = date(2020, 7, 1)  # no COVID-19 vaccine was given before (trials included)
MAX_DOSE_NUMBER = 9
MAX_LOT_LENGTH = 40


def validated_dose(new: NewDose) -> tuple[Product, NewDose]:
    """The product and the dose with its fields normalised (product code, site code and lot
    stripped, an empty lot is no lot); InvalidRequest with the reason when a field is not acceptable."""
    product = lookup_product(new.product)
    if product is None:
        raise InvalidRequest(f"unknown vaccine {new.product!r}")
    if isinstance(new.dose_number, bool) or not 1 <= new.dose_number <= MAX_DOSE_NUMBER:
        raise InvalidRequest(f"dose number must be between 1 and {MAX_DOSE_NUMBER}")
    if not isinstance(new.administered_on, date) or new.administered_on < FIRST_DOSE_DAY:
        raise InvalidRequest(f"administration date {new.administered_on} is before any COVID-19 vaccine")
    site_code = (new.site_code or "").strip()
    if not site_code:
        raise InvalidRequest("a dose needs the code of the site that gave it")
    lot = (new.lot or "").strip() or None
    if lot is not None and len(lot) > MAX_LOT_LENGTH:
        raise InvalidRequest(f"lot longer than {MAX_LOT_LENGTH} characters")
    return product, dataclasses.replace(new, product=product.code, site_code=site_code, lot=lot)
