"""Login, logout, language switch, notifications, the console's static files, and `/agent/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import Form
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from registry_client.models import AuditEntry
from web.console.access import AnyForm, AnyUser, Denied
from web.console.auth import LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginOutcome, csrf_matches
from web.console.i18n import LANGUAGES
from web.console.pages import SECURITY_HEADERS, redirect, render
from web.console.routing import console_router
from web.console.users import Role

router = console_router()
STATIC = Path(__file__).resolve().parent.parent / "static"
HOME = {Role.AGENT: "/agent/search", Role.SITE: "/agent/queue", Role.ADMIN: "/agent/admin"}


def safe_next(value: str | None) -> str | None:
    if value and value.startswith("/agent/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def _login_page(request: Request, error: str | None = None, status: int = 200, **extra: object) -> Response:
    console = request.app.state.console
    token, new_cookie = console.auth.login_csrf(request.cookies.get(LOGIN_CSRF_COOKIE))
    request.state.login_csrf = token
    context = {"error": error, "next": safe_next(request.query_params.get("next")) or "", **extra}
    response = render(request, "console/login.html", context, status_code=status)
    if new_cookie:
        console.auth.set_login_csrf_cookie(response, new_cookie)
    return response


@router.get("/agent/login")
async def login_form(request: Request) -> Response:
    console = request.app.state.console
    info = await console.auth.session_info(request.cookies.get(SESSION_COOKIE))
    if info is not None:
        return redirect(HOME[info.user.role])
    return _login_page(request)


@router.post("/agent/login")
async def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form(""),
) -> Response:
    console = request.app.state.console
    current = await console.auth.session_info(request.cookies.get(SESSION_COOKIE))
    valid = console.auth.login_csrf_valid(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token) or (
        current is not None and csrf_matches(current.csrf_token, csrf_token)
    )
    if not valid:
        raise Denied("csrf")
    client_ip = request.client.host if request.client else "unknown"
    result = await console.auth.login(username, password, client_ip)
    if result.outcome == LoginOutcome.LOCKED:
        response = _login_page(request, "locked", status=429, seconds=result.retry_after)
        response.headers["Retry-After"] = str(result.retry_after)
        return response
    if result.outcome != LoginOutcome.OK or result.user is None:
        return _login_page(request, "bad_credentials", status=401)
    cookie = await console.auth.open_session(result.user, request.cookies.get(SESSION_COOKIE))
    await console.registry.audit(AuditEntry(result.user.actor, "console.login", None, client_ip))
    response = redirect(safe_next(next) or HOME[result.user.role])
    console.auth.set_session_cookie(response, cookie)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/agent")
    return response


@router.post("/agent/logout")
async def logout(request: Request, info: AnyForm) -> Response:
    console = request.app.state.console
    await console.auth.close_session(request.cookies.get(SESSION_COOKIE))
    response = redirect("/agent/login")
    console.auth.clear_session_cookie(response)
    return response


@router.post("/agent/lang")
async def switch_language(
    request: Request, lang: str = Form("vi"), csrf_token: str = Form(""), back: str = Form("")
) -> Response:
    """Works logged in (session token) and on the login page (login cookie token)."""
    console = request.app.state.console
    info = await console.auth.session_info(request.cookies.get(SESSION_COOKIE))
    valid = (
        csrf_matches(info.csrf_token, csrf_token)
        if info is not None
        else console.auth.login_csrf_valid(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token)
    )
    if not valid:
        raise Denied("csrf")
    response = redirect(safe_next(back) or ("/agent/" if info else "/agent/login"))
    response.set_cookie(
        LANG_COOKIE,
        lang if lang in LANGUAGES else "vi",
        path="/agent",
        max_age=365 * 86400,
        samesite="lax",
        httponly=True,
    )
    return response


@router.get("/agent")
@router.get("/agent/")
async def home(request: Request, info: AnyUser) -> Response:
    return redirect(HOME[info.user.role])


@router.get("/agent/notifications")
async def notifications(request: Request, info: AnyUser) -> Response:
    items = await request.app.state.console.notifications.list(info.user)
    return render(request, "console/notifications.html", {"items": items})


@router.post("/agent/notifications/read")
async def notifications_read(request: Request, info: AnyForm) -> Response:
    await request.app.state.console.notifications.mark_all_read(info.user)
    return redirect("/agent/notifications")


@router.get("/agent/static/{name}")
async def static_file(name: str) -> Response:
    if name not in ("console.css", "console.js"):
        return Response(status_code=404)
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(
        STATIC / name,
        media_type=media,
        headers={
            "Cache-Control": "max-age=300",
            "X-Content-Type-Options": SECURITY_HEADERS["X-Content-Type-Options"],
        },
    )
