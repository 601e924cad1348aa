"""One turn's working set: the inbound message, the session state, services, and what to answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conversations.bindings import BindingStore
from conversations.effects import Effect
from conversations.i18n import t
from conversations.limits import Counters
from conversations.model import Channel, Inbound, Option, Reply, Turn
from conversations.otp import OtpService
from conversations.ports import CertificatePort
from conversations.state import SessionState
from outbox.store import OutboundMessage
from registry_client.clock import Clock, utc_now
from registry_client.identity import mask_phone
from registry_client.models import AuditEntry, Person
from registry_client.protocol import Registry


@dataclass(frozen=True)
class EngineConfig:
    hotline: str = "1900 9095"
    otp_ttl_seconds: int = 300
    cert_link_ttl_days: int = 7
    public_base_url: str = "http://127.0.0.1:8000"
    strip_diacritics: bool = True  # SMS and USSD text without Vietnamese diacritics (GSM-7)
    upload_link_key: bytes = b"change-me"  # the key derived for upload links (db/secret_keys.py)
    resume_minutes: int = 5  # a dropped USSD session can be resumed this long
    flow_timeout_minutes: int = 30  # an unfinished flow is forgotten after this idle time


@dataclass
class Services:
    registry: Registry
    otp: OtpService
    bindings: BindingStore
    counters: Counters
    config: EngineConfig
    certificates: CertificatePort | None = None
    clock: Clock = utc_now


class Context:
    def __init__(self, inbound: Inbound, state: SessionState, services: Services) -> None:
        self.inbound, self.state, self.services = inbound, state, services
        self.turn = Turn(language=state.language)
        self.effects: list[Effect] = []
        self.audits: list[AuditEntry] = []
        self._persons_bound: list[str] | None = None
        self.code_settled = False  # a code was used up in this turn (not yet written)
        self._people: dict[str, Person] = {}

    # -- who -----------------------------------------------------------------------------------
    @property
    def channel(self) -> Channel:
        return self.inbound.channel

    @property
    def address(self) -> str:
        return self.inbound.address

    @property
    def caller_phone(self) -> str | None:
        """The caller's own phone when the channel proves it (SMS, USSD, a voice call's caller ID)."""
        return self.address if self.channel in (Channel.SMS, Channel.USSD, Channel.VOICE) else None

    @property
    def actor(self) -> str:
        if self.channel == Channel.TELEGRAM:
            return f"telegram:{self.address}"
        return f"{self.channel.value}:{mask_phone(self.address)}"

    @property
    def lang(self) -> str:
        return self.state.language

    @property
    def config(self) -> EngineConfig:
        return self.services.config

    @property
    def registry(self) -> Registry:
        return self.services.registry

    async def bound_persons(self) -> list[str]:
        if self._persons_bound is None:
            self._persons_bound = await self.services.bindings.persons_for(self.channel, self.address)
        return self._persons_bound

    def forget_bound_cache(self) -> None:
        self._persons_bound = None

    def code_pending(self) -> bool:
        """A one-time code sent for this caller is still valid (kept in the session: no query)."""
        until = self.state.code_until
        if self.code_settled or not until:
            return False
        return datetime.fromisoformat(until) > self.services.clock()

    def note_bound(self, person_ids: list[str]) -> None:
        """Bindings decided in this turn (not yet written) count as bound for the rest of it."""
        self._persons_bound = list(person_ids)

    async def person(self, person_id: str) -> Person:
        if person_id not in self._people:
            self._people[person_id] = await self.registry.get_person(person_id)
        return self._people[person_id]

    # -- what to answer ------------------------------------------------------------------------
    def t(self, key: str, **params: Any) -> str:
        return t(self.lang, key, hotline=self.config.hotline, **params)

    def say(self, key: str, **params: Any) -> None:
        self.turn.replies.append(Reply(self.t(key, **params)))

    def ask(
        self,
        text: str,
        options: Sequence[tuple[str, str]] = (),
        *,
        back: bool = True,
        ask_contact: bool = False,
    ) -> None:
        opts = [Option(k, v) for k, v in options]
        if back and self.channel != Channel.SMS:  # by SMS a "0 Back" line means nothing: keywords lead
            opts.append(Option("0", self.t("common.back")))
        self.turn.replies.append(Reply(text, tuple(opts), ask_contact=ask_contact))

    def send(self, message: OutboundMessage) -> None:
        self.turn.outbound.append(message)

    def effect(self, *effects: Effect) -> None:
        self.effects.extend(effects)

    def audit(self, action: str, person_id: str | None, detail: str | None = None) -> None:
        self.audits.append(AuditEntry(actor=self.actor, action=action, person_id=person_id, detail=detail))

    # -- where we are ----------------------------------------------------------------------------
    def start_flow(self, flow: str, step: str, **data: Any) -> None:
        self.state.clear_flow()
        self.state.flow, self.state.step, self.state.data = flow, step, dict(data)

    def advance(self, step: str) -> None:
        """Moves to `step`, remembering the current one for `0` (back)."""
        if self.state.step is not None:
            self.state.back.append(self.state.step)
        self.state.step = step

    def finish(self, *, end: bool = False) -> None:
        """The flow is over: back to the main menu. USSD ends the session with `end`, else offers
        `0 Main menu` (a USSD caller is never left on a dead end)."""
        self.state.clear_flow()
        self.state.step = "done"
        if end and self.channel.keypad:
            self.turn.end = True
            return
        if self.channel != Channel.SMS and self.turn.replies:
            last = self.turn.replies[-1]
            menu = Option("0", self.t("common.menu"))
            self.turn.replies[-1] = Reply(
                last.text, (*last.options, menu), last.certificate, last.ask_contact
            )
