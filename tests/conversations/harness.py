"""A real conversation stack for tests: migrated SQLite (demo identities), the embedded registry
behind the resilience wrapper, the ConversationService — clock and one-time codes pinned."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from conversations.bindings import BindingStore
from conversations.context import EngineConfig, Services
from conversations.limits import RateCounters
from conversations.model import Channel, Inbound, Turn
from conversations.otp import OtpService
from conversations.outbound import make_renderer
from conversations.ports import CertificatePort
from conversations.rendering import render_sms, render_ussd
from conversations.service import ConversationService
from db.base import make_async_engine, make_sessionmaker
from db.secret_keys import SecretKeys
from outbox.sealing import OutboxSeal
from outbox.store import Outbox
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.resilience import PendingWrites, ResilientRegistry

START = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)  # a Monday
PINNED_CODE = "482915"
SECRET_KEY = "test-secret-key"
KEYS = SecretKeys.derive(SECRET_KEY)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class PinnedCodes:
    """Hands out PINNED_CODE, or the codes queued with `next`."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.issued: list[str] = []

    def __call__(self) -> str:
        code = self.queue.pop(0) if self.queue else PINNED_CODE
        self.issued.append(code)
        return code


@dataclasses.dataclass
class Stack:
    engine: AsyncEngine
    sessions: async_sessionmaker[Any]
    registry: ResilientRegistry
    service: ConversationService
    outbox: Outbox
    clock: FakeClock
    codes: PinnedCodes
    config: EngineConfig

    async def sent_sms(self, phone: str) -> list[str]:
        render = make_renderer(strip_sms_diacritics=self.config.strip_diacritics, hotline=self.config.hotline)
        return [render(row) for row in await self.outbox.messages_to("sms", phone)]

    async def close(self) -> None:
        await self.engine.dispose()


def build_stack(
    url: str,
    data_dir: Path,
    *,
    certificates: CertificatePort | None | str = "real",
    strip: bool = True,
    clock: FakeClock | None = None,
) -> Stack:
    clock = clock or FakeClock()
    codes = PinnedCodes()
    engine = make_async_engine(url)
    sessions = make_sessionmaker(engine)
    registry = ResilientRegistry(
        EmbeddedRegistry(engine, clock=clock),
        PendingWrites(sessions, data_dir / "pending.jsonl", clock),
        clock=clock,
        timeout=5.0,
    )
    config = EngineConfig(
        hotline="1900 9095",
        otp_ttl_seconds=300,
        public_base_url="http://vax.test",
        strip_diacritics=strip,
        upload_link_key=KEYS.upload_links,
    )
    if certificates == "real":  # the real CertificateService (HCERT, links) over this database
        from certificates.service import build_certificate_service
        from settings import Settings

        settings = Settings(
            database_url=url,
            data_dir=data_dir,
            secret_key=SECRET_KEY,
            public_base_url="http://vax.test",
        )
        certificates = build_certificate_service(settings, sessions)
    assert not isinstance(certificates, str)
    seal = OutboxSeal(KEYS.outbox_seal)
    services = Services(
        registry=registry,
        otp=OtpService(sessions, KEYS.code_hashes, 300, clock=clock, generate=codes),
        bindings=BindingStore(sessions, 30, clock),
        counters=RateCounters(sessions, clock),
        config=config,
        certificates=certificates,
        clock=clock,
    )
    return Stack(
        engine,
        sessions,
        registry,
        ConversationService(sessions, services, outbox_seal=seal),
        Outbox(sessions, seal=seal, clock=clock),
        clock,
        codes,
        config,
    )


class Phone:
    """One caller on one channel; `send` returns what the caller sees (the rendered answer)."""

    _ids: Iterator[int] = iter(range(1, 10**9))

    def __init__(self, stack: Stack, channel: Channel, address: str) -> None:
        self.stack, self.channel, self.address = stack, channel, address
        self.session = ""
        self.chain: list[str] = []
        self.last_turn: Turn | None = None

    async def dial(self) -> str:
        """USSD: a new session (empty text)."""
        self.session = f"ATUid_{next(self._ids)}"
        self.chain = []
        return await self._ussd()

    async def _ussd(self) -> str:
        inbound = Inbound(
            Channel.USSD,
            self.address,
            text=self.chain[-1] if self.chain else "",
            session_key=self.session,
            inputs=tuple(self.chain),
        )
        self.last_turn = await self.stack.service.handle(inbound)
        return render_ussd(self.last_turn, strip=self.stack.config.strip_diacritics)

    async def send(self, text: str, **extra: Any) -> str:
        if self.channel == Channel.USSD:
            if not self.session:
                await self.dial()
            self.chain.append(text)
            return await self._ussd()
        inbound = Inbound(self.channel, self.address, text=text, dedup_key=f"m{next(self._ids)}", **extra)
        self.last_turn = await self.stack.service.handle(inbound)
        if self.channel == Channel.SMS:
            return render_sms(self.last_turn, strip=self.stack.config.strip_diacritics)
        return "\n---\n".join(
            r.text + "".join(f"\n[{o.key}] {o.label}" for o in r.options) for r in self.last_turn.replies
        )

    async def command(self, name: str, argument: str | None = None) -> str:
        self.last_turn = await self.stack.service.handle(
            Inbound(self.channel, self.address, command=name, argument=argument)
        )
        return "\n---\n".join(r.text for r in self.last_turn.replies)
