"""SQLite writes through `db.fast_access`: inline on the event loop when the write lock is free at
once, on the writer thread when another connection holds it (the event loop keeps running while
it waits), never half-applied, and never inline while this helper's own thread is writing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Table,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from db.base import make_async_engine
from db.fast_access import DriverStatement, FastAccess


@pytest.fixture
async def fast(sqlite_url: str) -> AsyncIterator[FastAccess]:
    engine = make_async_engine(sqlite_url)
    helper = FastAccess.for_engine(engine)
    await helper.write(lambda conn: conn.execute(text("CREATE TABLE notes (k TEXT PRIMARY KEY, v TEXT)")))
    yield helper
    await engine.dispose()


def put(key: str, value: str) -> Callable[[Connection], int]:
    """A write that says which thread ran it."""

    def run(conn: Connection) -> int:
        conn.execute(text("INSERT INTO notes (k, v) VALUES (:k, :v)"), {"k": key, "v": value})
        return threading.get_ident()

    return run


async def notes(fast: FastAccess) -> dict[str, str]:
    rows = await fast.read(lambda conn: conn.execute(text("SELECT k, v FROM notes")).all())
    return {k: v for k, v in rows}


async def test_a_write_with_the_lock_free_runs_on_the_event_loop(fast: FastAccess) -> None:
    ran_on = await fast.write(put("a", "1"))
    assert ran_on == threading.get_ident()  # no thread hop
    assert await notes(fast) == {"a": "1"}


async def test_a_write_meeting_another_writer_waits_on_the_thread_not_on_the_loop(
    fast: FastAccess, sqlite_url: str
) -> None:
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (an import, the console) is writing
    other.execute("INSERT INTO notes (k, v) VALUES ('other', 'x')")
    write = asyncio.create_task(fast.write(put("b", "2")))
    ticks = 0
    for _ in range(20):  # the event loop is free meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20 and not write.done()
    other.execute("COMMIT")
    other.close()
    ran_on = await asyncio.wait_for(write, 10)
    assert ran_on != threading.get_ident()  # waited for the lock on the writer thread
    assert await notes(fast) == {"other": "x", "b": "2"}
    ran_on = await fast.write(put("c", "3"))  # the lock is free again: inline
    assert ran_on == threading.get_ident()


async def test_a_failed_write_leaves_nothing_and_the_next_one_runs(fast: FastAccess) -> None:
    await fast.write(put("a", "1"))

    def half_then_fail(conn: Connection) -> None:
        conn.execute(text("INSERT INTO notes (k, v) VALUES ('half', 'x')"))
        conn.execute(text("INSERT INTO notes (k, v) VALUES ('a', 'again')"))  # duplicate key

    with pytest.raises(IntegrityError):
        await fast.write(half_then_fail)
    assert await notes(fast) == {"a": "1"}  # the first insert was rolled back with it
    ran_on = await fast.write(put("b", "2"))
    assert ran_on == threading.get_ident()
    assert await notes(fast) == {"a": "1", "b": "2"}


async def test_no_inline_write_while_the_helpers_thread_writes(fast: FastAccess) -> None:
    """A write already on the writer thread (it met a busy lock) is not overtaken half-way by an
    inline one: the writes of this helper never interleave."""
    started, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> int:
        conn.execute(text("INSERT INTO notes (k, v) VALUES ('slow', '1')"))
        started.set()
        release.wait(10)
        return threading.get_ident()

    other = sqlite3.connect(fast.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    first = asyncio.create_task(fast.write(slow))  # busy: goes to the thread
    await asyncio.sleep(0.05)
    other.execute("COMMIT")
    other.close()
    await asyncio.to_thread(started.wait, 10)  # the thread is inside its transaction now
    second = asyncio.create_task(fast.write(put("fast", "2")))
    await asyncio.sleep(0.05)
    assert not second.done()  # it did not run inline beside the open transaction
    release.set()
    slow_thread = await asyncio.wait_for(first, 10)
    fast_thread = await asyncio.wait_for(second, 10)
    assert slow_thread != threading.get_ident() and fast_thread != threading.get_ident()
    assert await notes(fast) == {"slow": "1", "fast": "2"}


# -- update_one: one UPDATE straight on the driver ---------------------------------------------

_META = MetaData()
_ROWS = Table(
    "rows_on_the_driver",
    _META,
    Column("id", Integer, primary_key=True),
    Column("state", JSON),
    Column("at", DateTime(timezone=True)),
)
_SET = (
    update(_ROWS)
    .where(_ROWS.c.id == bindparam("row_id"))
    .values(state=bindparam("v_state", type_=JSON), at=bindparam("v_at", type_=_ROWS.c.at.type))
)


async def test_update_one_stores_what_sqlalchemy_would_and_says_when_no_row_matched(
    fast: FastAccess,
) -> None:
    await fast.write(_META.create_all)
    await fast.write(lambda conn: conn.execute(insert(_ROWS), [{"id": 1}, {"id": 2}]))
    at = datetime(2026, 12, 5, 7, 30, 15, 123456, tzinfo=UTC)
    state = {"flow": "login", "data": {"id": "0790"}, "pages": [[1, "Tiếng Việt"]]}
    statement = DriverStatement(_SET, fast.engine.dialect)
    assert await fast.update_one(statement, {"row_id": 1, "v_state": state, "v_at": at}) is True
    assert await fast.update_one(statement, {"row_id": 99, "v_state": state, "v_at": at}) is False
    # the same values through SQLAlchemy, for the other row: both read back alike
    await fast.write(lambda conn: conn.execute(_SET, {"row_id": 2, "v_state": state, "v_at": at}))
    raw = await fast.read(
        lambda conn: conn.exec_driver_sql("SELECT id, state, at FROM rows_on_the_driver").all()
    )
    assert raw[0][1:] == raw[1][1:]
    rows = await fast.read(lambda conn: conn.execute(select(_ROWS.c.state, _ROWS.c.at)).all())
    assert [tuple(r) for r in rows] == [(state, at.replace(tzinfo=None))] * 2


async def test_update_one_meeting_another_writer_waits_on_the_thread(
    fast: FastAccess, sqlite_url: str
) -> None:
    await fast.write(_META.create_all)
    await fast.write(lambda conn: conn.execute(insert(_ROWS), [{"id": 1}]))
    statement = DriverStatement(_SET, fast.engine.dialect)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    params = {"row_id": 1, "v_state": {"step": 2}, "v_at": datetime(2026, 12, 5, tzinfo=UTC)}
    update_task = asyncio.create_task(fast.update_one(statement, params))
    await asyncio.sleep(0.05)
    assert not update_task.done()  # waiting for the lock on the thread, not failing
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(update_task, 10) is True
    assert await fast.read(lambda conn: conn.execute(select(_ROWS.c.state)).scalar()) == {"step": 2}
    # the inline path works again afterwards, and a failing statement leaves nothing half-done
    assert await fast.update_one(statement, {**params, "v_state": {"step": 3}}) is True
    with pytest.raises(TypeError):  # SQLAlchemy's datetime conversion refuses it, inside the transaction
        await fast.update_one(statement, {**params, "v_state": {"step": 9}, "v_at": "not a datetime"})
    assert await fast.read(lambda conn: conn.execute(select(_ROWS.c.state)).scalar()) == {"step": 3}
    assert await fast.update_one(statement, {**params, "v_state": {"step": 4}}) is True
