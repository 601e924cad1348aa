"""Hotline agent pages: person search, the person's page, and its actions.

Persons appear in URLs only by opaque handles (`web.console.person_handles`); a value that is
not a handle this service made is a 404, and person views are counted against a per-agent budget.
"""

from __future__ import annotations

from fastapi import Form
from starlette.requests import Request
from starlette.responses import Response

from certificates.service import CertificateError
from registry_client.models import AuditEntry, CaseKind, DosesConcerned
from registry_client.vaccines import PRODUCTS
from web.console import hotline
from web.console.access import AgentForm, AgentUser, PageNotFound
from web.console.citizen import NoAddress, ServiceMissing
from web.console.hotline import InputProblem, ReportForm
from web.console.pages import language_of, redirect, render
from web.console.person_handles import VIEW_WINDOW, handles_of, view_budget_of
from web.console.routing import console_router

router = console_router()


def _person_id(request: Request, handle: str) -> str:
    """The registry id behind a URL's person handle; 404 for anything else (raw ids included)."""
    person_id = handles_of(request.app.state).person_id(handle)
    if person_id is None:
        raise PageNotFound()
    return person_id


@router.get("/agent/search")
async def search(
    request: Request, info: AgentUser, national_id: str = "", dob: str = "", phone: str = ""
) -> Response:
    console = request.app.state.console
    outcome = await hotline.search_persons(console, info.user, national_id[:40], dob[:20], phone[:30])
    handles = handles_of(request.app.state)
    if len(outcome.persons) == 1 and not phone:
        return redirect(f"/agent/persons/{handles.handle(outcome.persons[0].id)}")
    return render(
        request,
        "console/search.html",
        {
            "outcome": outcome,
            "form": {"national_id": national_id[:40], "dob": dob[:20], "phone": phone[:30]},
            "handle": handles.handle,
        },
        status_code=200,
    )


@router.get("/agent/persons/{handle}")
async def person_page(request: Request, info: AgentUser, handle: str, change: str = "") -> Response:
    console = request.app.state.console
    person_id = _person_id(request, handle)
    if not await view_budget_of(request.app.state).take(info.user.id):
        await console.registry.audit(
            AuditEntry(info.user.actor, "person.view_refused", person_id, "view budget")
        )
        response = render(
            request, "console/error.html", {"status": 429, "reason": "too_many_person_views"}, status_code=429
        )
        response.headers["Retry-After"] = str(int(VIEW_WINDOW.total_seconds()))
        return response
    overview = await hotline.person_overview(console, info.user, person_id)
    pending_change = await hotline.pending_phone_change(console, overview.person.id, change[:64])
    return render(
        request,
        "console/person.html",
        {
            "o": overview,
            "pending_change": pending_change,
            "kinds": list(CaseKind),
            "concerned": list(DosesConcerned),
            "products": PRODUCTS,
            "sites": await console.registry.list_sites(),
            "handle": handles_of(request.app.state).handle,
        },
    )


def _back(handle: str) -> str:
    return f"/agent/persons/{handle}"


@router.post("/agent/persons/{handle}/send-link")
async def send_link(request: Request, info: AgentForm, handle: str, channel: str = Form("sms")) -> Response:
    console = request.app.state.console
    try:
        sent = await hotline.send_link(
            console, info.user, _person_id(request, handle), channel, language_of(request)
        )
    except (InputProblem, NoAddress) as exc:
        return redirect(_back(handle), console.flash, exc.key, "error")
    except ServiceMissing:
        return redirect(_back(handle), console.flash, "certificates_unavailable", "error")
    return redirect(_back(handle), console.flash, "link_sent", address=sent.shown_address)


@router.post("/agent/persons/{handle}/send-code")
async def send_code(request: Request, info: AgentForm, handle: str) -> Response:
    console = request.app.state.console
    try:
        sent = await hotline.send_code(console, info.user, _person_id(request, handle), language_of(request))
    except (InputProblem, NoAddress) as exc:
        return redirect(_back(handle), console.flash, exc.key, "error")
    except (ServiceMissing, CertificateError):
        return redirect(_back(handle), console.flash, "certificates_unavailable", "error")
    return redirect(_back(handle), console.flash, "code_sent", address=sent.shown_address)


@router.post("/agent/persons/{handle}/report")
async def file_report(
    request: Request,
    info: AgentForm,
    handle: str,
    kind: str = Form(""),
    doses_concerned: str = Form(""),
    claimed_date: str = Form(""),
    vaccine: str = Form(""),
    site: str = Form(""),
    lot: str = Form(""),
    description: str = Form(""),
    contact: str = Form("registered"),
    other_phone: str = Form(""),
    language: str = Form("vi"),
) -> Response:
    console = request.app.state.console
    form = ReportForm(
        kind, doses_concerned, claimed_date, vaccine, site, lot, description, contact, other_phone, language
    )
    try:
        case = await hotline.file_report(console, info.user, _person_id(request, handle), form)
    except InputProblem as exc:
        return redirect(_back(handle), console.flash, exc.key, "error")
    key = "report_joined" if case.joined else ("report_queued" if case.queued else "report_filed")
    return redirect(_back(handle), console.flash, key, ref=case.ref)


@router.post("/agent/persons/{handle}/phone")
async def request_phone_change(
    request: Request,
    info: AgentForm,
    handle: str,
    new_phone: str = Form(""),
    language: str = Form("vi"),
) -> Response:
    """Step 1 of a phone change: a code goes to the new phone; step 2 waits on the person page."""
    console = request.app.state.console
    try:
        requested = await hotline.request_phone_change(
            console,
            info.user,
            _person_id(request, handle),
            new_phone[:30],
            language if language in ("vi", "en") else "vi",
        )
    except InputProblem as exc:
        return redirect(_back(handle), console.flash, exc.key, "error")
    return redirect(
        f"{_back(handle)}?change={requested.change_id}#phone-change", console.flash, "phone_code_sent"
    )


@router.post("/agent/persons/{handle}/phone/{change_id}/confirm")
async def confirm_phone_change(
    request: Request, info: AgentForm, handle: str, change_id: str, code: str = Form("")
) -> Response:
    """Step 2: the code the caller reads back from the new phone."""
    console = request.app.state.console
    try:
        result = await hotline.confirm_phone_change(console, info.user, change_id[:64], code[:20])
    except InputProblem as exc:
        return redirect(_back(handle), console.flash, exc.key, "error")
    key = hotline.PHONE_CHANGE_FLASH[result.outcome]
    if result.outcome.value == "wrong":
        return redirect(
            f"{_back(handle)}?change={change_id[:64]}#phone-change",
            console.flash,
            key,
            "error",
            left=result.left,
        )
    level = "ok" if result.outcome.value in ("confirmed", "already_confirmed") else "error"
    return redirect(_back(handle), console.flash, key, level)
