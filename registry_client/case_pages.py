"""A page of a report queue: filters (status, queue, kind, due-date range, search text), an
offset and a size, and the total of matching reports — so a queue longer than a page is never cut
silently.

A backend that can filter and count where the data lives offers `page_corrections(query)` (the
embedded registry does it in SQL). For one that cannot, `page_in_memory` filters what
`list_corrections` returns, asking for enough rows that nothing is cut before filtering.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

from registry_client.models import CaseKind, CorrectionCase, CorrectionQuery

MAX_TEXT = 60
MAX_PAGE = 200
IN_MEMORY_LIMIT = 100_000  # rows a backend without paging is asked for


@dataclass(frozen=True)
class QueueQuery:
    base: CorrectionQuery  # statuses, site or hotline queue, person (its `limit` is not used)
    kind: CaseKind | None = None
    text: str = ""  # a part of the reference, name, national ID, phone, description or vaccine
    due_from: date | None = None  # inclusive
    due_to: date | None = None  # inclusive
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", " ".join(self.text.split())[:MAX_TEXT])
        object.__setattr__(self, "offset", max(0, self.offset))
        object.__setattr__(self, "limit", min(max(1, self.limit), MAX_PAGE))


@dataclass(frozen=True)
class CasePage:
    cases: list[CorrectionCase]
    total: int  # every report matching the filters, on all pages
    offset: int
    limit: int

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.cases) < self.total


def searched_fields(case: CorrectionCase) -> tuple[str | None, ...]:
    return (
        case.ref,
        case.claimed_name,
        case.claimed_national_id,
        case.contact_phone,
        case.description,
        case.claimed.vaccine,
    )


def matches(case: CorrectionCase, query: QueueQuery) -> bool:
    """The filters of `query` beyond its base query, in Python (for backends without paging)."""
    if query.kind is not None and case.kind != query.kind:
        return False
    if query.due_from is not None and case.due_on < query.due_from:
        return False
    if query.due_to is not None and case.due_on > query.due_to:
        return False
    if query.text:
        needle = query.text.casefold()
        return any(needle in (field or "").casefold() for field in searched_fields(case))
    return True


async def page_in_memory(registry: Any, query: QueueQuery) -> CasePage:
    every = await registry.list_corrections(dataclasses.replace(query.base, limit=IN_MEMORY_LIMIT))
    matching = [case for case in every if matches(case, query)]
    return CasePage(
        matching[query.offset : query.offset + query.limit], len(matching), query.offset, query.limit
    )
