"""When two records of a dose are the same, and which open correction case a recorded dose closes.

One source of truth for these rules: EmbeddedRegistry uses them one dose at a time, the bulk
dose import (registry_client.embedded.importer) uses them batch by batch in SQL.
"""

from __future__ import annotations

from datetime import date

from registry_client.models import OPEN_STATUSES, DosesConcerned

DoseData = tuple[str, date, str, str | None]

# The case statuses a recorded dose can close, as stored in correction_cases.status.
OPEN_STATUS_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in OPEN_STATUSES))


def dose_data(product_code: str, administered_on: date, site_code: str, lot: str | None) -> DoseData:
    """What must agree for a dose record to be "the same dose again" (an empty lot is no lot)."""
    return (product_code, administered_on, site_code, lot or None)


def differing_fields(stored: DoseData, incoming: DoseData) -> list[str]:
    """Names of the fields (import column names) in which two dose records disagree."""
    names = ("vaccine", "administered_on", "site_code", "lot")
    return [name for name, a, b in zip(names, stored, incoming, strict=True) if a != b]


def case_closed_by_dose(status: str, doses_concerned: str | None, dose_number: int) -> bool:
    """True when a case in `status` about `doses_concerned` is answered by recording `dose_number`."""
    if status not in OPEN_STATUS_VALUES or not doses_concerned:
        return False
    return dose_number in DosesConcerned(doses_concerned).dose_numbers()


def import_resolution_note(dose_number: int) -> str:
    """The resolution note of a case approved because an import brought its dose."""
    return f"dose {dose_number} found in an import"
