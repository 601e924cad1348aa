"""Who may do what in the console, and the FastAPI dependencies that enforce it.

Roles: `agent` (hotline: person search, the hotline queue), `site` (only its own site's reports),
`admin` (everything). Another site's report is 403 on every route and in the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from registry_client.models import CorrectionCase
from web.console.auth import SESSION_COOKIE, SessionInfo, csrf_matches
from web.console.users import ConsoleUser, Role

HOTLINE = "hotline"  # the queue of reports with no site


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Denied(Exception):
    """403: `key` is the i18n key of the reason."""

    def __init__(self, key: str = "forbidden") -> None:
        super().__init__(key)
        self.key = key


class PageNotFound(Exception):
    def __init__(self, key: str = "not_found") -> None:
        super().__init__(key)
        self.key = key


# -- rules ------------------------------------------------------------------------------------
def can_view_case(user: ConsoleUser, case: CorrectionCase) -> bool:
    if user.role == Role.ADMIN:
        return True
    if user.role == Role.SITE:
        return case.site_code is not None and case.site_code == user.site_code
    return case.site_code is None  # agents work the hotline queue


def can_resolve_case(user: ConsoleUser, case: CorrectionCase) -> bool:
    if user.role == Role.ADMIN:
        return True
    return user.role == Role.SITE and case.site_code is not None and case.site_code == user.site_code


def can_reassign_case(user: ConsoleUser, case: CorrectionCase) -> bool:
    return can_view_case(user, case)


def queue_scope(user: ConsoleUser, requested: str | None) -> str | None:
    """The queue a user may list: a site code, HOTLINE, or None (all, admin only). Denied otherwise."""
    wanted = (requested or "").strip()
    if user.role == Role.ADMIN:
        if not wanted:
            return None
        return HOTLINE if wanted.lower() == HOTLINE else wanted.upper()
    if user.role == Role.SITE:
        if wanted and wanted.upper() != (user.site_code or "").upper():
            raise Denied("other_site")
        return user.site_code
    if wanted and wanted.lower() != HOTLINE:
        raise Denied("other_site")
    return HOTLINE


def require_case_view(user: ConsoleUser, case: CorrectionCase) -> None:
    if not can_view_case(user, case):
        raise Denied("other_site")


# -- dependencies -----------------------------------------------------------------------------
async def page_session(request: Request) -> SessionInfo:
    console = request.app.state.console
    info = await console.auth.session_info(request.cookies.get(SESSION_COOKIE))
    if info is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/agent/")
    request.state.console_session = info
    request.state.console_unread = await console.notifications.unread_count(info.user)
    return info


def roles(*allowed: Role):  # type: ignore[no-untyped-def]
    async def dependency(request: Request) -> SessionInfo:
        info = await page_session(request)
        if info.user.role not in allowed:
            raise Denied("forbidden")
        return info

    return dependency


async def _check_csrf(request: Request, info: SessionInfo) -> None:
    submitted = request.headers.get("x-csrf-token")
    if submitted is None:
        form = await request.form()
        value = form.get("csrf_token")
        submitted = value if isinstance(value, str) else None
    if not csrf_matches(info.csrf_token, submitted):
        raise Denied("csrf")


def form_roles(*allowed: Role):  # type: ignore[no-untyped-def]
    """A state-changing form post: logged in, one of `allowed`, and a valid CSRF token."""

    async def dependency(request: Request) -> SessionInfo:
        info = await page_session(request)
        await _check_csrf(request, info)
        if info.user.role not in allowed:
            raise Denied("forbidden")
        return info

    return dependency


ANY_ROLE = (Role.AGENT, Role.SITE, Role.ADMIN)
AnyUser = Annotated[SessionInfo, Depends(roles(*ANY_ROLE))]
AgentUser = Annotated[SessionInfo, Depends(roles(Role.AGENT, Role.ADMIN))]
AdminUser = Annotated[SessionInfo, Depends(roles(Role.ADMIN))]
AnyForm = Annotated[SessionInfo, Depends(form_roles(*ANY_ROLE))]
AgentForm = Annotated[SessionInfo, Depends(form_roles(Role.AGENT, Role.ADMIN))]
SiteForm = Annotated[SessionInfo, Depends(form_roles(Role.SITE, Role.ADMIN))]
AdminForm = Annotated[SessionInfo, Depends(form_roles(Role.ADMIN))]
