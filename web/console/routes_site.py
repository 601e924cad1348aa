"""Report queues (a site's, the hotline's, all for admins), the report page and its actions,
attachments, bulk approve."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import File, Form, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from certificates.dose_series import next_dose_number
from registry_client.case_pages import CasePage, QueueQuery
from registry_client.errors import InvalidRequest
from registry_client.models import OPEN_STATUSES, AuditEntry, CaseKind, CaseStatus, CorrectionQuery
from registry_client.vaccines import PRODUCTS, lookup_product
from web.console import casework
from web.console.access import HOTLINE, AnyForm, AnyUser, Denied, PageNotFound, can_resolve_case, queue_scope
from web.console.attachments import UploadProblem, resolve_attachment, store_upload
from web.console.casework import DoseInput
from web.console.escalation import escalated_refs
from web.console.hotline import InputProblem
from web.console.i18n import MESSAGES
from web.console.pages import redirect, render
from web.console.routing import console_router
from web.console.sla import SlaState, sla_state
from web.console.users import Role

router = console_router()
STATUS_FILTERS = {
    "open": OPEN_STATUSES,
    "closed": frozenset({CaseStatus.APPROVED, CaseStatus.REJECTED}),
    "all": None,
}


PAGE_SIZE = 50


def sla_filter(sla: str, statuses: frozenset[CaseStatus] | None, today: date) -> dict[str, Any]:
    """The statuses and due-date range an SLA state means, for the queue query."""
    open_only = OPEN_STATUSES if statuses is None else statuses & OPEN_STATUSES
    if sla == SlaState.OVERDUE:
        return {"statuses": open_only, "due_to": today - timedelta(days=1)}
    if sla == SlaState.DUE_TODAY:
        return {"statuses": open_only, "due_from": today, "due_to": today}
    if sla == SlaState.ON_TIME:
        return {"statuses": open_only, "due_from": today + timedelta(days=1)}
    if sla == SlaState.CLOSED:
        closed = STATUS_FILTERS["closed"]
        return {"statuses": closed if statuses is None else statuses & closed}
    return {"statuses": statuses}


@router.get("/agent/queue")
async def queue(
    request: Request,
    info: AnyUser,
    site: str = "",
    status: str = "open",
    sla: str = "",
    kind: str = "",
    q: str = "",
    page: str = "1",
) -> Response:
    """The queue, filtered, counted and paged by the registry (never cut before filtering)."""
    console = request.app.state.console
    scope = queue_scope(info.user, site[:32])
    today = console.today()
    sla = sla if sla in {s.value for s in SlaState} else ""
    kind = kind if kind in {k.value for k in CaseKind} else ""
    number = int(page) if page.isdigit() and 0 < len(page) < 7 else 1
    shape = sla_filter(sla, STATUS_FILTERS.get(status, OPEN_STATUSES), today)
    query = QueueQuery(
        CorrectionQuery(
            statuses=shape.pop("statuses"),
            site_code=scope if scope not in (None, HOTLINE) else None,
            hotline_queue=scope == HOTLINE,
        ),
        kind=CaseKind(kind) if kind else None,
        text=q,
        offset=(number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        **shape,
    )
    found = await console.registry.page_corrections(query)
    cases, q = found.cases, query.text
    sites = await console.registry.list_sites()
    return render(
        request,
        "console/queue.html",
        {
            "cases": cases,
            "states": {c.ref: sla_state(c, today) for c in cases},
            "escalated": await escalated_refs(console, [c.ref for c in cases]),
            "scope": scope,
            "scope_name": next((s.name for s in sites if s.code == scope), ""),
            "sites": sites,
            "filters": {"site": site[:32], "status": status, "sla": sla, "kind": kind, "q": q},
            "page": found,
            "page_number": number,
            "page_links": _page_links(request, number, found),
            "kinds": list(CaseKind),
            "products": PRODUCTS,
            "can_bulk": info.user.role in (Role.SITE, Role.ADMIN) and scope not in (None, HOTLINE),
            "today": today,
        },
    )


@router.get("/agent/cases/{ref}")
async def case_page(request: Request, info: AnyUser, ref: str) -> Response:
    console = request.app.state.console
    case = await casework.load_case(console, info.user, ref)  # reading changes nothing
    person, doses = None, []
    if case.person_id is not None:
        person = await console.registry.get_person(case.person_id)
        doses = await console.registry.list_doses(case.person_id)
    await console.registry.audit(AuditEntry(info.user.actor, "case.view", case.person_id, case.ref))
    claimed_product = lookup_product(case.claimed.vaccine or "")
    return render(
        request,
        "console/case.html",
        {
            "case": case,
            "person": person,
            "doses": doses,
            "state": sla_state(case, console.today()),
            "can_resolve": can_resolve_case(info.user, case),
            "can_start_review": casework.can_start_review(info.user, case),
            "sites": await console.registry.list_sites(),
            "products": PRODUCTS,
            "claimed_product": claimed_product.code if claimed_product else "",
            "default_dose_number": casework.suggested_dose_number(case, doses),
            "default_site": case.site_code or "",
            "escalations": (await escalated_refs(console, [case.ref])).get(case.ref, 0),
        },
    )


@router.post("/agent/cases/{ref}/start-review")
async def start_review(request: Request, info: AnyForm, ref: str) -> Response:
    """The explicit "start review" action: a received or routed report becomes "in review"."""
    console = request.app.state.console
    try:
        case = await casework.start_review(console, info.user, ref)
    except InvalidRequest as exc:
        return _refused(console, ref, exc)
    return redirect(_case_url(case.ref), console.flash, "review_started", ref=case.ref)


def _page_links(request: Request, number: int, found: CasePage) -> dict[str, str]:
    """Links to the previous and next queue pages, the filters kept."""

    def to(page: int) -> str:
        return "/agent/queue?" + urlencode({**request.query_params, "page": str(page)})

    links = {}
    if found.has_previous:
        links["previous"] = to(number - 1)
    if found.has_next:
        links["next"] = to(number + 1)
    return links


def _case_url(ref: str) -> str:
    return f"/agent/cases/{ref}"


def _refused(console: object, ref: str, exc: Exception) -> Response:
    """Back to the report with the reason: a catalogue key, or the registry's own words."""
    key = getattr(exc, "key", None) or (str(exc) if str(exc) in MESSAGES else None)
    if key is not None:
        return redirect(_case_url(ref), console.flash, key, "error")  # type: ignore[attr-defined]
    return redirect(_case_url(ref), console.flash, "refused", "error", detail=str(exc))  # type: ignore[attr-defined]


@router.post("/agent/cases/{ref}/approve")
async def approve(
    request: Request,
    info: AnyForm,
    ref: str,
    dose_number: str = Form(""),
    vaccine: str = Form(""),
    lot: str = Form(""),
    administered_on: str = Form(""),
    site_code: str = Form(""),
    note: str = Form(""),
    record_dose: str = Form("no"),
    override: str = Form(""),
) -> Response:
    console = request.app.state.console
    dose = DoseInput(dose_number, vaccine, lot, administered_on, site_code) if record_dose == "yes" else None
    try:
        outcome = await casework.approve(console, info.user, ref, dose, note, override or None)
    except casework.SequenceNeedsOverride as exc:  # the confirmation step: the same dose, plus a reason
        fields = {
            "dose_number": dose_number,
            "vaccine": vaccine,
            "lot": lot,
            "administered_on": administered_on,
            "site_code": site_code,
            "note": note,
        }
        case = await casework.load_case(console, info.user, ref)
        doses = await console.registry.list_doses(case.person_id) if case.person_id else []
        context = {
            "ref": case.ref,
            "problems": exc.problems,
            "fields": fields,
            "next_number": next_dose_number(doses),
        }
        return render(request, "console/approve_confirm.html", context, status_code=409)
    except (InputProblem, InvalidRequest) as exc:
        return _refused(console, ref, exc)
    key = "approved_told" if outcome.citizen_told else "approved_not_told"
    return redirect(_case_url(outcome.case.ref), console.flash, key, ref=outcome.case.ref)


@router.post("/agent/cases/{ref}/reject")
async def reject(request: Request, info: AnyForm, ref: str, reason: str = Form("")) -> Response:
    console = request.app.state.console
    try:
        outcome = await casework.reject(console, info.user, ref, reason)
    except (InputProblem, InvalidRequest) as exc:
        return _refused(console, ref, exc)
    key = "rejected_told" if outcome.citizen_told else "rejected_not_told"
    return redirect(_case_url(outcome.case.ref), console.flash, key, ref=outcome.case.ref)


@router.post("/agent/cases/{ref}/reassign")
async def reassign(
    request: Request, info: AnyForm, ref: str, target: str = Form(""), note: str = Form("")
) -> Response:
    console = request.app.state.console
    try:
        moved = await casework.reassign(console, info.user, ref, target, note)
    except (InputProblem, InvalidRequest) as exc:
        return _refused(console, ref, exc)
    where = moved.site_code or HOTLINE
    # the user may no longer see the report once it has left their queue
    return redirect("/agent/queue", console.flash, "reassigned", ref=moved.ref, target=where)


@router.post("/agent/cases/{ref}/attachments")
async def upload(request: Request, info: AnyForm, ref: str, photo: UploadFile = File(...)) -> Response:
    console = request.app.state.console
    case = await casework.load_case(console, info.user, ref)
    data = await photo.read(8 * 1024 * 1024 + 1)
    try:
        attachment = store_upload(Path(console.settings.data_dir), case.ref, photo.filename or "", data)
    except UploadProblem as exc:
        return redirect(_case_url(case.ref), console.flash, exc.key, "error")
    await console.registry.add_attachment(case.ref, attachment, info.user.actor)
    return redirect(_case_url(case.ref), console.flash, "photo_added")


@router.get("/agent/cases/{ref}/attachments/{attachment_id}")
async def attachment(request: Request, info: AnyUser, ref: str, attachment_id: str) -> Response:
    console = request.app.state.console
    case = await casework.load_case(console, info.user, ref)
    found = next((a for a in case.attachments if a.id == attachment_id), None)
    if found is None:
        raise PageNotFound()
    servable = resolve_attachment(Path(console.settings.data_dir), found)
    if servable is None:
        raise PageNotFound("file_missing")
    await console.registry.audit(
        AuditEntry(info.user.actor, "attachment.view", case.person_id, f"{case.ref}/{found.id}")
    )
    disposition = "inline" if servable.inline else "attachment"
    return FileResponse(
        servable.path,
        media_type=servable.content_type,
        headers={
            "Content-Disposition": f'{disposition}; filename="attachment-{found.id}"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        },
    )


@router.post("/agent/bulk-approve")
async def bulk_approve(
    request: Request,
    info: AnyForm,
    vaccine: str = Form(""),
    administered_on: str = Form(""),
    lot: str = Form(""),
    site_code: str = Form(""),
    note: str = Form(""),
) -> Response:
    console = request.app.state.console
    if info.user.role not in (Role.SITE, Role.ADMIN):
        raise Denied("forbidden")
    form = await request.form()
    refs = [str(v) for v in form.getlist("refs")][:200]
    site = (info.user.site_code or "") if info.user.role == Role.SITE else site_code
    try:
        results = await casework.bulk_approve(
            console, info.user, refs, DoseInput(1, vaccine, lot, administered_on, site), note
        )
    except InputProblem as exc:
        return redirect("/agent/queue", console.flash, exc.key, "error")
    return render(
        request,
        "console/bulk_result.html",
        {
            "results": results,
            "batch": {"vaccine": vaccine, "administered_on": administered_on, "lot": lot, "site": site},
            "today": console.today(),
        },
    )
