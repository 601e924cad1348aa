"""Certificate pages and APIs: GET /c/{token}, /c/{token}/qr.png, GET+POST /verify,
POST /api/verify, GET /api/certificates/keys (docs/http-api.md).

Reads `request.app.state.certificates` (certificates.service.CertificateService) and
`request.app.state.registry`. Every link view is written to the registry's audit log.
/api/verify answers 200 with `valid: false` and a reason for any input, never a 500.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import zxingcpp
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from PIL import Image, UnidentifiedImageError

from certificates.links import LinkExpired, LinkInvalid
from certificates.service import CertificateError, CertificateService, IssuedCertificate
from certificates.valuesets import product_display
from certificates.verification import VerificationResult
from registry_client.errors import RecordNotFound, RegistryUnavailable
from registry_client.models import AuditEntry, Person
from registry_client.protocol import Registry
from web.api_answers import SignerKeys, VerifyAnswer
from web.certificate_texts import REASONS, TEXTS, format_date, language

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals["format_date"] = format_date
templates.env.globals["product_display"] = product_display

MAX_API_BODY = 64 * 1024
MAX_UPLOAD = 10 * 1024 * 1024
# A photo's size is read from its header before any pixel is decoded: a small file can declare
# a huge image (a 170 KB PNG of 6300 × 6300 pixels decodes to ~120 MB). Larger ones get 413.
MAX_PHOTO_PIXELS = 4_000_000
MAX_PHOTO_SIDE = 4_000
DECODE_SIDE = 1600  # photos are scaled down to this before looking for the QR code
DECODE_SLOTS = 2  # photos decoded at once (per process); others wait briefly
DECODE_WAIT_SECONDS = 3.0
RETRY_AFTER_SECONDS = 5

router = APIRouter(tags=["certificates"])


def _service(request: Request) -> CertificateService:
    service: CertificateService = request.app.state.certificates
    return service


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


Certificates = Annotated[CertificateService, Depends(_service)]
RegistryDep = Annotated[Registry, Depends(_registry)]


def _lang(request: Request) -> str:
    return language(request.query_params.get("lang"), request.headers.get("accept-language"))


def _page(request: Request, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.update(lang=lang, t=TEXTS[lang], path=request.url.path)
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _message(request: Request, lang: str, status: int, key: str) -> HTMLResponse:
    t = TEXTS[lang]
    return _page(
        request, "certificates/message.html", lang, status, title=t[f"{key}_title"], body=t[f"{key}_body"]
    )


async def _audit(registry: Registry, action: str, person_id: str, detail: str) -> None:
    try:
        await registry.audit(AuditEntry(actor="web:link", action=action, person_id=person_id, detail=detail))
    except Exception:  # an audit hiccup must not take the citizen's page down
        log.exception("audit of %s failed", action)


async def _certificate_for_link(
    request: Request, token: str, service: CertificateService, registry: Registry, lang: str
) -> tuple[Person, IssuedCertificate | None, datetime] | HTMLResponse:
    try:
        grant = service.read_link(token)
    except LinkExpired:
        return _message(request, lang, 410, "expired")
    except LinkInvalid:
        return _message(request, lang, 404, "invalid")
    try:
        person = await registry.get_person(grant.person_id)
        doses = await registry.list_doses(person.id)
    except RecordNotFound:
        return _message(request, lang, 404, "invalid")
    except RegistryUnavailable:
        return _message(request, lang, 503, "unavailable")
    if not doses:
        return person, None, grant.expires_at
    try:
        return person, await service.issue(person, doses), grant.expires_at
    except CertificateError:
        return person, None, grant.expires_at


@router.get("/c/{token}", response_class=HTMLResponse, include_in_schema=False)
async def certificate_page(
    request: Request, token: str, service: Certificates, registry: RegistryDep
) -> Response:
    lang = _lang(request)
    found = await _certificate_for_link(request, token, service, registry, lang)
    if isinstance(found, Response):
        return found
    person, issued, link_expires = found
    await _audit(registry, "certificate.view", person.id, f"page uvci={issued.uvci if issued else '-'}")
    return _page(
        request,
        "certificates/certificate.html",
        lang,
        person=person,
        issued=issued,
        missing=", ".join(str(n) for n in issued.missing_doses) if issued else "",
        token=token,
        link_expires=link_expires.date(),
    )


@router.get("/c/{token}/qr.png", include_in_schema=False)
async def certificate_qr(
    request: Request, token: str, service: Certificates, registry: RegistryDep
) -> Response:
    lang = _lang(request)
    found = await _certificate_for_link(request, token, service, registry, lang)
    if isinstance(found, Response):
        return found
    person, issued, _ = found
    if issued is None:
        return _message(request, lang, 404, "no_dose")
    await _audit(registry, "certificate.view", person.id, f"qr.png uvci={issued.uvci}")
    headers = {"Cache-Control": "private, no-store"}
    if request.query_params.get("download"):
        headers["Content-Disposition"] = 'attachment; filename="chung-nhan-tiem-chung-qr.png"'
    return Response(issued.png, media_type="image/png", headers=headers)


@router.get("/api/certificates/keys", response_model=SignerKeys)
async def certificate_keys(service: Certificates) -> dict[str, list[dict[str, str]]]:
    return {"keys": service.public_keys()}


def _bad_request(detail: str) -> JSONResponse:
    return JSONResponse(VerificationResult(False, "bad request", detail).to_json())


async def _read_limited(request: Request, limit: int) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_instant(value: object) -> datetime | None:
    """An ISO 8601 instant (`Z` or offset; naive is UTC); ValueError when it is none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("not a string")
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


VERIFY_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["hc1"],
    "properties": {
        "hc1": {
            "type": "string",
            "description": "the certificate text, starting with HC1:",
            "maxLength": 8000,
        },
        "at": {
            "type": "string",
            "format": "date-time",
            "description": "optional ISO 8601 instant to validate at (default: now)",
        },
    },
}
_PROBLEM = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
VERIFY_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": VERIFY_REQUEST_SCHEMA}},
        "description": "JSON only. A photo of a QR code goes to POST /verify (the checkpoint page). "
        "Any JSON that is not a valid certificate is answered 200 with valid: false and the reason.",
    },
    "responses": {
        "415": {"description": "the body is not JSON (a photo goes to /verify)", "content": _PROBLEM},
        "422": {"description": "the body is declared JSON but cannot be parsed", "content": _PROBLEM},
    },
}
NOT_JSON = 'the body must be JSON: {"hc1": "HC1:..."}; a photo of a QR code goes to POST /verify'


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@router.post("/api/verify", response_model=VerifyAnswer, openapi_extra=VERIFY_OPENAPI)
async def api_verify(request: Request, service: Certificates) -> JSONResponse:
    if not _is_json(request.headers.get("content-type", "")):
        return JSONResponse({"detail": NOT_JSON}, status_code=415)
    try:
        body = await _read_limited(request, MAX_API_BODY)
        if body is None:
            return JSONResponse(VerificationResult(False, "input too large").to_json())
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return JSONResponse(
                {"detail": "the body is not valid JSON (UTF-8): " + NOT_JSON}, status_code=422
            )
        if not isinstance(data, dict):
            return _bad_request("the body must be a JSON object")
        try:
            at = parse_instant(data.get("at"))
        except (ValueError, TypeError):
            return _bad_request("'at' must be an ISO 8601 instant, e.g. 2025-01-31T12:00:00Z")
        result = await service.verify(data.get("hc1"), at)
        return JSONResponse(result.to_json())
    except Exception:  # the contract: never a 500 to a checkpoint
        log.exception("/api/verify failed")
        return JSONResponse(VerificationResult(False, "could not be checked").to_json())


def _has_code_tab() -> bool:
    return (TEMPLATES_DIR / "certificates" / "verify_code_tab.html").exists()


def _verify_page(
    request: Request,
    lang: str,
    result: VerificationResult | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    reason = REASONS[lang].get(result.code, result.code) if result else None
    return _page(
        request,
        "certificates/verify.html",
        lang,
        status,
        result=result,
        reason=reason,
        error=error,
        has_code_tab=_has_code_tab(),
    )


@router.get("/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_page(request: Request) -> HTMLResponse:
    return _verify_page(request, _lang(request))


class TooManyPixels(ValueError):
    """The photo's header declares more pixels than MAX_PHOTO_PIXELS / MAX_PHOTO_SIDE."""


def _qr_text_in_photo(data: bytes) -> str | None:
    """The text of the first QR code in a photo; TooManyPixels for an oversized one (checked from
    the header, before decoding), ValueError when it is not a usable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: only the header is read here
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS or max(width, height) > MAX_PHOTO_SIDE:
                raise TooManyPixels(f"{width}x{height}")
            image.draft("L", (DECODE_SIDE, DECODE_SIDE))  # JPEG: decode at reduced size
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(str(exc)) from exc
    if max(gray.size) > DECODE_SIDE:
        gray.thumbnail((DECODE_SIDE, DECODE_SIDE))
    found = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    return found[0].text if found else None


async def _decode_photo(request: Request, data: bytes) -> str | None:
    """Decodes in a worker thread, at most DECODE_SLOTS at once; TimeoutError when no slot frees
    up within DECODE_WAIT_SECONDS."""
    state = request.app.state
    slots: asyncio.Semaphore | None = getattr(state, "photo_decode_slots", None)
    if slots is None:
        slots = state.photo_decode_slots = asyncio.Semaphore(DECODE_SLOTS)
    async with asyncio.timeout(DECODE_WAIT_SECONDS):
        await slots.acquire()
    try:
        return await asyncio.to_thread(_qr_text_in_photo, data)
    finally:
        slots.release()


@router.post("/verify", response_class=HTMLResponse, include_in_schema=False)
async def verify_submit(request: Request, service: Certificates) -> HTMLResponse:
    lang = language(request.query_params.get("lang"))
    t = TEXTS[lang]
    declared = request.headers.get("content-length") or "0"
    if declared.isdigit() and int(declared) > MAX_UPLOAD + 64 * 1024:
        return _verify_page(request, lang, error=t["image_too_large"], status=413)
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception:
        return _verify_page(request, lang, error=t["nothing_to_check"])
    lang = language(str(form.get("lang") or lang))
    t = TEXTS[lang]
    text = form.get("hc1")
    photo = form.get("photo")
    if photo is not None and not isinstance(photo, str) and photo.filename:
        data = await photo.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            return _verify_page(request, lang, error=t["image_too_large"], status=413)
        try:
            text = await _decode_photo(request, data)
        except TooManyPixels:
            return _verify_page(request, lang, error=t["image_too_many_pixels"], status=413)
        except ValueError:
            return _verify_page(request, lang, error=t["not_an_image"], status=400)
        except TimeoutError:
            busy = _verify_page(request, lang, error=t["busy"], status=503)
            busy.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return busy
        if text is None:
            return _verify_page(request, lang, error=t["no_qr_found"])
    if not isinstance(text, str) or not text.strip():
        return _verify_page(request, lang, error=t["nothing_to_check"])
    return _verify_page(request, lang, result=await service.verify(text))
