"""Rendering console pages: one Jinja2 environment (autoescape on), the language, flash notes."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from certificates.dose_series import read_series
from registry_client.identity import mask_national_id, mask_phone
from registry_client.vaccines import lookup_product
from web.console.auth import COOKIE_PATH, LANG_COOKIE
from web.console.i18n import LANGUAGES, translator

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FLASH_COOKIE = "vx_flash"

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def _local(value: datetime | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    return value.astimezone(LOCAL_TZ).strftime(fmt)


def _day(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else "—"


def _vaccine(code: str | None) -> str:
    product = lookup_product(code or "")
    return product.name if product else (code or "—")


environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    local_time=_local,
    day=_day,
    mask_phone=mask_phone,
    mask_id=mask_national_id,
    vaccine=_vaccine,
    series=read_series,  # what the doses prove (certificates.dose_series): console/_series.html
)


def language_of(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, "vi")
    return lang if lang in LANGUAGES else "vi"


class Flash:
    """A one-shot note shown on the next page (signed cookie: key + params, never raw HTML)."""

    def __init__(self, secret_key: bytes | str) -> None:
        self._signer = URLSafeSerializer(secret_key, salt="vx-console-flash")

    def set(self, response: Response, key: str, level: str = "ok", **params: Any) -> None:
        value = self._signer.dumps({"k": key, "l": level, "p": {k: str(v) for k, v in params.items()}})
        response.set_cookie(FLASH_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="lax", max_age=120)

    def take(self, request: Request) -> dict[str, Any] | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


def redirect(
    url: str, flash: Flash | None = None, key: str | None = None, level: str = "ok", **params: Any
) -> Response:
    response = RedirectResponse(url, status_code=303)
    if flash is not None and key is not None:
        flash.set(response, key, level, **params)
    return response


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    lang = language_of(request)
    t = translator(lang)
    console = getattr(request.app.state, "console", None)
    session = getattr(request.state, "console_session", None)
    flash = console.flash.take(request) if console is not None else None
    values: dict[str, Any] = {
        "request": request,
        "lang": lang,
        "t": t,
        "user": session.user if session is not None else None,
        "csrf_token": session.csrf_token if session is not None else getattr(request.state, "login_csrf", ""),
        "flash": flash,
        "unread": getattr(request.state, "console_unread", 0),
        "current_path": request.url.path,
        "json": json.dumps,
    }
    values.update(context or {})
    body = environment.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response
