"""The hot path's Redis client: one connection per process, every command pipelined on it.

A USSD turn reads the caller's session with one MGET and writes it back with one SET. Through
redis-py's asyncio client each such command cost ~200-300 µs of CPU here (connection pool,
command objects, response callbacks; bench/profile_ussd.py --redis), more than the conversation
engine itself. `PipelinedRedis` speaks RESP over one `asyncio.Protocol`: commands are packed and
replies parsed by hiredis (C), callers waiting at the same time share the connection (Redis
answers in order, so each reply goes to the oldest waiting caller), ~60 µs a command.

- `execute(*commands)` writes the commands in one write and returns their replies in order; an
  error reply raises `redis.exceptions.ResponseError` (after all replies have arrived).
- A lost connection fails every waiting caller with `ConnectionError` (an `OSError`); the next
  call connects again (bounded by `connect_timeout`).
- There is no timeout per command: the caller bounds its call (`asyncio.timeout`). A call given
  up (cancelled) while waiting for its reply closes the connection: a Redis that does not answer
  one caller does not answer the ones queued behind it either, and a reply arriving later must not
  reach a caller it was not meant for.

`redis_client(url)` gives a `PipelinedRedis` for `redis://` URLs (host, port, database number,
user name and password) and, for anything else (`rediss://` TLS, `unix://` sockets), an adapter
over redis-py with the same two methods.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ResponseError

Command = tuple[str | bytes | int | float, ...]


class HotRedis(Protocol):
    """What the hot path needs of a Redis client."""

    async def execute(self, *commands: Command) -> list[Any]: ...

    async def aclose(self) -> None: ...


class _Wire(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.close()
                return
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("redis connection lost"))

    def send(self, commands: tuple[Command, ...]) -> list[asyncio.Future[Any]]:
        if self.lost or self.transport is None or self.transport.is_closing():
            raise ConnectionError("redis connection closed")
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in commands]
        self.waiting.extend(waiters)
        self.transport.write(b"".join(hiredis.pack_command(command) for command in commands))  # type: ignore[arg-type]
        return waiters

    def close(self) -> None:
        self.lost = True  # at once: the next call connects again
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails whoever still waits
        else:
            self.connection_lost(None)


class PipelinedRedis:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.connect_timeout = connect_timeout
        self._wire: _Wire | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: float = 2.0) -> PipelinedRedis:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"PipelinedRedis speaks plain redis:// only, not {parts.scheme}://")
        db_text = parts.path.lstrip("/") or parse_qs(parts.query).get("db", ["0"])[0]
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            int(db_text or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            connect_timeout=connect_timeout,
        )

    async def execute(self, *commands: Command) -> list[Any]:
        wire = self._wire
        if wire is None or wire.lost:
            wire = await self._connect()
        waiters = wire.send(commands)
        try:
            replies = [await waiter for waiter in waiters]
        except asyncio.CancelledError:  # given up by the caller: see the module docstring
            wire.close()
            raise
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
        return replies

    async def _connect(self) -> _Wire:
        async with self._connecting:
            if self._wire is not None and not self._wire.lost:
                return self._wire  # another caller connected meanwhile
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.connect_timeout):
                _, wire = await loop.create_connection(_Wire, self.host, self.port)
                try:
                    hello: list[Command] = []
                    if self.password is not None:
                        auth: Command = ("AUTH", self.password)
                        hello.append(("AUTH", self.username, self.password) if self.username else auth)
                    if self.db:
                        hello.append(("SELECT", self.db))
                    for reply in [await waiter for waiter in wire.send(tuple(hello))] if hello else []:
                        if isinstance(reply, hiredis.ReplyError):
                            raise ResponseError(str(reply))
                except BaseException:
                    wire.close()
                    raise
            self._wire = wire
            return wire

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None


class RedisPyAdapter:
    """`execute`/`aclose` over redis-py, for URLs `PipelinedRedis` does not speak (TLS, sockets)."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0) -> None:
        from redis.asyncio import Redis

        # no socket timeout: the caller bounds each call (redis-py's own runs every read through
        # a task of asyncio.wait_for)
        self.redis = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=connect_timeout)

    async def execute(self, *commands: Command) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())

    async def aclose(self) -> None:
        await self.redis.aclose()


def redis_client(url: str, *, connect_timeout: float = 2.0) -> HotRedis:
    if urlsplit(url).scheme == "redis":
        return PipelinedRedis.from_url(url, connect_timeout=connect_timeout)
    return RedisPyAdapter(url, connect_timeout=connect_timeout)
