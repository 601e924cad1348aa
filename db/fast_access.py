"""Running short Core statement groups on the hot path, as cheaply as each dialect allows.

`FastAccess.for_engine(async_engine)` gives one helper per engine (shared by the conversation
store and the embedded registry), with `read(fn)` and `write(fn)` where `fn(conn)` is a plain
synchronous function over a SQLAlchemy `Connection`:

- SQLite: the synchronous sqlite3 driver. Reads run inline (in WAL mode a reader never waits
  for a writer); writes run on one dedicated thread (a writer may wait for another process's
  write lock, which must not block the event loop), one thread hop per transaction. aiosqlite
  hops between the event loop and its thread for every cursor operation; measured here, a point
  select costs ~0.7 ms of CPU through it against ~0.05 ms synchronously.
- PostgreSQL: `fn` runs through psycopg async (`AsyncConnection.run_sync`) on a small engine of
  its own: reads in autocommit (one round trip, no BEGIN/ROLLBACK), no ping on checkout (a
  read that meets a connection the server dropped is retried once on a fresh one), writes in
  one READ COMMITTED transaction.

The helper closes with its engine (`engine.dispose()`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from db.base import make_sync_engine, sync_url

T = TypeVar("T")

_HELPERS: weakref.WeakKeyDictionary[AsyncEngine, FastAccess] = weakref.WeakKeyDictionary()


class FastAccess:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # an in-memory SQLite database exists only on its own connection: no second engine
        self.threaded = self.dialect == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pg: AsyncEngine | None = None
        if self.threaded:
            self._sync = make_sync_engine(sync_url(engine.url.render_as_string(hide_password=False)))
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-fast")
        elif self.dialect == "postgresql":
            self._pg = self._pg_engine()

    def _pg_engine(self) -> AsyncEngine:
        return create_async_engine(
            self.engine.url,
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=False,
            # kept open: an overflow connection is closed on return, and opening one costs a
            # PostgreSQL backend start (several ms of CPU on a machine this size)
            pool_size=15,
            max_overflow=5,
            pool_recycle=1800,
        )

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> FastAccess:
        helper = _HELPERS.get(engine)
        if helper is None:
            helper = _HELPERS[engine] = cls(engine)
            event.listen(engine.sync_engine, "engine_disposed", lambda _engine: helper.close())
        return helper

    def close(self) -> None:
        """Stops the SQLite thread and closes the connections (idempotent). Called by the main
        engine's `dispose()` (inside SQLAlchemy's greenlet, where the async pool can close)."""
        thread, sync, pg = self._thread, self._sync, self._pg
        self._thread = self._sync = self._pg = None
        if thread is not None:
            thread.shutdown(wait=True)
        if sync is not None:
            sync.dispose()
        if pg is not None:
            pg.sync_engine.dispose()

    def _postgres(self) -> AsyncEngine:
        if self._pg is None:  # disposed and used again: start afresh
            self._pg = self._pg_engine()
        return self._pg

    def _sqlite(self) -> tuple[Engine, ThreadPoolExecutor] | None:
        if not self.threaded:
            return None
        if self._sync is None or self._thread is None:  # disposed and used again: start afresh
            self._sync = make_sync_engine(sync_url(self.engine.url.render_as_string(hide_password=False)))
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-fast")
        return self._sync, self._thread

    async def read(self, fn: Callable[[Connection], T]) -> T:
        sqlite = self._sqlite()
        if sqlite is not None:
            # Inline, without a thread hop: a WAL reader never waits for a writer, and these
            # reads take tens of microseconds (less than the hop itself).
            with sqlite[0].connect() as sync_conn:
                return fn(sync_conn)
        if self.dialect != "postgresql":
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn)
        for attempt in (1, 2):
            try:
                async with self._postgres().connect() as pg_conn:
                    return await pg_conn.run_sync(fn)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def write(self, fn: Callable[[Connection], T], *, relaxed: bool = False) -> T:
        """`fn` in one transaction. `relaxed`: on PostgreSQL the commit does not wait for the WAL
        flush (for state whose last instant may be lost in a database crash)."""
        sqlite = self._sqlite()
        if sqlite is not None:
            sync, thread = sqlite

            def run() -> T:
                with sync.begin() as conn:
                    return fn(conn)

            return await asyncio.get_running_loop().run_in_executor(thread, run)
        if self.dialect != "postgresql":
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn)
        async with self._postgres().connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                if relaxed:
                    await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
                return await conn.run_sync(fn)

    async def transaction(self, fn: Callable[[Session], T], *, relaxed: bool = False) -> T:
        """`fn` over an ORM Session in one transaction (same threading as `write`)."""
        sqlite = self._sqlite()
        if sqlite is not None:
            sync, thread = sqlite

            def run() -> T:
                with Session(sync, expire_on_commit=False) as session, session.begin():
                    return fn(session)

            return await asyncio.get_running_loop().run_in_executor(thread, run)
        if self.dialect != "postgresql":
            async with AsyncSession(self.engine, expire_on_commit=False) as db, db.begin():
                return await db.run_sync(fn)
        async with self._postgres().connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                if relaxed:
                    await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
                return await conn.run_sync(lambda sync_conn: _in_session(sync_conn, fn))


def _in_session(conn: Connection, fn: Callable[[Session], T]) -> T:
    """`fn` over an ORM Session joined to `conn`'s transaction (the caller commits)."""
    with Session(bind=conn, expire_on_commit=False) as session:
        result = fn(session)
        session.flush()
        return result
