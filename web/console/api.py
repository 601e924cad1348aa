"""The console's JSON API (docs/http-api.md): bearer tokens for call-centre software, sending a
certificate link, phone changes, the correction queue, resolving a report. Same permissions as the
pages. Its answers are described for OpenAPI in web/console/api_answers.py."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from registry_client.clock import utc_now
from registry_client.errors import InvalidRequest, RecordNotFound
from registry_client.identity import mask_phone, normalize_national_id
from registry_client.models import (
    OPEN_STATUSES,
    AuditEntry,
    CaseStatus,
    CorrectionCase,
    CorrectionQuery,
    Person,
)
from web.console import casework, hotline
from web.console.access import HOTLINE, LoginRequired, queue_scope
from web.console.api_answers import (
    NOT_AUTHENTICATED,
    CorrectionsAnswer,
    PhoneChangeAnswer,
    PhoneChangeConfirmed,
    ResolveAnswer,
    ResolveConflict,
    SendLinkAnswer,
    TokenAnswer,
    WrongCode,
    problems,
)
from web.console.auth import LoginOutcome
from web.console.casework import DoseInput
from web.console.citizen import NoAddress, ServiceMissing
from web.console.hotline import InputProblem
from web.console.routing import console_router
from web.console.sla import sla_state
from web.console.users import ConsoleUser, Role

router = console_router(include_in_schema=True, tags=["console API"])


def problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


async def api_user(request: Request) -> ConsoleUser:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    user = (
        await request.app.state.console.auth.token_user(token.strip()) if scheme.lower() == "bearer" else None
    )
    if user is None:
        raise LoginRequired(request.url.path)  # 401 under /api/
    return user


ApiUser = Annotated[ConsoleUser, Depends(api_user)]


# -- tokens ------------------------------------------------------------------------------------
class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@router.post(
    "/api/agent/token",
    response_model=TokenAnswer,
    responses=problems(
        _401="bad_credentials",
        _429="locked: too many failed logins from this address; see Retry-After",
    ),
)
async def token(request: Request, body: TokenRequest) -> JSONResponse:
    console = request.app.state.console
    client_ip = request.client.host if request.client else "unknown"
    result = await console.auth.login(body.username, body.password, client_ip)
    if result.outcome == LoginOutcome.LOCKED:
        return problem(429, "locked", **{"Retry-After": str(result.retry_after)})
    if result.outcome != LoginOutcome.OK or result.user is None:
        return problem(401, "bad_credentials", **{"WWW-Authenticate": "Bearer"})
    value, expires = await console.auth.issue_token(result.user)
    await console.registry.audit(AuditEntry(result.user.actor, "api.token", None, client_ip))
    return JSONResponse(
        {
            "token": value,
            "token_type": "bearer",
            "expires_at": expires.isoformat(),
            "expires_in": int((expires - utc_now()).total_seconds()),
        }
    )


# -- send link ---------------------------------------------------------------------------------
class SendLinkRequest(BaseModel):
    national_id: str = Field(max_length=40)
    date_of_birth: str = Field(max_length=20, description="YYYY-MM-DD (DDMMYYYY accepted)")
    channel: Literal["sms", "telegram"] = "sms"


async def _agent_person(
    request: Request, user: Any, national_id_text: str, date_of_birth: str, action: str
) -> Person | JSONResponse:
    """The person an agent names by national ID + date of birth, or the problem answer (403 for a
    role that may not, 422 for a malformed ID or date, 404 audited for no such person)."""
    console = request.app.state.console
    if user.role not in (Role.AGENT, Role.ADMIN):
        return problem(403, "forbidden")
    national_id = normalize_national_id(national_id_text)
    if national_id is None:
        return problem(422, "national_id must be a 12-digit CCCD or a 9-digit CMND")
    born = hotline.parse_date_of_birth(date_of_birth)
    if born is None:
        return problem(422, "date_of_birth must be a date as YYYY-MM-DD")
    try:
        person: Person = await console.registry.find_person(national_id, born)
    except RecordNotFound:
        await console.registry.audit(AuditEntry(user.actor, action, None, "no such person"))
        return problem(404, "no person with this national ID and date of birth")
    return person


@router.post(
    "/api/agent/send-link",
    status_code=202,
    response_model=SendLinkAnswer,
    responses=problems(
        _401=NOT_AUTHENTICATED,
        _403="forbidden: agents and admins only",
        _404="no person with this national ID and date of birth",
        _409="no dose on record, no phone on record, or no Telegram chat bound",
        _503="the certificate service or the registry is not available",
    ),
)
async def send_link(request: Request, body: SendLinkRequest, user: ApiUser) -> JSONResponse:
    console = request.app.state.console
    person = await _agent_person(request, user, body.national_id, body.date_of_birth, "api.send_link")
    if isinstance(person, JSONResponse):
        return person
    if not await console.registry.list_doses(person.id):
        return problem(409, "this person has no dose on record, so there is no certificate to send")
    try:
        sent = await hotline.send_link(console, user, person.id, body.channel)
    except NoAddress as exc:
        reason = (
            "no phone on record for this person"
            if exc.key == "no_phone"
            else "no Telegram chat bound to this person"
        )
        return problem(409, reason)
    except ServiceMissing:
        return problem(503, "the certificate service is not available")
    return JSONResponse(
        {"status": "queued", "channel": sent.channel, "sent_to": sent.shown_address}, status_code=202
    )


# -- phone change ------------------------------------------------------------------------------
class PhoneChangeBody(BaseModel):
    national_id: str = Field(max_length=40)
    date_of_birth: str = Field(max_length=20, description="YYYY-MM-DD (DDMMYYYY accepted)")
    new_phone: str = Field(max_length=30, description="the caller's new number; the code goes there")
    language: Literal["vi", "en"] = "vi"


class PhoneChangeCode(BaseModel):
    code: str = Field(min_length=1, max_length=20, description="the code the caller reads back")


_REQUEST_REFUSED = {
    "bad_phone": (422, "new_phone is not a valid Vietnamese phone number"),
    "phone_change_same_phone": (409, "this is already the person's only registered phone"),
    "phone_change_too_many": (429, "too many change codes were sent for this person; try again in an hour"),
    "phone_change_unavailable": (503, "phone changes are not available"),
}


@router.post(
    "/api/agent/phone-change",
    status_code=202,
    response_model=PhoneChangeAnswer,
    responses=problems(
        _401=NOT_AUTHENTICATED,
        _403="forbidden: agents and admins only",
        _404="no person with this national ID and date of birth",
        _409="the new phone is already the person's only registered phone",
        _429="too many change codes sent for this person (5 an hour)",
        _503="phone changes or the registry are not available",
    ),
)
async def phone_change(request: Request, body: PhoneChangeBody, user: ApiUser) -> JSONResponse:
    """Step 1: a code goes by SMS to the new phone. Nothing changes until it is read back."""
    console = request.app.state.console
    person = await _agent_person(request, user, body.national_id, body.date_of_birth, "api.phone_change")
    if isinstance(person, JSONResponse):
        return person
    try:
        requested = await hotline.request_phone_change(
            console, user, person.id, body.new_phone, body.language
        )
    except InputProblem as exc:
        status, detail = _REQUEST_REFUSED.get(exc.key, (422, exc.key))
        return problem(status, detail)
    return JSONResponse(
        {
            "change_id": requested.change_id,
            "status": "code_sent",
            "sent_to": mask_phone(requested.new_phone),
            "expires_at": requested.expires_at.isoformat(),
        },
        status_code=202,
    )


@router.post(
    "/api/agent/phone-change/{change_id}/confirm",
    response_model=PhoneChangeConfirmed,
    responses={
        400: {"model": WrongCode, "description": "wrong code (counted), change dead, code expired, or a body that is no JSON"},
        **problems(
            _401=NOT_AUTHENTICATED,
            _403="forbidden: agents and admins only",
            _404="no such phone change",
            _429="too many codes tried by this agent (30 an hour); see Retry-After",
            _503="phone changes or the registry are not available",
        ),
    },
)
async def confirm_phone_change(
    request: Request, change_id: str, body: PhoneChangeCode, user: ApiUser
) -> JSONResponse:
    """Step 2: the code read back. Right: the new phone is the registered one, every binding of
    the old phone to the person ends, both numbers are told. Wrong: 400, and the try is counted."""
    console = request.app.state.console
    if user.role not in (Role.AGENT, Role.ADMIN):
        return problem(403, "forbidden")
    if len(change_id) > 64:
        return problem(404, "no such phone change")
    try:
        result = await hotline.confirm_phone_change(console, user, change_id, body.code)
    except InputProblem:
        return problem(503, "phone changes are not available")
    outcome = result.outcome.value
    if outcome in ("confirmed", "already_confirmed"):
        person = result.person
        return JSONResponse(
            {
                "change_id": change_id,
                "status": "confirmed",
                "registered_phone": mask_phone(person.registered_phone)
                if person and person.registered_phone
                else None,
                "retired": [mask_phone(p) for p in result.retired],
                "bindings_ended": len(result.ended),
            }
        )
    if outcome == "wrong":
        return JSONResponse({"detail": "wrong_code", "tries_left": result.left}, status_code=400)
    if outcome == "dead":
        return JSONResponse({"detail": "change_dead", "tries_left": 0}, status_code=400)
    if outcome == "expired":
        return JSONResponse({"detail": "code_expired", "tries_left": 0}, status_code=400)
    if outcome == "limited":
        return problem(429, "too many codes tried; try again later", **{"Retry-After": "3600"})
    return problem(404, "no such phone change")


# -- corrections -------------------------------------------------------------------------------
def case_json(case: CorrectionCase, today: date) -> dict[str, Any]:
    def iso(value: date | datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "ref": case.ref,
        "status": case.status.value,
        "kind": case.kind.value,
        "doses_concerned": case.doses_concerned.value if case.doses_concerned else None,
        "site_code": case.site_code,
        "due_on": iso(case.due_on),
        "sla_state": sla_state(case, today).value,
        "created_at": iso(case.created_at),
        "resolved_at": iso(case.resolved_at),
        "resolution_note": case.resolution_note,
        "channel": case.channel,
        "person": {
            "name": case.claimed_name,
            "date_of_birth": iso(case.claimed_date_of_birth),
            "national_id_masked": (case.claimed_national_id or "")[:3]
            + "******"
            + (case.claimed_national_id or "")[-3:]
            if case.claimed_national_id
            else None,
        },
        "contact_phone_masked": mask_phone(case.contact_phone) if case.contact_phone else None,
        "claimed": {
            "administered_on": iso(case.claimed.administered_on),
            "vaccine": case.claimed.vaccine,
            "site": case.claimed.site,
            "lot": case.claimed.lot,
        },
        "workplace": case.workplace,
        "description": case.description,
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "url": f"/agent/cases/{case.ref}/attachments/{a.id}",
            }
            for a in case.attachments
        ],
    }


@router.get(
    "/api/corrections",
    response_model=CorrectionsAnswer,
    responses=problems(
        _401=NOT_AUTHENTICATED,
        _403="other_site: site staff see their own site's queue only",
        _503="the registry is not available",
    ),
)
async def corrections(request: Request, user: ApiUser, status: str = "open", site: str = "") -> JSONResponse:
    console = request.app.state.console
    scope = queue_scope(user, site[:32])  # Denied → 403
    if status == "open":
        statuses: frozenset[CaseStatus] | None = OPEN_STATUSES
    elif status == "closed":
        statuses = frozenset({CaseStatus.APPROVED, CaseStatus.REJECTED})
    elif status == "all":
        statuses = None
    elif status in {s.value for s in CaseStatus}:
        statuses = frozenset({CaseStatus(status)})
    else:
        return problem(
            422, "status must be open, closed, all or one of " + ", ".join(s.value for s in CaseStatus)
        )
    cases = await console.registry.list_corrections(
        CorrectionQuery(
            statuses=statuses,
            site_code=scope if scope not in (None, HOTLINE) else None,
            hotline_queue=scope == HOTLINE,
            limit=1000,
        )
    )
    today = console.today()
    await console.registry.audit(
        AuditEntry(user.actor, "api.corrections", None, f"{scope or 'all'} {status}: {len(cases)}")
    )
    return JSONResponse(
        {
            "site": scope,
            "status": status,
            "count": len(cases),
            "corrections": [case_json(c, today) for c in cases],
        }
    )


class DoseBody(BaseModel):
    dose_number: int = Field(ge=1, le=9)
    vaccine: str = Field(min_length=1, max_length=100)
    lot: str | None = Field(default=None, max_length=40)
    administered_on: date
    site_code: str = Field(min_length=1, max_length=32)


class ResolveBody(BaseModel):
    decision: Literal["approved", "rejected"]
    note: str = Field(default="", max_length=1000)
    dose: DoseBody | None = None
    override: str | None = Field(
        default=None,
        max_length=500,
        description="The reason to record a dose that leaves a gap, reuses a dose number or date, or is "
        "dated before its predecessor; without it such an approval answers 409 with the problems.",
    )


@router.post(
    "/api/corrections/{ref}/resolve",
    response_model=ResolveAnswer,
    responses={
        409: {"model": ResolveConflict, "description": "closed already, or the dose needs an override"},
        **problems(
            _401=NOT_AUTHENTICATED,
            _403="forbidden: not this user's site",
            _404="no such report",
            _503="the registry is not available",
        ),
    },
)
async def resolve(request: Request, ref: str, body: ResolveBody, user: ApiUser) -> JSONResponse:
    console = request.app.state.console
    try:
        if body.decision == "approved":
            dose = (
                DoseInput(
                    body.dose.dose_number,
                    body.dose.vaccine,
                    body.dose.lot,
                    body.dose.administered_on,
                    body.dose.site_code,
                )
                if body.dose is not None
                else None
            )
            outcome = await casework.approve(console, user, ref, dose, body.note, body.override)
        else:
            outcome = await casework.reject(console, user, ref, body.note)
    except casework.SequenceNeedsOverride as exc:
        return JSONResponse(
            {
                "detail": "dose_sequence",
                "reason": str(exc),
                "problems": [
                    {
                        "kind": p.kind,
                        "dose_number": p.dose_number,
                        "detail": list(p.detail),
                        "text": p.describe(),
                    }
                    for p in exc.problems
                ],
                "override": 'send the request again with "override": "<the reason>" to record it anyway',
            },
            status_code=409,
        )
    except InputProblem as exc:
        return problem(422, exc.key)
    except InvalidRequest as exc:
        if str(exc) == "already_closed":
            return problem(409, "the report is already closed")
        return problem(422, str(exc))
    case = outcome.case
    return JSONResponse(
        {
            "ref": case.ref,
            "status": case.status.value,
            "citizen_told": outcome.citizen_told,
            "certificate_reissued": outcome.certificate_reissued,
            "correction": case_json(case, console.today()),
        }
    )
