"""`python main.py import-doses FILE.csv`: persons and doses from a site's CSV file (docs/import-file.md).

The file is streamed in batches: read and validate a batch of rows, decide them against what is
stored with a few set-at-a-time queries, write them, commit. A re-import changes nothing; a row
that disagrees with a stored dose is rejected, never written over. Rejected rows go to
`<input>.rejected.csv` with their line and reason; the summary goes to standard output.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.base import make_sync_engine
from db.migrate import migrate
from registry_client.clock import Clock, utc_now
from registry_client.embedded.import_batch import BatchWriter, Rejection, SiteCache
from registry_client.embedded.import_report import (
    ImportSummary,
    Progress,
    RejectedFile,
    RejectedFileError,
    rejected_path,
)
from registry_client.embedded.import_rows import CsvSource, ImportFileError, ImportRow, RowValidator
from registry_client.embedded.import_store import DATABASE_ERRORS, import_store

VIET_NAM = timezone(timedelta(hours=7))  # no daylight saving time
BATCH_ROWS = 10_000  # rows read per batch, shared out among the writers
POSTGRES_WRITERS = 2


class ImportStopped(Exception):
    """The database failed part-way; batches before `line` are committed."""

    def __init__(self, line: int, cause: BaseException) -> None:
        super().__init__(f"stopped at line {line}: {brief_error(cause)}")
        self.line = line


def brief_error(exc: BaseException) -> str:
    """The first line of a database error: the driver's message, without SQL or parameters (IDs)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


@dataclass
class _Batch:
    seq: int
    first_line: int
    rows: list[ImportRow] = field(default_factory=list)


class _RejectedSink:
    """Writes rejected rows in file order although several writers finish batches out of order.

    Each batch (seq) is complete when the reader and every writer have handed in their part;
    only batches in flight are held in memory.
    """

    def __init__(self, rejected: RejectedFile, summary: ImportSummary, parts: int) -> None:
        self._rejected, self._summary, self._parts = rejected, summary, parts
        self._pending: dict[int, list[Rejection]] = {}
        self._handed: dict[int, int] = {}
        self._next = 0
        self._lock = threading.Lock()

    def hand_in(self, seq: int, rejections: list[Rejection]) -> None:
        with self._lock:
            self._pending.setdefault(seq, []).extend(rejections)
            self._handed[seq] = self._handed.get(seq, 0) + 1
            while self._handed.get(self._next) == self._parts:
                for line, fields, reasons in sorted(self._pending.pop(self._next), key=lambda r: r[0]):
                    self._rejected.write(line, fields, self._summary.reject(line, reasons))
                del self._handed[self._next]
                self._next += 1


class _Writer(threading.Thread):
    """Owns one database connection and applies its share of every batch.

    psycopg and sqlite3 release the GIL while the database works, so reading and validating
    overlap with the writes; on PostgreSQL two writers keep two server processes busy. Rows are
    shared out by national ID, so all rows of one person go to the same writer.
    """

    def __init__(self, engine: Engine, actor: str, sites: SiteCache, sink: _RejectedSink, clock: Clock):
        super().__init__(name="dose-import-writer", daemon=True)
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.summary = ImportSummary(Path())
        self._engine, self._actor, self._sites, self._sink, self._clock = engine, actor, sites, sink, clock

    def run(self) -> None:
        line = 2
        try:
            with self._engine.connect() as conn:
                store = import_store(conn, self._actor)
                writer = BatchWriter(store, self.summary, self._sites)
                while (batch := self.queue.get()) is not None:
                    line = batch.first_line
                    rejected: list[Rejection] = []
                    if batch.rows:
                        with conn.begin():
                            store.begin_batch()
                            rejected = writer.apply(batch.rows, self._clock())
                        writer.committed()
                    self._sink.hand_in(batch.seq, rejected)
        except DATABASE_ERRORS as exc:
            self.error = ImportStopped(line, exc)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self.error = exc

    def send(self, batch: _Batch | None) -> bool:
        """Queues a batch (None: the end); False when the writer has stopped."""
        while self.error is None and self.is_alive():
            try:
                self.queue.put(batch, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


def import_file(
    engine: Engine,
    path: Path,
    *,
    clock: Clock = utc_now,
    batch_rows: int = BATCH_ROWS,
    writers: int | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Imports `path` into the embedded registry at `engine`. Raises ImportFileError, OSError, ImportStopped."""
    today = clock().astimezone(VIET_NAM).date()
    started = time.monotonic()
    if writers is None:  # SQLite has one writer at a time anyway
        writers = POSTGRES_WRITERS if engine.dialect.name == "postgresql" else 1
    actor = f"import:{path.name}"[:100]
    with open(path, "rb") as raw:
        source = CsvSource(raw)
        summary = ImportSummary(path)
        rejected = RejectedFile(rejected_path(path), source.header, source.had_bom, source.delimiter)
        validator = RowValidator(source.index, len(source.header), today)
        with engine.connect() as conn:
            sites = SiteCache(import_store(conn, actor).sites())
        sink = _RejectedSink(rejected, summary, writers + 1)
        pool = [_Writer(engine, actor, sites, sink, clock) for _ in range(writers)]
        for writer in pool:
            writer.start()
        try:
            _read(source, validator, pool, sink, summary, batch_rows, progress)
        finally:
            for writer in pool:
                writer.send(None)
            for writer in pool:
                writer.join()
            if progress is not None:
                progress.done()
            rejected.close(any_rejected=summary.rejected > 0)
    for writer in pool:
        if writer.error is not None:
            raise writer.error
    for writer in pool:
        summary.merge(writer.summary)
    with engine.begin() as conn:
        import_store(conn, actor).audit("doses.import", _audit_detail(summary), clock())
    summary.rejected_file = rejected.path if summary.rejected else None
    summary.seconds = time.monotonic() - started
    return summary


def _read(
    source: CsvSource,
    validator: RowValidator,
    pool: list[_Writer],
    sink: _RejectedSink,
    summary: ImportSummary,
    batch_rows: int,
    progress: Progress | None,
) -> None:
    """Reads and validates; hands each batch's rows to the writers, its invalid rows to the sink."""
    n = len(pool)
    seq, count = 0, 0
    parts = [_Batch(seq, 2) for _ in pool]
    bad: list[Rejection] = []
    site_names: dict[str, str] = {}  # folded site code → the first name given to it in the file

    def send() -> bool:
        nonlocal seq, count, parts, bad
        sink.hand_in(seq, bad)
        if not all(writer.send(part) for writer, part in zip(pool, parts, strict=True)):
            return False
        seq, count, bad = seq + 1, 0, []
        parts = [_Batch(seq, 2) for _ in pool]
        return True

    for record in source.records():
        if count == 0:
            for part in parts:
                part.first_line = record.line
        summary.rows_read += 1
        count += 1
        result = validator.validate(record)
        if isinstance(result, ImportRow):
            # A new site is named on its first row; later rows may leave site_name empty. Carry the
            # name here, since those rows may go to another writer than the naming one.
            folded = result.site_code.casefold()
            if result.site_name:
                site_names.setdefault(folded, result.site_name)
            else:
                result.site_name = site_names.get(folded)
            parts[ord(result.national_id[-1]) % n].rows.append(result)
        else:
            bad.append((record.line, record.fields, result))
        if count >= batch_rows and not send():
            return
        if progress is not None and not summary.rows_read & 1023:
            progress.update(summary.rows_read)
    if count:
        send()


def _audit_detail(summary: ImportSummary) -> str:
    return (
        f"file={summary.source.name} rows={summary.rows_read} persons_created={summary.persons_created}"
        f" doses_added={summary.doses_added} unchanged={summary.unchanged} rejected={summary.rejected}"
        f" cases_closed={summary.cases_closed}"
    )


def run_import_cli(settings: Any, path: str, *, as_json: bool = False) -> int:
    """The CLI command: 0 when the file was processed (even with rejected rows), non-zero otherwise.
    `as_json` prints the summary as one JSON object (scripts read `rejected` and `rejected_file`)."""
    if getattr(settings, "registry_backend", "embedded") != "embedded":
        print(
            "import-doses writes to the embedded registry; REGISTRY_BACKEND is "
            f"{settings.registry_backend!r}. Import into the remote registry with its own tools.",
            file=sys.stderr,
        )
        return 2
    try:
        migrate(settings.database_url)
    except (SQLAlchemyError, OSError) as exc:
        print(f"Cannot prepare the database: {brief_error(exc)}", file=sys.stderr)
        return 3
    engine = make_sync_engine(settings.database_url)
    try:
        summary = import_file(engine, Path(path), progress=Progress())
    except ImportFileError as exc:
        print(f"Cannot import {path}: {exc}.", file=sys.stderr)
        return 2
    except RejectedFileError as exc:
        print(
            f"The import of {path} stopped: {exc}.\nBatches already written stay imported; "
            "run the same command again once the rejected rows can be written.",
            file=sys.stderr,
        )
        return 3
    except DATABASE_ERRORS as exc:
        print(f"The import of {path} failed: {brief_error(exc)}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"Cannot read {path}: {exc.strerror or exc}.", file=sys.stderr)
        return 2
    except ImportStopped as exc:
        print(
            f"The import of {path} {exc}.\nRows before line {exc.line} are imported; "
            "run the same command again when the database is back (a re-import changes nothing that is stored).",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        print(
            "\nInterrupted; the rows of committed batches are imported. Run it again to finish.",
            file=sys.stderr,
        )
        return 130
    finally:
        engine.dispose()
    print(json.dumps(summary.to_json(), ensure_ascii=False) if as_json else summary.render(), flush=True)
    return 0


__all__ = ["ImportFileError", "ImportStopped", "import_file", "run_import_cli"]
