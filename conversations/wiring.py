"""Builds the engine's services from settings and the app state (called from app.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from conversations.audit_queue import AuditQueue
from conversations.bindings import BindingStore
from conversations.context import EngineConfig, Services
from conversations.hot_state import MemoryHotState, RedisHotState
from conversations.limits import Counters, RateCounters
from conversations.notifications import CaseNotifier
from conversations.otp import CodeGenerator, OtpService, random_code
from conversations.phone_change import PhoneChanges
from conversations.service import ConversationService
from conversations.whatsapp_window import WhatsAppWindow
from db.secret_keys import CODE_HASHES, derive_key
from outbox.sealing import OutboxSeal
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
        upload_link_key=settings.secret_keys.upload_links,
    )


def build_conversations(
    settings: Settings,
    state: Any,
    *,
    clock: Clock = utc_now,
    generate: CodeGenerator = random_code,
) -> ConversationService:
    """A ConversationService over `state.db_sessions`, `state.registry` and (when present)
    `state.certificates`. With REDIS_URL: USSD session state, binding caches and rate counters in
    Redis (shared by every worker); without it everything stays in SQL."""
    sessions = state.db_sessions
    config = engine_config(settings)
    counters: Counters = RateCounters(sessions, clock)
    if settings.redis_url:
        from conversations.redis_limits import RedisRateCounters

        counters = RedisRateCounters(
            settings.redis_url, settings.redis_key_prefix, RateCounters(sessions, clock)
        )
    bindings = BindingStore(sessions, settings.binding_ttl_days, clock)
    services = Services(
        registry=state.registry,
        otp=OtpService(
            sessions,
            settings.secret_keys.code_hashes,
            settings.otp_ttl_seconds,
            clock=clock,
            generate=generate,
            counters=counters,
            resend_after=timedelta(seconds=settings.otp_resend_seconds),
        ),
        bindings=bindings,
        counters=counters,
        config=config,
        certificates=getattr(state, "certificates", None),
        clock=clock,
    )
    service = ConversationService(
        sessions,
        services,
        audits=AuditQueue(state.registry, clock=clock),
        outbox_seal=OutboxSeal(settings.secret_keys.outbox_seal),
    )
    outbox = getattr(state, "outbox", None)
    if outbox is not None:
        service.on_outbound = outbox.kick  # codes and links leave at once, not at the next poll
    if settings.redis_url:
        from db.redis_wire import redis_client

        # no timeout of its own: RedisHotState bounds each call itself (far cheaper; see there)
        service.hot = RedisHotState(
            redis_client(settings.redis_url), service.store, settings.redis_key_prefix
        )
        bindings.on_change = service.hot.bindings_changed
    elif getattr(state, "single_process", False):  # one worker process: the session in its memory
        service.hot = MemoryHotState(service.store)
        bindings.on_change = service.hot.bindings_changed
    return service


def wire_conversations(settings: Settings, state: Any, background: Background) -> None:
    """app.py's "conversations" section: state.conversations, state.case_notifier, their jobs."""
    state.conversations = build_conversations(settings, state)
    state.case_notifier = CaseNotifier(
        state.outbox,
        state.registry,
        certificates=getattr(state, "certificates", None),
        bindings=state.conversations.bindings,
        hotline=settings.hotline_number,
        whatsapp=WhatsAppWindow(state.db_sessions) if settings.whatsapp_enabled else None,
    )
    state.phone_changes = PhoneChanges(
        state.db_sessions,
        state.registry,
        state.conversations.bindings,
        state.conversations.services.counters,
        state.outbox,
        derive_key(settings.resolved_secret_key, CODE_HASHES),
    )
    background.append(("conversations-cleanup", 3600.0, state.conversations.cleanup))
    background.append(("case-notifications-sweep", 60.0, state.case_notifier.sweep_resolved))
