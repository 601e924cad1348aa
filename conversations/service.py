"""`app.state.conversations`: load the session, run the engine, persist everything in one go.

`handle(inbound)` reads the session (keyed by channel + address; USSD also carries the gateway's
sessionId), runs the engine, and writes the new session state, the engine's effects (codes,
bindings, counters) and the Turn's outbound messages (outbox) in ONE transaction. Audit entries
go to the registry after the commit. A repeated provider delivery (`Inbound.dedup_key`) gets the
stored replies and is not processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conversations.bindings import BindingStore
from conversations.context import Context, Services
from conversations.effects import Effect
from conversations.engine import Engine
from conversations.model import Channel, Inbound, Turn
from conversations.state import SessionState, replies_from_json, replies_to_json
from conversations.tables import (
    ConversationSessionRow,
    InboundReceiptRow,
    OtpChallengeRow,
    RateCounterRow,
)
from outbox.store import enqueue
from registry_client.clock import as_utc
from registry_client.models import AuditEntry

log = logging.getLogger(__name__)

SESSION_KEEP = timedelta(days=60)  # a session row (language, last report) outlives its flows
RECEIPT_KEEP = timedelta(days=7)


@dataclasses.dataclass
class _Loaded:
    row_id: int | None
    state: SessionState
    updated_at: Any
    session_key: str | None


class ConversationService:
    def __init__(self, sessions: async_sessionmaker[Any], services: Services, engine: Engine | None = None):
        self.sessions, self.services = sessions, services
        self.engine = engine or Engine()
        self.clock = services.clock
        bind = sessions.kw.get("bind")
        self.dialect = bind.dialect.name if bind is not None else ""
        # SQLite has one writer: this process's turns queue here instead of in SQLite's busy handler
        # (which sleeps in growing steps and made the latency tail long under load).
        self._sqlite_writes = asyncio.Lock()

    @property
    def bindings(self) -> BindingStore:
        return self.services.bindings

    async def seen(self, dedup_key: str) -> bool:
        """Whether this provider delivery was processed already (adapters skip expensive work)."""
        async with self.sessions() as db:
            return await db.get(InboundReceiptRow, dedup_key) is not None

    async def handle(self, inbound: Inbound) -> Turn:
        async with self.sessions() as db:
            if inbound.dedup_key is not None:
                stored = await self._receipt(db, inbound.dedup_key)
                if stored is not None:
                    return stored
            row = await db.scalar(
                select(ConversationSessionRow).where(
                    ConversationSessionRow.channel == inbound.channel.value,
                    ConversationSessionRow.address == inbound.address,
                )
            )
            loaded = _Loaded(
                row.id if row else None,
                SessionState.from_json(row.state) if row else SessionState(),
                as_utc(row.updated_at) if row else None,
                row.session_key if row else None,
            )
            # nearly every turn asks "who may this caller act for": same connection, one query
            bound = await self.bindings.persons_for_in(db, inbound.channel.value, inbound.address)
        if inbound.channel == Channel.USSD:
            texts = self._ussd_inputs(loaded, inbound)
            if texts is None:  # the gateway repeated a request we answered
                state = loaded.state
                return Turn(
                    replies_from_json(state.last_replies), end=state.last_end, language=state.language
                )
        else:
            self._expire_idle_flow(loaded)
            texts = [inbound.text]
        turn, effects, audits = await self._run(loaded.state, inbound, texts, bound)
        if inbound.channel == Channel.USSD:
            loaded.state.last_replies, loaded.state.last_end = replies_to_json(turn.replies), turn.end
        duplicate = await self._persist(loaded, inbound, turn, effects)
        if duplicate is not None:
            return duplicate
        for entry in audits:
            try:
                await self.services.registry.audit(entry)
            except Exception:  # the turn is done; a lost audit line is logged, never shown
                log.exception("audit entry %s for %s not written", entry.action, entry.actor)
        return turn

    # -- steps ------------------------------------------------------------------------------------
    async def _run(
        self, state: SessionState, inbound: Inbound, texts: list[str], bound: list[str]
    ) -> tuple[Turn, list[Effect], list[AuditEntry]]:
        effects: list[Effect] = []
        audits: list[AuditEntry] = []
        outbound = []
        ctx: Context | None = None
        for number, typed in enumerate(texts):
            one = dataclasses.replace(inbound, text=typed) if inbound.channel == Channel.USSD else inbound
            ctx = Context(one, state, self.services)
            if number == 0:
                ctx.note_bound(bound)  # later inputs of the same request may have changed them
            await self.engine.run(ctx)
            effects.extend(ctx.effects)
            audits.extend(ctx.audits)
            outbound.extend(ctx.turn.outbound)
        assert ctx is not None
        ctx.turn.outbound = outbound
        return ctx.turn, effects, audits

    def _expire_idle_flow(self, loaded: _Loaded) -> None:
        timeout = timedelta(minutes=self.services.config.flow_timeout_minutes)
        if loaded.updated_at is not None and self.clock() - loaded.updated_at > timeout:
            loaded.state.clear_flow()
            loaded.state.resume = None

    def _ussd_inputs(self, loaded: _Loaded, inbound: Inbound) -> list[str] | None:
        """The inputs of this USSD request not yet processed; None for a replayed request.

        Africa's Talking sends every input of the session joined by `*`; the processed chain is
        kept, so a repeated request is answered again without processing, and a request that
        skipped an answer (a lost response) processes each missing input in order."""
        state = loaded.state
        inputs = (
            list(inbound.inputs) if inbound.inputs is not None else ([inbound.text] if inbound.text else [])
        )
        if loaded.session_key != inbound.session_key or loaded.row_id is None:
            self._new_ussd_session(loaded)
            state.ussd_chain = inputs
            return inputs or [""]
        seen = state.ussd_chain
        if inputs == seen and state.last_replies:
            return None
        new = inputs[len(seen) :] if inputs[: len(seen)] == seen and len(inputs) > len(seen) else inputs[-1:]
        state.ussd_chain = inputs
        return new or [""]

    def _new_ussd_session(self, loaded: _Loaded) -> None:
        state = loaded.state
        window = timedelta(minutes=self.services.config.resume_minutes)
        recent = loaded.updated_at is not None and self.clock() - loaded.updated_at <= window
        worth = state.flow not in (None, "resume") and (state.data or state.back)
        state.resume = (
            {"flow": state.flow, "step": state.step, "data": state.data, "back": state.back}
            if recent and worth
            else None
        )
        state.clear_flow()
        state.ussd_chain, state.last_replies, state.last_end = [], [], False

    async def _receipt(self, db: AsyncSession, key: str) -> Turn | None:
        receipt = await db.get(InboundReceiptRow, key)
        if receipt is None:
            return None
        return Turn(replies_from_json(receipt.replies), end=receipt.end)

    async def _persist(
        self, loaded: _Loaded, inbound: Inbound, turn: Turn, effects: list[Effect]
    ) -> Turn | None:
        """Writes the turn; returns the stored Turn when this was a concurrent duplicate delivery."""
        now = self.clock()
        values = {
            "state": loaded.state.to_json(),
            "language": loaded.state.language,
            "session_key": inbound.session_key,
            "updated_at": now,
            "expires_at": now + SESSION_KEEP,
        }
        for attempt in (1, 2):
            try:
                async with self._write_slot(), self.sessions() as db, db.begin():
                    if self.dialect == "postgresql" and not effects and not turn.outbound:
                        # Only where-am-I state: losing the last instant of it if the database
                        # server crashes is harmless, so skip the fsync wait. Turns that send a
                        # message or change codes/bindings stay fully durable.
                        await db.execute(text("SET LOCAL synchronous_commit TO OFF"))
                    if inbound.dedup_key is not None:
                        db.add(
                            InboundReceiptRow(
                                key=inbound.dedup_key,
                                replies=replies_to_json(turn.replies),
                                end=turn.end,
                                created_at=now,
                            )
                        )
                        await db.flush()
                    await self._write_session(db, loaded, inbound, values)
                    for effect in effects:
                        await effect(db)
                    for message in turn.outbound:
                        await enqueue(db, message, clock=self.clock)
                return None
            except IntegrityError:
                if inbound.dedup_key is not None:
                    async with self.sessions() as db:
                        stored = await self._receipt(db, inbound.dedup_key)
                    if stored is not None:
                        return stored
                if attempt == 2:
                    raise
                loaded.row_id = None  # a concurrent first message created the row: update it
        return None

    def _write_slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._sqlite_writes if self.dialect == "sqlite" else contextlib.nullcontext()

    async def _write_session(
        self, db: AsyncSession, loaded: _Loaded, inbound: Inbound, values: dict[str, Any]
    ) -> None:
        if loaded.row_id is None:
            existing = await db.scalar(
                select(ConversationSessionRow.id).where(
                    ConversationSessionRow.channel == inbound.channel.value,
                    ConversationSessionRow.address == inbound.address,
                )
            )
            if existing is None:
                db.add(
                    ConversationSessionRow(channel=inbound.channel.value, address=inbound.address, **values)
                )
                await db.flush()
                return
            loaded.row_id = existing
        await db.execute(
            update(ConversationSessionRow).where(ConversationSessionRow.id == loaded.row_id).values(**values)
        )

    # -- housekeeping -------------------------------------------------------------------------------
    async def cleanup(self) -> None:
        """Background tick: forgets expired sessions, old receipts, codes and counters."""
        now = self.clock()
        async with self.sessions() as db, db.begin():
            await db.execute(delete(ConversationSessionRow).where(ConversationSessionRow.expires_at < now))
            await db.execute(
                delete(InboundReceiptRow).where(InboundReceiptRow.created_at < now - RECEIPT_KEEP)
            )
            await db.execute(
                delete(OtpChallengeRow).where(OtpChallengeRow.created_at < now - timedelta(days=2))
            )
            await db.execute(
                delete(RateCounterRow).where(
                    RateCounterRow.window_start < now - timedelta(days=1),
                    (RateCounterRow.blocked_until.is_(None)) | (RateCounterRow.blocked_until < now),
                )
            )
