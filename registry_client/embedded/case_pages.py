"""The report-queue page in SQL: every filter in the WHERE clause, the total by COUNT(*), the page
by OFFSET/LIMIT (registry_client/case_pages.py describes the query)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select

from registry_client.case_pages import QueueQuery
from registry_client.embedded.tables import CaseRow


def _contains(column: Any, needle: str) -> ColumnElement[bool]:
    return func.lower(func.coalesce(column, "")).contains(needle, autoescape=True)


def matching_cases(query: QueueQuery, person_key: int | None) -> Select[Any]:
    """Cases matching `query` (`person_key`: the person's row id when the base query names one)."""
    base = query.base
    stmt = select(CaseRow)
    if base.statuses is not None:
        stmt = stmt.where(CaseRow.status.in_([s.value for s in base.statuses]))
    if base.hotline_queue:
        stmt = stmt.where(CaseRow.site_code.is_(None))
    elif base.site_code is not None:
        stmt = stmt.where(CaseRow.site_code == base.site_code)
    if person_key is not None:
        stmt = stmt.where(CaseRow.person_id == person_key)
    if base.resolved_since is not None:
        stmt = stmt.where(CaseRow.resolved_at >= base.resolved_since)
    if query.kind is not None:
        stmt = stmt.where(CaseRow.kind == query.kind.value)
    if query.due_from is not None:
        stmt = stmt.where(CaseRow.due_on >= query.due_from)
    if query.due_to is not None:
        stmt = stmt.where(CaseRow.due_on <= query.due_to)
    if query.text:
        # lower() folds ASCII on SQLite and every letter on PostgreSQL; references, IDs and phone
        # numbers are ASCII, and a lower-case search finds Vietnamese names on both
        needle = query.text.lower()
        columns = (
            CaseRow.ref,
            CaseRow.claimed_name,
            CaseRow.claimed_national_id,
            CaseRow.contact_phone,
            CaseRow.description,
            CaseRow.claimed_vaccine,
        )
        stmt = stmt.where(or_(*(_contains(c, needle) for c in columns)))
    return stmt


def count_of(stmt: Select[Any]) -> Select[Any]:
    return select(func.count()).select_from(stmt.order_by(None).subquery())


def page_of(stmt: Select[Any], query: QueueQuery) -> Select[Any]:
    return (
        stmt.order_by(CaseRow.due_on, CaseRow.created_at, CaseRow.ref).offset(query.offset).limit(query.limit)
    )
