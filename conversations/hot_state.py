"""Hot session state: USSD navigation kept where it is cheapest, durable fields in SQL.

USSD sends one HTTP request per keypress; most of them only move the caller through menus. Such
a turn changes nothing durable (language, chosen person, last report, pending code), so its state
is written to the hot copy only, never committed to SQL. SQL keeps the durable copy: a turn that
changes a durable field, applies effects or sends messages is written to SQL in one transaction
first (outbox rows together with the state change), then here. The SQL copy is also refreshed at
least every `durable_every`. A lost hot copy (Redis flushed, the process restarted) only resets
where the caller is in a menu: the next request is answered from the SQL copy, whose processed
input chain keeps a turn with effects from being applied twice.

- `RedisHotState` (REDIS_URL set), shared by every worker process: a turn reads the session and
  the caller's bindings with one MGET and writes the session back with one SET: no SQL at all
  (through `db.redis_wire`: one pipelined connection per process).
  Bindings are cached with a generation counter: every change to a caller's bindings increments
  `bindgen` after its commit, and a cached list is used only while it carries the current
  generation, so no worker acts on a binding another worker has removed. Any Redis error, or a
  call that takes longer than `timeout_seconds`, falls back to SQL for that turn.
- `MemoryHotState`: the session and the caller's bindings in this process's memory, for a service
  that runs as ONE worker process (`python main.py` without `--workers`, the SQLite default): a
  menu turn runs no SQL at all. A turn inside a flow (login, report…) still writes the session
  row, so a process killed half-way through offers the flow for resumption after its restart. Every binding change of such a service is made in this process
  (turns, the console, phone changes: `BindingStore.on_change`) and drops the cached list at once;
  a list is re-read from SQL at least every `bindings_ttl_seconds`. Entries idle for
  `idle_seconds` (a USSD session lasts at most 180 s) are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from conversations.session_store import Loaded, SqlSessionStore, durable_view
from conversations.state import SessionState
from db.redis_wire import HotRedis

log = logging.getLogger(__name__)

RedisErrors = (RedisError, OSError)
Bound = list[tuple[str, datetime]]


class HotState:
    """What `ConversationService` needs of a hot copy (see the module docstring)."""

    sql: SqlSessionStore
    durable_every: timedelta

    async def load(self, channel: str, address: str, now: datetime) -> tuple[Loaded, Bound]:
        raise NotImplementedError

    async def save_light(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        raise NotImplementedError

    async def after_durable(
        self, loaded: Loaded, channel: str, address: str, values: dict[str, Any], *, bindings_changed: bool
    ) -> None:
        raise NotImplementedError

    async def bindings_changed(self, channel: str, address: str) -> None:
        """Called after a commit that changed this identity's bindings outside a turn."""

    async def close(self) -> None:
        """Releases what the hot copy holds open."""

    async def _refresh_sql_copy(
        self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]
    ) -> bool:
        """Writes the SQL copy when it is older than `durable_every` (True when it did)."""
        now: datetime = values["updated_at"]
        stale_copy = loaded.row_id is not None and (
            loaded.durable_at is None or now - loaded.durable_at >= self.durable_every
        )
        if stale_copy:
            await self.sql.save_light(loaded, channel, address, values)
            loaded.durable_at = now
        return stale_copy


class MemoryHotState(HotState):
    def __init__(
        self,
        sql: SqlSessionStore,
        *,
        idle_seconds: float = 600.0,
        bindings_ttl_seconds: float = 600.0,
        max_sessions: int = 50_000,
        durable_every: timedelta = timedelta(hours=1),
        monotonic: Any = time.monotonic,
    ) -> None:
        self.sql, self.durable_every = sql, durable_every
        self.idle, self.bindings_ttl = idle_seconds, bindings_ttl_seconds
        self.max_sessions, self.monotonic = max_sessions, monotonic
        # (channel, address) → (last use, the encoded copy); oldest use first
        self.sessions: dict[tuple[str, str], tuple[float, str]] = {}
        # (channel, address) → (read at, live bindings); dropped by every change in this process
        self.bound: dict[tuple[str, str], tuple[float, Bound]] = {}
        self.binding_changes = 0

    async def load(self, channel: str, address: str, now: datetime) -> tuple[Loaded, Bound]:
        key, clock = (channel, address), self.monotonic()
        entry = self.sessions.get(key)
        loaded = None
        if entry is not None and clock - entry[0] <= self.idle:
            loaded = _decode_state(entry[1])  # a fresh copy: a failed turn leaves the stored one as it was
        cached = self.bound.get(key)
        bound = cached[1] if cached is not None and clock - cached[0] <= self.bindings_ttl else None
        if loaded is None or bound is None:
            changes = self.binding_changes
            snap = await self.sql.load(
                channel, address, now=now, session=loaded is None, bindings=bound is None
            )
            if loaded is None:
                assert snap.loaded is not None
                loaded = snap.loaded
            if bound is None:
                assert snap.bound is not None
                bound = snap.bound
                if changes == self.binding_changes:  # no change committed meanwhile: worth keeping
                    self.bound.pop(key, None)
                    self.bound[key] = (clock, bound)
                    if len(self.bound) > self.max_sessions:
                        del self.bound[next(iter(self.bound))]
        return loaded, [(p, e) for p, e in bound if e > now]

    def _keep(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        key, now = (channel, address), self.monotonic()
        self.sessions.pop(key, None)  # re-inserted last: the dict stays ordered by last use
        self.sessions[key] = (now, _encode(loaded, values))
        while len(self.sessions) > self.max_sessions or (
            self.sessions and now - next(iter(self.sessions.values()))[0] > self.idle
        ):
            del self.sessions[next(iter(self.sessions))]

    async def save_light(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        in_flow = loaded.state.flow is not None
        if in_flow or loaded.sql_in_flow:  # a flow in progress survives a restart of the process
            await self.sql.save_light(loaded, channel, address, values)
            loaded.durable_at, loaded.sql_in_flow = values["updated_at"], in_flow
        else:  # menus only: memory (and SQL when its copy is old)
            await self._refresh_sql_copy(loaded, channel, address, values)
        self._keep(loaded, channel, address, values)

    async def after_durable(
        self, loaded: Loaded, channel: str, address: str, values: dict[str, Any], *, bindings_changed: bool
    ) -> None:
        loaded.durable, loaded.durable_at = durable_view(loaded.state), values["updated_at"]
        loaded.sql_in_flow = loaded.state.flow is not None
        self._keep(loaded, channel, address, values)
        if bindings_changed:
            await self.bindings_changed(channel, address)

    async def bindings_changed(self, channel: str, address: str) -> None:
        self.binding_changes += 1
        self.bound.pop((channel, address), None)


class RedisHotState(HotState):
    def __init__(
        self,
        redis: HotRedis,
        sql: SqlSessionStore,
        prefix: str,
        *,
        ttl_seconds: int = 7200,
        bindings_ttl_seconds: int = 600,
        durable_every: timedelta = timedelta(hours=1),
        timeout_seconds: float = 2.0,
    ) -> None:
        self.redis, self.sql, self.prefix = redis, sql, prefix
        self.ttl, self.bindings_ttl, self.durable_every = ttl_seconds, bindings_ttl_seconds, durable_every
        # Each call is bounded here (asyncio.timeout: a timer handle); the client has no timeout
        # of its own (db.redis_wire: one pipelined connection; redis-py's socket timeout ran
        # every read through a task of asyncio.wait_for, doubling the CPU of a command).
        self.timeout = timeout_seconds

    def _keys(self, channel: str, address: str) -> tuple[str, str, str]:
        tail = f"{channel}:{address}"
        return f"{self.prefix}:conv:{tail}", f"{self.prefix}:bind:{tail}", f"{self.prefix}:bindgen:{tail}"

    async def close(self) -> None:
        await self.redis.aclose()

    # -- reading --------------------------------------------------------------------------------
    async def load(self, channel: str, address: str, now: datetime) -> tuple[Loaded, Bound]:
        state_key, bind_key, gen_key = self._keys(channel, address)
        try:
            async with asyncio.timeout(self.timeout):
                ((raw_state, raw_bound, raw_gen),) = await self.redis.execute(
                    ("MGET", state_key, bind_key, gen_key)
                )
        except RedisErrors as exc:
            log.warning("redis unavailable (%s): session read from SQL", type(exc).__name__)
            snap = await self.sql.load(channel, address, now=now)
            assert snap.loaded is not None and snap.bound is not None
            return snap.loaded, snap.bound
        generation = _text(raw_gen) or "0"
        loaded = _decode_state(raw_state)
        bound = _decode_bound(raw_bound, generation)
        if loaded is None or bound is None:
            snap = await self.sql.load(
                channel, address, now=now, session=loaded is None, bindings=bound is None
            )
            if loaded is None:
                assert snap.loaded is not None
                loaded = snap.loaded
            if bound is None:
                assert snap.bound is not None
                bound = snap.bound
                payload = {"g": generation, "p": [[p, e.timestamp()] for p, e in bound]}
                try:  # tagged with the generation read BEFORE the SQL read: a concurrent change wins
                    async with asyncio.timeout(self.timeout):
                        await self.redis.execute(
                            ("SET", bind_key, json.dumps(payload), "EX", self.bindings_ttl)
                        )
                except RedisErrors:
                    pass
        return loaded, [(p, e) for p, e in bound if e > now]

    # -- writing --------------------------------------------------------------------------------
    async def save_light(self, loaded: Loaded, channel: str, address: str, values: dict[str, Any]) -> None:
        """A turn that changed nothing durable: Redis only (and SQL when its copy is old)."""
        stale_copy = await self._refresh_sql_copy(loaded, channel, address, values)
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.execute(
                    ("SET", self._keys(channel, address)[0], _encode(loaded, values), "EX", self.ttl)
                )
        except RedisErrors as exc:
            log.warning("redis unavailable (%s): session written to SQL", type(exc).__name__)
            if not stale_copy:
                await self.sql.save_light(loaded, channel, address, values)

    async def after_durable(
        self, loaded: Loaded, channel: str, address: str, values: dict[str, Any], *, bindings_changed: bool
    ) -> None:
        """After the SQL commit of a durable turn: the hot copy follows (and bindings are renewed)."""
        loaded.durable, loaded.durable_at = durable_view(loaded.state), values["updated_at"]
        state_key, _, gen_key = self._keys(channel, address)
        commands: list[tuple[str | int, ...]] = [("SET", state_key, _encode(loaded, values), "EX", self.ttl)]
        if bindings_changed:
            commands += [("INCR", gen_key), ("EXPIRE", gen_key, self.bindings_ttl * 2)]
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.execute(*commands)
        except RedisErrors as exc:
            log.warning(
                "redis unavailable (%s) after a durable turn; dropping the hot copy", type(exc).__name__
            )
            await self._forget(state_key, gen_key if bindings_changed else None)

    async def bindings_changed(self, channel: str, address: str) -> None:
        """Called after a commit that changed this identity's bindings outside a turn."""
        _, _, gen_key = self._keys(channel, address)
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.execute(("INCR", gen_key), ("EXPIRE", gen_key, self.bindings_ttl * 2))
        except RedisErrors as exc:
            log.warning("redis unavailable (%s): binding change not announced", type(exc).__name__)

    async def _forget(self, state_key: str, gen_key: str | None) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.execute(
                    ("DEL", state_key), *([("INCR", gen_key)] if gen_key is not None else [])
                )
        except RedisErrors:
            log.error("redis unavailable: hot copy %s may be stale until it expires", state_key.split(":")[1])


def _encode(loaded: Loaded, values: dict[str, Any]) -> str:
    """The hot copy: a small JSON envelope with the state's JSON text (`values["state"]`, already
    serialised for SQL) spliced in as it is."""
    envelope = json.dumps(
        {
            "r": loaded.row_id,
            "k": values["session_key"],
            "u": values["updated_at"].isoformat(),
            "d": loaded.durable,
            "da": loaded.durable_at.isoformat() if loaded.durable_at else None,
            "f": loaded.sql_in_flow,
        },
        separators=(",", ":"),
    )
    return f'{envelope[:-1]},"s":{values["state"]}}}'


def _decode_state(raw: bytes | str | None) -> Loaded | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Loaded(
            data["r"],
            SessionState.from_json(data["s"]),
            datetime.fromisoformat(data["u"]),
            data["k"],
            data["d"],
            datetime.fromisoformat(data["da"]) if data.get("da") else None,
            bool(data.get("f")),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable hot session state ignored")
        return None


def _decode_bound(raw: bytes | str | None, generation: str) -> Bound | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        if data.get("g") != generation:
            return None
        return [(str(p), datetime.fromtimestamp(float(e), tz=UTC)) for p, e in data["p"]]
    except (ValueError, KeyError, TypeError):
        return None


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw
