"""Admin pages: dashboard, users, sites, SLA, and the outbound message log (the local outbox)."""

from __future__ import annotations

from fastapi import Form
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from conversations.outbound import make_renderer
from outbox.store import masked_row
from outbox.tables import OutboxRow
from registry_client.clock import utc_now
from registry_client.models import AuditEntry, Site
from web.console.access import AdminForm, AdminUser
from web.console.dashboard import build_dashboard
from web.console.pages import redirect, render
from web.console.routing import console_router
from web.console.sla import MAX_DAYS, MIN_DAYS, apply_to_registry
from web.console.users import Role, UserError

router = console_router()


@router.get("/agent/admin")
async def dashboard(request: Request, info: AdminUser) -> Response:
    board = await build_dashboard(request.app.state.console, utc_now())
    peak = max([1, *(max(d.received, d.resolved) for d in board.days)])
    return render(request, "console/admin_dashboard.html", {"board": board, "peak": peak})


@router.get("/agent/admin/users")
async def users(request: Request, info: AdminUser) -> Response:
    console = request.app.state.console
    return render(
        request,
        "console/admin_users.html",
        {
            "users": await console.users.list_all(),
            "roles": list(Role),
            "sites": await console.registry.list_sites(),
        },
    )


@router.post("/agent/admin/users")
async def create_user(
    request: Request,
    info: AdminForm,
    username: str = Form(""),
    role: str = Form(""),
    site_code: str = Form(""),
    password: str = Form(""),
) -> Response:
    console = request.app.state.console
    if role == Role.SITE and site_code:
        sites = {s.code for s in await console.registry.list_sites()}
        if site_code.strip().upper() not in sites:
            return redirect("/agent/admin/users", console.flash, "unknown_site", "error")
    try:
        user = await console.users.create(username, role, site_code, password, created_by=info.user.actor)
    except UserError as exc:
        return redirect("/agent/admin/users", console.flash, exc.key, "error")
    await console.registry.audit(
        AuditEntry(info.user.actor, "user.create", None, f"{user.username} ({user.role.value})")
    )
    return redirect("/agent/admin/users", console.flash, "user_created", name=user.username)


@router.post("/agent/admin/users/{user_id}/disable")
@router.post("/agent/admin/users/{user_id}/enable")
async def toggle_user(request: Request, info: AdminForm, user_id: int) -> Response:
    console = request.app.state.console
    disable = request.url.path.endswith("/disable")
    if disable and user_id == info.user.id:
        return redirect("/agent/admin/users", console.flash, "cannot_disable_self", "error")
    try:
        user = await console.users.set_disabled(user_id, disable)
    except UserError as exc:
        return redirect("/agent/admin/users", console.flash, exc.key, "error")
    await console.registry.audit(
        AuditEntry(info.user.actor, "user.disable" if disable else "user.enable", None, user.username)
    )
    return redirect(
        "/agent/admin/users",
        console.flash,
        "user_disabled" if disable else "user_enabled",
        name=user.username,
    )


@router.post("/agent/admin/users/{user_id}/password")
async def reset_password(
    request: Request, info: AdminForm, user_id: int, password: str = Form("")
) -> Response:
    console = request.app.state.console
    try:
        await console.users.set_password(user_id, password)
    except UserError as exc:
        return redirect("/agent/admin/users", console.flash, exc.key, "error")
    await console.registry.audit(AuditEntry(info.user.actor, "user.password_reset", None, str(user_id)))
    return redirect("/agent/admin/users", console.flash, "password_reset")


@router.get("/agent/admin/sites")
async def sites(request: Request, info: AdminUser) -> Response:
    return render(
        request, "console/admin_sites.html", {"sites": await request.app.state.console.registry.list_sites()}
    )


@router.post("/agent/admin/sites")
async def save_site(
    request: Request, info: AdminForm, code: str = Form(""), name: str = Form(""), province: str = Form("")
) -> Response:
    console = request.app.state.console
    code, name = code.strip().upper(), name.strip()
    if not (2 <= len(code) <= 16 and code.replace("-", "").replace("_", "").isalnum()) or not name:
        return redirect("/agent/admin/sites", console.flash, "site_invalid", "error")
    site = await console.registry.upsert_site(Site(code, name[:200], province.strip()[:100] or None))
    await console.registry.audit(AuditEntry(info.user.actor, "site.upsert", None, site.code))
    return redirect("/agent/admin/sites", console.flash, "site_saved", code=site.code)


@router.get("/agent/admin/sla")
async def sla(request: Request, info: AdminUser) -> Response:
    days = await request.app.state.console.sla.working_days()
    return render(request, "console/admin_sla.html", {"days": days, "min": MIN_DAYS, "max": MAX_DAYS})


@router.post("/agent/admin/sla")
async def save_sla(request: Request, info: AdminForm, days: str = Form("")) -> Response:
    console = request.app.state.console
    try:
        value = int(days)
        await console.sla.set_working_days(value, info.user.actor)
    except ValueError:
        return redirect("/agent/admin/sla", console.flash, "sla_invalid", "error", min=MIN_DAYS, max=MAX_DAYS)
    apply_to_registry(console.registry, value)
    await console.registry.audit(AuditEntry(info.user.actor, "sla.update", None, f"{value} working days"))
    return redirect("/agent/admin/sla", console.flash, "sla_saved", days=value)


@router.get("/agent/admin/outbox")
async def outbox(request: Request, info: AdminUser, channel: str = "") -> Response:
    console = request.app.state.console
    async with console.db_sessions() as session:
        stmt = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(100)
        if channel in ("sms", "telegram", "whatsapp"):
            stmt = stmt.where(OutboxRow.channel == channel)
        rows = list((await session.scalars(stmt)).all())
    # As sent, but masked: the console never opens a seal (only the local simulators do).
    shown = make_renderer(strip_sms_diacritics=False, hotline=console.settings.hotline_number)
    texts = {row.id: shown(masked_row(row)) for row in rows}
    return render(request, "console/admin_outbox.html", {"rows": rows, "texts": texts, "channel": channel})
