"""Running short Core statement groups on the hot path, as cheaply as each dialect allows.

`FastAccess.for_engine(async_engine)` gives one helper per engine (shared by the conversation
store and the embedded registry), with `read(fn)` and `write(fn)` where `fn(conn)` is a plain
synchronous function over a SQLAlchemy `Connection`:

- SQLite: the synchronous sqlite3 driver. Reads run inline (in WAL mode a reader never waits
  for a writer). A write runs inline too when the write lock is free at once: this process's
  writer thread is idle (a lock taken without waiting) and `BEGIN IMMEDIATE` on a connection with
  no busy timeout gets SQLite's write lock at once. Otherwise (another process or another
  connection of this one is writing) it runs on one dedicated thread, which may wait for the
  lock without blocking the event loop. Measured (bench/budget.py's machine): a session-row
  write costs ~0.22 ms of CPU inline against ~0.5 ms through the thread hop. `update_one`
  runs one UPDATE straight on the driver of the inline connection (`DriverStatement`: compiled
  once, SQLAlchemy's own bind conversions applied): ~40 µs instead of ~150. The inline
  connection never checkpoints the WAL on commit (a checkpoint may wait for the disk); the
  thread runs a passive checkpoint every `CHECKPOINT_EVERY` inline commits. aiosqlite hops
  between the event loop and its thread for every cursor operation; measured here, a point
  select costs ~0.7 ms of CPU through it against ~0.05 ms synchronously.
- PostgreSQL: `fn` runs through psycopg async (`AsyncConnection.run_sync`) on a small engine of
  its own: reads in autocommit (one round trip, no BEGIN/ROLLBACK), no ping on checkout (a
  read that meets a connection the server dropped is retried once on a fresh one), writes in
  one READ COMMITTED transaction.

The helper closes with its engine (`engine.dispose()`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Dialect, Engine, Executable, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from db.base import make_sync_engine, sync_url

T = TypeVar("T")

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 500  # inline commits between two passive WAL checkpoints on the writer thread

_HELPERS: weakref.WeakKeyDictionary[AsyncEngine, FastAccess] = weakref.WeakKeyDictionary()


class FastAccess:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # an in-memory SQLite database exists only on its own connection: no second engine
        self.threaded = self.dialect == "sqlite" and engine.url.database not in (None, "", ":memory:")
        self._sync: Engine | None = None
        self._inline: Engine | None = None
        self._inline_conn: Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pg: AsyncEngine | None = None
        # held by whoever writes through this helper (the writer thread, or an inline write): an
        # inline write never waits for it, and never meets a transaction of this helper half-way
        self._writing = threading.Lock()
        self._inline_commits = 0
        if self.threaded:
            self._start_sqlite()
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

    def _start_sqlite(self) -> None:
        url = sync_url(self.engine.url.render_as_string(hide_password=False))
        self._sync = make_sync_engine(url)
        self._inline = _inline_engine(url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-fast")

    def close(self) -> None:
        """Stops the SQLite thread and closes the connections (idempotent). Called by the main
        engine's `dispose()` (inside SQLAlchemy's greenlet, where the async pool can close)."""
        thread, sync, inline, pg = self._thread, self._sync, self._inline, self._pg
        self._thread = self._sync = self._inline = self._pg = None
        if thread is not None:
            thread.shutdown(wait=True)
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        for sqlite_engine in (sync, inline):
            if sqlite_engine is not None:
                sqlite_engine.dispose()
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
            self._start_sqlite()
        assert self._sync is not None and self._thread is not None
        return self._sync, self._thread

    async def _sqlite_write(
        self, fn: Callable[[Connection], T], sync: Engine, thread: ThreadPoolExecutor
    ) -> T:
        """`fn` in one SQLite transaction: inline when the write lock is free at once, else on
        the writer thread (see the module docstring)."""
        done, result = self._try_inline(fn)
        if done:
            return cast(T, result)

        def run() -> T:
            with self._writing, sync.begin() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(thread, run)

    def _try_inline(self, fn: Callable[[Connection], T]) -> tuple[bool, T | None]:
        if self._inline is None or not self._writing.acquire(blocking=False):
            return False, None
        try:
            conn = self._inline_conn
            if conn is None or conn.invalidated or conn.closed:
                conn = self._inline_conn = self._inline.connect()  # kept open: one per helper
            try:
                transaction = conn.begin()  # BEGIN IMMEDIATE, no busy wait
            except (OperationalError, sqlite3.OperationalError):  # another connection holds the lock
                self._inline_conn = None
                conn.close()
                return False, None
            with transaction:
                result = fn(conn)
        finally:
            self._writing.release()
        self._count_inline_commit()
        return True, result

    async def update_one(self, statement: DriverStatement, params: dict[str, Any]) -> bool:
        """Runs an UPDATE meant to change exactly one row, in its own transaction; True when it
        did (committed), False when it matched no row (rolled back). On SQLite with the write
        lock free at once, straight on the driver; otherwise as `write` runs it."""
        if self._inline is not None and self._writing.acquire(blocking=False):
            try:
                changed = self._update_inline(statement, params)
            finally:
                self._writing.release()
            if changed is not None:
                self._count_inline_commit()
                return changed
        count = await self.write(lambda conn: conn.execute(statement.statement, params).rowcount)
        return bool(count)

    def _update_inline(self, statement: DriverStatement, params: dict[str, Any]) -> bool | None:
        """None when another connection holds the write lock (nothing done)."""
        conn = self._inline_conn
        if conn is None or conn.invalidated or conn.closed:
            conn = self._inline_conn = self._inline.connect()  # type: ignore[union-attr]
        driver = conn.connection.driver_connection
        try:
            driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        except sqlite3.OperationalError:
            return None
        try:
            changed: bool = driver.execute(statement.sql, statement.positional(params)).rowcount == 1  # type: ignore[union-attr]
            driver.execute("COMMIT" if changed else "ROLLBACK")  # type: ignore[union-attr]
        except BaseException:
            self._inline_conn = None  # whatever state the driver is in, this connection is done
            conn.invalidate()
            raise
        return changed

    def _count_inline_commit(self) -> None:
        self._inline_commits += 1
        if (
            self._inline_commits % CHECKPOINT_EVERY == 0
            and self._thread is not None
            and self._sync is not None
        ):
            self._thread.submit(_checkpoint, self._sync, self._writing)

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
            return await self._sqlite_write(fn, *sqlite)
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
            return await self._sqlite_write(lambda conn: _in_session(conn, fn), *sqlite)
        if self.dialect != "postgresql":
            async with AsyncSession(self.engine, expire_on_commit=False) as db, db.begin():
                return await db.run_sync(fn)
        async with self._postgres().connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                if relaxed:
                    await conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
                return await conn.run_sync(lambda sync_conn: _in_session(sync_conn, fn))


class DriverStatement:
    """A Core statement compiled once for SQLite's driver: its SQL text, the order of its
    parameters and SQLAlchemy's conversion of each (datetimes, JSON), so that it runs on the
    sqlite3 connection with the same stored values as through SQLAlchemy. `statement` stays for
    the other paths."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        self._convert = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]

    def positional(self, params: dict[str, Any]) -> list[Any]:
        return [convert(params[name]) if convert else params[name] for name, convert in self._convert]


def _in_session(conn: Connection, fn: Callable[[Session], T]) -> T:
    """`fn` over an ORM Session joined to `conn`'s transaction (the caller commits)."""
    with Session(bind=conn, expire_on_commit=False) as session:
        result = fn(session)
        session.flush()
        return result


def _inline_engine(url: str) -> Engine:
    """One SQLite connection for inline writes: transactions begin with BEGIN IMMEDIATE (the write
    lock at once, or an error at once: no busy timeout), and commits never checkpoint the WAL."""
    engine = make_sync_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def _no_waiting(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver issues no BEGIN of its own
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=0")
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _immediate(conn: Connection) -> None:
        # straight to the driver: through SQLAlchemy's execution this statement cost ~90 µs
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return engine


def _checkpoint(sync: Engine, writing: threading.Lock) -> None:
    """A passive WAL checkpoint (copies what no reader still needs; never waits for readers)."""
    try:
        with writing, sync.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    except Exception:  # the next one catches up; the WAL keeps every page meanwhile
        log.warning("WAL checkpoint failed", exc_info=True)
