"""Builds the engine's services from settings and the app state (called from app.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from conversations.bindings import BindingStore
from conversations.context import EngineConfig, Services
from conversations.limits import RateCounters
from conversations.notifications import CaseNotifier
from conversations.otp import CodeGenerator, OtpService, random_code
from conversations.service import ConversationService
from registry_client.clock import Clock, utc_now
from settings import Settings

Background = list[tuple[str, float, Callable[[], Awaitable[object]]]]


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        hotline=settings.hotline_number,
        otp_ttl_seconds=settings.otp_ttl_seconds,
        cert_link_ttl_days=settings.cert_link_ttl_days,
        public_base_url=settings.public_base_url.rstrip("/"),
        strip_diacritics=settings.sms_strip_diacritics,
        secret_key=settings.resolved_secret_key,
    )


def build_conversations(
    settings: Settings,
    state: Any,
    *,
    clock: Clock = utc_now,
    generate: CodeGenerator = random_code,
) -> ConversationService:
    """A ConversationService over `state.db_sessions`, `state.registry` and (when present)
    `state.certificates`."""
    sessions = state.db_sessions
    config = engine_config(settings)
    services = Services(
        registry=state.registry,
        otp=OtpService(
            sessions, config.secret_key.encode(), settings.otp_ttl_seconds, clock=clock, generate=generate
        ),
        bindings=BindingStore(sessions, settings.binding_ttl_days, clock),
        counters=RateCounters(sessions, clock),
        config=config,
        certificates=getattr(state, "certificates", None),
        clock=clock,
    )
    return ConversationService(sessions, services)


def wire_conversations(settings: Settings, state: Any, background: Background) -> None:
    """app.py's "conversations" section: state.conversations, state.case_notifier, their jobs."""
    state.conversations = build_conversations(settings, state)
    state.case_notifier = CaseNotifier(
        state.outbox, state.registry, certificates=getattr(state, "certificates", None)
    )
    background.append(("conversations-cleanup", 3600.0, state.conversations.cleanup))
    background.append(("case-notifications-sweep", 60.0, state.case_notifier.sweep_resolved))
