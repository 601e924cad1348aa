"""Hotline agent pages: person search, the person's page, and its actions."""

from __future__ import annotations

from fastapi import Form
from starlette.requests import Request
from starlette.responses import Response

from certificates.service import CertificateError
from registry_client.models import CaseKind, DosesConcerned
from registry_client.vaccines import PRODUCTS
from web.console import hotline
from web.console.access import AgentForm, AgentUser
from web.console.citizen import NoAddress, ServiceMissing
from web.console.hotline import InputProblem, ReportForm
from web.console.pages import language_of, redirect, render
from web.console.routing import console_router

router = console_router()


@router.get("/agent/search")
async def search(
    request: Request, info: AgentUser, national_id: str = "", dob: str = "", phone: str = ""
) -> Response:
    console = request.app.state.console
    outcome = await hotline.search_persons(console, info.user, national_id[:40], dob[:20], phone[:30])
    if len(outcome.persons) == 1 and not phone:
        return redirect(f"/agent/persons/{outcome.persons[0].id}")
    return render(
        request,
        "console/search.html",
        {"outcome": outcome, "form": {"national_id": national_id[:40], "dob": dob[:20], "phone": phone[:30]}},
        status_code=200,
    )


@router.get("/agent/persons/{person_id}")
async def person_page(request: Request, info: AgentUser, person_id: str) -> Response:
    console = request.app.state.console
    overview = await hotline.person_overview(console, info.user, person_id)
    return render(
        request,
        "console/person.html",
        {
            "o": overview,
            "kinds": list(CaseKind),
            "concerned": list(DosesConcerned),
            "products": PRODUCTS,
            "sites": await console.registry.list_sites(),
        },
    )


def _back(person_id: str) -> str:
    return f"/agent/persons/{person_id}"


@router.post("/agent/persons/{person_id}/send-link")
async def send_link(
    request: Request, info: AgentForm, person_id: str, channel: str = Form("sms")
) -> Response:
    console = request.app.state.console
    try:
        sent = await hotline.send_link(console, info.user, person_id, channel, language_of(request))
    except (InputProblem, NoAddress) as exc:
        return redirect(_back(person_id), console.flash, exc.key, "error")
    except ServiceMissing:
        return redirect(_back(person_id), console.flash, "certificates_unavailable", "error")
    return redirect(_back(person_id), console.flash, "link_sent", address=sent.shown_address)


@router.post("/agent/persons/{person_id}/send-code")
async def send_code(request: Request, info: AgentForm, person_id: str) -> Response:
    console = request.app.state.console
    try:
        sent = await hotline.send_code(console, info.user, person_id, language_of(request))
    except (InputProblem, NoAddress) as exc:
        return redirect(_back(person_id), console.flash, exc.key, "error")
    except (ServiceMissing, CertificateError):
        return redirect(_back(person_id), console.flash, "certificates_unavailable", "error")
    return redirect(_back(person_id), console.flash, "code_sent", address=sent.shown_address)


@router.post("/agent/persons/{person_id}/report")
async def file_report(
    request: Request,
    info: AgentForm,
    person_id: str,
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
        case = await hotline.file_report(console, info.user, person_id, form)
    except InputProblem as exc:
        return redirect(_back(person_id), console.flash, exc.key, "error")
    key = "report_joined" if case.joined else ("report_queued" if case.queued else "report_filed")
    return redirect(_back(person_id), console.flash, key, ref=case.ref)


@router.post("/agent/persons/{person_id}/phone")
async def change_phone(
    request: Request,
    info: AgentForm,
    person_id: str,
    new_phone: str = Form(""),
    retire_phone: str = Form(""),
    evidence: str = Form(""),
) -> Response:
    console = request.app.state.console
    try:
        await hotline.change_phone(console, info.user, person_id, new_phone, retire_phone, evidence)
    except InputProblem as exc:
        return redirect(_back(person_id), console.flash, exc.key, "error")
    return redirect(_back(person_id), console.flash, "phone_changed")
