"""Wiring of the console into the app: `setup_console(state)` (in the lifespan) builds
`app.state.console` and registers the escalation job; `install_console(app)` adds the routers
(their error pages come with the routes: see web/console/routing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import FastAPI

from registry_client.clock import Clock, service_date, utc_now
from web.console.auth import Auth
from web.console.citizen import CitizenMessenger
from web.console.escalation import EscalationJob
from web.console.notifications import NotificationStore
from web.console.pages import Flash
from web.console.sla import SlaSettings
from web.console.users import UserStore


@dataclass
class ConsoleState:
    app_state: Any
    settings: Any
    auth: Auth
    users: UserStore
    notifications: NotificationStore
    sla: SlaSettings
    citizen: CitizenMessenger
    flash: Flash
    escalation: EscalationJob | None = None
    clock: Clock = utc_now  # tests pin it

    def today(self) -> date:
        """Today in Viet Nam (SLA days, due dates, "not in the future" checks)."""
        return service_date(self.clock())

    @property
    def registry(self) -> Any:
        return self.app_state.registry

    @property
    def db_sessions(self) -> Any:
        return self.app_state.db_sessions


def setup_console(state: Any) -> ConsoleState:
    settings = state.settings
    sessions = state.db_sessions
    secret = settings.secret_keys.console_sessions  # its own key: a link token is no session
    console = ConsoleState(
        app_state=state,
        settings=settings,
        auth=Auth(sessions, secret, secure_cookies=settings.public_base_url.lower().startswith("https://")),
        users=UserStore(sessions),
        notifications=NotificationStore(sessions),
        sla=SlaSettings(sessions, settings.sla_working_days),
        citizen=CitizenMessenger(state),
        flash=Flash(secret),
    )
    console.escalation = EscalationJob(console)
    state.console = console
    state.background.append(
        ("console-escalation", settings.escalation_interval_seconds, console.escalation.tick)
    )
    return console


def install_console(app: FastAPI) -> None:
    from web.console import api, routes_admin, routes_agent, routes_login, routes_site

    for module in (routes_login, routes_agent, routes_site, routes_admin, api):
        app.include_router(module.router)
