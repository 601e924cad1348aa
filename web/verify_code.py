"""Checking a certificate code with the holder's birth year: POST /api/verify-code (docs/http-api.md)
and the "code" tab of the /verify page (its form posts to POST /verify/code).

`{"code": "VX7K-3D9Q-MRT4", "birth_year": 1985}` → 200 `{"valid", "reason", "holder": {"name",
"birth_year"}, "doses", "latest_dose_date"}`. The holder fields are filled only when the birth
year matches (valid, revoked or expired); an unknown code and a wrong year get the same answer.
A malformed body is 400 with the same shape and a reason; a blocked caller (too many failed
checks from this IP address) or a locked code (too many wrong years) is 429 with Retry-After.
Every check is written to the registry's audit log. The work is `app.state.certificates.codes`
(certificates/code_store.py).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from certificates.code_store import (
    CHECK_CODE,
    EXPIRED,
    LOCKED,
    REVEALING,
    REVOKED,
    TOO_MANY,
    UNKNOWN,
    VALID,
    CertificateCodes,
    CodeVerdict,
)
from certificates.codes import mask_code
from registry_client.models import AuditEntry
from web.certificate_pages import templates
from web.certificate_texts import TEXTS, language

log = logging.getLogger(__name__)

router = APIRouter(tags=["certificates"])

MAX_BODY = 4096
BAD_REQUEST = "bad request"
INTERNAL = "could not be checked"

# The API's `reason`: the outcome first (split on ":" to get it), then words for a person.
REASON_TEXT = {
    VALID: "valid",
    REVOKED: "revoked: the certificate was withdrawn or replaced by a newer one",
    EXPIRED: "expired: the certificate is past its validity",
    UNKNOWN: "unknown: no certificate matches this code and year of birth",
    CHECK_CODE: "check the code: it is not a certificate code as typed (a character is wrong or missing)",
    LOCKED: "locked: too many wrong years of birth for this code; try again later",
    TOO_MANY: "too many attempts: too many failed checks from this address; try again later",
}


class BadInput(ValueError):
    pass


# -- OpenAPI description only (the body is read by hand so that no input can cause a 500) ------
class VerifyCodeRequest(BaseModel):
    code: str = Field(examples=["VX7K-3D9Q-MRT4"], description="as typed: any case, spaces or dashes")
    birth_year: int = Field(examples=[1985], description="the holder's year of birth")


class CodeHolder(BaseModel):
    name: str = Field(description="middle names shortened (`Nguyễn T. Ánh`); empty unless the year matched")
    birth_year: int | None


class VerifyCodeAnswer(BaseModel):
    valid: bool
    reason: str = Field(
        description="starts with valid, revoked, expired, unknown, check the code, locked, "
        "too many attempts or bad request; then words for a person"
    )
    holder: CodeHolder
    doses: int
    latest_dose_date: str = Field(description="YYYY-MM-DD; empty unless the year matched")


_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": VerifyCodeRequest.model_json_schema()}},
    }
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": VerifyCodeAnswer, "description": "the answer (valid or not)"},
    400: {"model": VerifyCodeAnswer, "description": "not a JSON object with a code and a year"},
    413: {"model": VerifyCodeAnswer, "description": "body above 4 KB"},
    429: {"model": VerifyCodeAnswer, "description": "caller blocked or code locked; see Retry-After"},
}


def parse_birth_year(value: object, now: datetime | None = None) -> int:
    """1985 or "1985"; a year from 1900 to this year."""
    this_year = (now or datetime.now(UTC)).year
    if isinstance(value, bool):
        raise BadInput("birth_year must be a year such as 1985")
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) == 4:
        value = int(value.strip())
    if not isinstance(value, int) or not 1900 <= value <= this_year:
        raise BadInput("birth_year must be a year such as 1985")
    return value


def answer(verdict: CodeVerdict) -> dict[str, Any]:
    revealed = verdict.reason in REVEALING
    return {
        "valid": verdict.valid,
        "reason": REASON_TEXT.get(verdict.reason, verdict.reason),
        "holder": {
            "name": (verdict.holder_name or "") if revealed else "",
            "birth_year": verdict.birth_year if revealed else None,
        },
        "doses": verdict.doses if revealed else 0,
        "latest_dose_date": verdict.latest_dose_date.isoformat()
        if revealed and verdict.latest_dose_date
        else "",
    }


def _refused(reason: str, status: int = 400) -> JSONResponse:
    body = {
        "valid": False,
        "reason": reason,
        "holder": {"name": "", "birth_year": None},
        "doses": 0,
        "latest_dose_date": "",
    }
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_and_audit(request: Request, code: object, birth_year: int, via: str) -> CodeVerdict:
    """The check, with the caller's IP address for the per-caller limit, and its audit entry."""
    codes: CertificateCodes = request.app.state.certificates.codes
    ip = _client_ip(request)
    verdict = await codes.check(code, birth_year, caller=f"ip:{ip}")
    typed = mask_code(code) if isinstance(code, str) else "-"
    detail = f"{via} {typed} {birth_year}: {verdict.reason}" + (
        f" ({verdict.detail})" if verdict.detail else ""
    )
    try:
        await request.app.state.registry.audit(
            AuditEntry(
                actor=f"web:{ip}",
                action="certificate.verify_code",
                person_id=verdict.person_id,
                detail=detail,
            )
        )
    except Exception:  # the audit log being slow must not leave a checkpoint without an answer
        log.exception("audit of a certificate-code check failed")
    return verdict


def _respond(verdict: CodeVerdict) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if verdict.reason in (LOCKED, TOO_MANY):
        headers["Retry-After"] = str(max(1, verdict.retry_after))
        return JSONResponse(answer(verdict), status_code=429, headers=headers)
    return JSONResponse(answer(verdict), headers=headers)


@router.post(
    "/api/verify-code", response_model=VerifyCodeAnswer, responses=_ANSWERS, openapi_extra=_REQUEST_BODY
)
async def api_verify_code(request: Request) -> JSONResponse:
    """Checks a certificate code with the holder's year of birth (docs/http-api.md)."""
    try:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _refused(f"{BAD_REQUEST}: the body is too large", 413)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return _refused(
                f'{BAD_REQUEST}: the body must be JSON: {{"code": "VX7K-3D9Q-MRT4", "birth_year": 1985}}'
            )
        if not isinstance(data, dict):
            return _refused(f"{BAD_REQUEST}: the body must be a JSON object")
        code = data.get("code")
        if not isinstance(code, str) or not code.strip():
            return _refused(f"{BAD_REQUEST}: code must be a string such as VX7K-3D9Q-MRT4")
        try:
            year = parse_birth_year(data.get("birth_year"))
        except BadInput as exc:
            return _refused(f"{BAD_REQUEST}: {exc}")
        return _respond(await check_and_audit(request, code, year, "api"))
    except StarletteHTTPException:  # the body limit of the app (413), a disconnect
        raise
    except Exception:  # a checkpoint gets an answer, never a 500
        log.exception("/api/verify-code failed")
        return _refused(INTERNAL, 503)


@router.post("/verify/code", response_class=HTMLResponse, include_in_schema=False)
async def verify_code_form(request: Request) -> HTMLResponse:
    """The /verify page's code tab without JavaScript: the page again, with the answer."""
    lang = language(request.query_params.get("lang"))
    form_code, outcome, verdict, status = "", "", None, 200
    try:
        form = await request.form(max_files=0, max_fields=5)
    except StarletteHTTPException as exc:  # not a form we can read (413 stays a 413)
        if exc.status_code == 413:
            raise
        form, outcome, status = None, "error", 400
    if form is not None:
        lang = language(str(form.get("lang") or lang))
        form_code = str(form.get("code") or "")[:40]
        try:
            year = parse_birth_year(str(form.get("birth_year") or ""))
        except BadInput:
            outcome = "bad_year"
        else:
            try:
                verdict = await check_and_audit(request, form_code, year, "page")
                outcome = verdict.reason
            except Exception:
                log.exception("POST /verify/code failed")
                outcome, status = "error", 503
    revealed = verdict is not None and verdict.reason in REVEALING
    if outcome in (LOCKED, TOO_MANY):
        status = 429
    context = {
        "lang": lang,
        "t": TEXTS[lang],
        "path": "/verify",
        "result": None,
        "reason": None,
        "error": None,
        "has_code_tab": True,
        "code_form": {"code": form_code},
        "code_result": {
            "outcome": outcome,
            "valid": bool(verdict and verdict.valid),
            "name": verdict.holder_name if verdict and revealed else "",
            "birth_year": verdict.birth_year if verdict and revealed else None,
            "doses": verdict.doses if verdict and revealed else 0,
            "latest_dose_date": verdict.latest_dose_date if verdict and revealed else None,
        },
    }
    response = templates.TemplateResponse(request, "certificates/verify.html", context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
