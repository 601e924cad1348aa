"""`app.state.conversations`: load the session, run the engine, persist everything in one go.

`handle(inbound)` reads the session (keyed by channel + address; USSD also carries the gateway's
sessionId) and the caller's bindings, runs the engine, and writes the turn:

- a turn with effects (codes, bindings, counters), outbound messages (outbox), a provider
  delivery receipt, or a change to a durable session field is written in ONE SQL transaction;
- any other turn (menu navigation) writes only the session state: to Redis when REDIS_URL is
  set (USSD, `hot_state.py`), else with one light SQL statement (`session_store.py`).

Audit entries go to the audit queue (written in batches within 50 ms) or, without one, to the
registry after the commit. A repeated provider delivery (`Inbound.dedup_key`) gets the stored
replies and is not processed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from conversations.audit_queue import AuditQueue
from conversations.bindings import BindingStore
from conversations.context import Context, Services
from conversations.effects import Effect
from conversations.engine import Engine
from conversations.hot_state import HotState
from conversations.model import Channel, Inbound, Turn
from conversations.session_store import Loaded, SqlSessionStore, durable_view, state_text, write_session
from conversations.state import SessionState, replies_from_json, replies_to_json
from conversations.tables import (
    ConversationSessionRow,
    InboundReceiptRow,
    OtpChallengeRow,
    RateCounterRow,
)
from outbox.sealing import OutboxSeal
from outbox.store import enqueue_sync
from registry_client.models import AuditEntry

log = logging.getLogger(__name__)

REPEAT_KEY = "*"  # on a voice call: say the last answer again
SESSION_KEEP = timedelta(days=60)  # a session row (language, last report) outlives its flows
RECEIPT_KEEP = timedelta(days=7)


class ConversationService:
    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        services: Services,
        engine: Engine | None = None,
        *,
        hot: HotState | None = None,
        audits: AuditQueue | None = None,
        outbox_seal: OutboxSeal,
    ):
        self.sessions, self.services = sessions, services
        self.engine = engine or Engine()
        self.clock = services.clock
        bind = sessions.kw.get("bind")
        assert bind is not None, "the sessionmaker must be bound to the async engine"
        self.dialect = bind.dialect.name
        self.store = SqlSessionStore(bind)
        self.fast = self.store.fast
        self.hot = hot
        self.audits = audits
        self.outbox_seal = outbox_seal  # codes and links go into the outbox sealed
        # told after a turn committed outbound messages (the host wakes its outbox worker)
        self.on_outbound: Callable[[], None] | None = None

    @property
    def bindings(self) -> BindingStore:
        return self.services.bindings

    async def aclose(self) -> None:
        """Shutdown: writes the queued audit lines, closes Redis clients and the SQLite thread."""
        if self.audits is not None:
            await self.audits.close()
        for closable in (self.hot, self.services.counters):
            close = getattr(closable, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        await self.store.close()

    async def seen(self, dedup_key: str) -> bool:
        """Whether this provider delivery was processed already (adapters skip expensive work)."""
        async with self.sessions() as db:
            return await db.get(InboundReceiptRow, dedup_key) is not None

    async def language_of(self, channel: Channel, address: str) -> str | None:
        """The language this caller's conversation uses (chosen in the language menu), or None
        when there is no conversation yet. Adapters answer what they say themselves in it."""
        snap = await self.store.load(channel.value, address, now=self.clock(), bindings=False)
        loaded = snap.loaded
        return loaded.state.language if loaded is not None and loaded.exists else None

    async def handle(self, inbound: Inbound) -> Turn:
        now = self.clock()
        channel = inbound.channel.value
        hot = self.hot if inbound.channel == Channel.USSD and inbound.dedup_key is None else None
        if hot is not None:
            loaded, bound = await hot.load(channel, inbound.address, now)
        else:
            snap = await self.store.load(channel, inbound.address, now=now, dedup_key=inbound.dedup_key)
            if snap.receipt is not None:
                return snap.receipt
            assert snap.loaded is not None and snap.bound is not None
            loaded, bound = snap.loaded, snap.bound
        person_ids = [person_id for person_id, _ in bound]
        if inbound.channel == Channel.USSD:
            texts = self._ussd_inputs(loaded, inbound)
            if texts is None:  # the gateway repeated a request we answered
                state = loaded.state
                return Turn(
                    replies_from_json(state.last_replies), end=state.last_end, language=state.language
                )
        elif inbound.channel == Channel.VOICE:
            if loaded.session_key != inbound.session_key or not loaded.exists:
                self._new_ussd_session(loaded)  # a new call starts at the menu (or offers to resume)
            elif inbound.text == REPEAT_KEY and loaded.state.last_replies:  # `*` repeats what was said
                state = loaded.state
                return Turn(
                    replies_from_json(state.last_replies), end=state.last_end, language=state.language
                )
            texts = [inbound.text]
        else:
            self._expire_idle_flow(loaded)
            texts = [inbound.text]
        turn, effects, audits = await self._run(loaded.state, inbound, texts, person_ids)
        if inbound.channel.keypad:
            loaded.state.last_replies, loaded.state.last_end = replies_to_json(turn.replies), turn.end
        values = self._values(loaded, inbound)
        full = bool(effects or turn.outbound or inbound.dedup_key is not None)
        if hot is not None and not full and durable_view(loaded.state) == loaded.durable:
            await hot.save_light(loaded, channel, inbound.address, values)  # navigation: Redis only
        elif full or hot is not None:
            duplicate = await self._persist(loaded, inbound, turn, effects, values)
            if duplicate is not None:
                return duplicate
            if hot is not None:
                await hot.after_durable(
                    loaded, channel, inbound.address, values, bindings_changed=bool(effects)
                )
        else:  # SQL only, and nothing but the session changed: one light statement
            await self.store.save_light(loaded, channel, inbound.address, values)
        await self._audit(audits)
        return turn

    def _values(self, loaded: Loaded, inbound: Inbound) -> dict[str, Any]:
        now = self.clock()
        return {
            "state": state_text(loaded.state),  # serialised once, for SQL and the hot copy alike
            "language": loaded.state.language,
            "session_key": inbound.session_key,
            "updated_at": now,
            "expires_at": now + SESSION_KEEP,
        }

    async def _audit(self, audits: list[AuditEntry]) -> None:
        if not audits:
            return
        if self.audits is not None:
            self.audits.put(audits)
            return
        for entry in audits:
            try:
                await self.services.registry.audit(entry)
            except Exception:  # the turn is done; a lost audit line is logged, never shown
                log.exception("audit entry %s for %s not written", entry.action, entry.actor)

    # -- steps ------------------------------------------------------------------------------------
    async def _run(
        self, state: SessionState, inbound: Inbound, texts: list[str], bound: list[str]
    ) -> tuple[Turn, list[Effect], list[AuditEntry]]:
        effects: list[Effect] = []
        audits: list[AuditEntry] = []
        outbound = []
        ctx: Context | None = None
        # Several inputs in one USSD request (a shortcut dial, a gateway replaying the history) run
        # one after the other; every guess among them is counted at once by the flows
        # (conversations.limits), so a request carrying many tries gets no more than one per try
        # of the budget. Once a reply ends the session, the inputs after it are not processed.
        for number, typed in enumerate(texts):
            if ctx is not None and ctx.turn.end:
                break
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

    def _expire_idle_flow(self, loaded: Loaded) -> None:
        timeout = timedelta(minutes=self.services.config.flow_timeout_minutes)
        if loaded.updated_at is not None and self.clock() - loaded.updated_at > timeout:
            loaded.state.clear_flow()
            loaded.state.resume = None

    def _ussd_inputs(self, loaded: Loaded, inbound: Inbound) -> list[str] | None:
        """The inputs of this USSD request not yet processed; None for a replayed request.

        Africa's Talking sends every input of the session joined by `*`; the processed chain is
        kept, so a repeated request is answered again without processing, and a request that
        skipped an answer (a lost response) processes each missing input in order."""
        state = loaded.state
        inputs = (
            list(inbound.inputs) if inbound.inputs is not None else ([inbound.text] if inbound.text else [])
        )
        chain = [self._chain_entry(text) for text in inputs]
        if loaded.session_key != inbound.session_key or not loaded.exists:
            self._new_ussd_session(loaded)
            state.ussd_chain = chain
            return inputs or [""]
        seen = state.ussd_chain
        if chain == seen and state.last_replies:
            return None
        new = inputs[len(seen) :] if chain[: len(seen)] == seen and len(chain) > len(seen) else inputs[-1:]
        state.ussd_chain = chain
        return new or [""]

    def _chain_entry(self, text: str) -> str:
        """How an input is kept in `ussd_chain`: a menu key as typed; anything longer (an ID, a date
        of birth, a one-time code) only as a keyed digest, so no session row holds it readable."""
        if len(text) <= 2:
            return text
        digest = hmac.new(self.services.otp.secret, f"ussd-input:{text}".encode(), hashlib.sha256)
        return "#" + digest.hexdigest()[:20]

    def _new_ussd_session(self, loaded: Loaded) -> None:
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
        self, loaded: Loaded, inbound: Inbound, turn: Turn, effects: list[Effect], values: dict[str, Any]
    ) -> Turn | None:
        """Writes the turn in one transaction: receipt, session, effects, outbox rows; then the
        effects' after-commit parts. Returns the stored Turn when this was a concurrent duplicate
        delivery."""
        channel, address = inbound.channel.value, inbound.address
        receipt = (
            {"key": inbound.dedup_key, "replies": replies_to_json(turn.replies), "end": turn.end}
            if inbound.dedup_key is not None
            else None
        )

        def write(db: Session) -> None:
            if receipt is not None:
                db.add(InboundReceiptRow(**receipt, created_at=values["updated_at"]))
                db.flush()
            write_session(db.connection(), loaded, channel, address, values)
            for effect in effects:
                if effect.sql is not None:
                    effect.sql(db)
            for message in turn.outbound:
                enqueue_sync(db, message, seal=self.outbox_seal, clock=self.clock)

        # Only where-am-I state: losing its last instant in a database server crash is harmless,
        # so the commit does not wait for the WAL flush. Turns that send a message or change codes
        # or bindings stay fully durable.
        relaxed = not effects and not turn.outbound
        for attempt in (1, 2):
            try:
                await self.fast.transaction(write, relaxed=relaxed)
                break
            except IntegrityError:
                if inbound.dedup_key is not None:
                    async with self.sessions() as db:
                        stored = await self._receipt(db, inbound.dedup_key)
                    if stored is not None:
                        return stored
                if attempt == 2:
                    raise
                loaded.row_id = None  # a concurrent first message created the row: update it
        if turn.outbound and self.on_outbound is not None:
            self.on_outbound()
        for effect in effects:
            if effect.after_commit is not None:
                try:
                    await effect.after_commit()
                except Exception:  # committed already; a failed follow-up is logged
                    log.exception("after-commit step of a %s turn failed", channel)
        return None

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
