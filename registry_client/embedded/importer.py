"""`python main.py import-doses FILE.csv`: persons and doses from a site's CSV file (INTERFACES §5).

The file is streamed in batches: read and validate a batch of rows, decide them against what is
stored with a few set-at-a-time queries, write them, commit. A re-import changes nothing; a row
that disagrees with a stored dose is rejected, never written over. Rejected rows go to
`<input>.rejected.csv` with their line and reason; the summary goes to standard output.
"""

from __future__ import annotations

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
from registry_client.embedded.import_batch import BatchWriter, Rejection
from registry_client.embedded.import_report import ImportSummary, Progress, RejectedFile, rejected_path
from registry_client.embedded.import_rows import CsvSource, ImportFileError, ImportRow, RowValidator
from registry_client.embedded.import_store import import_store

VIET_NAM = timezone(timedelta(hours=7))  # no daylight saving time
BATCH_ROWS = 5000


class ImportStopped(Exception):
    """The database failed part-way; batches before `line` are committed."""

    def __init__(self, line: int, cause: BaseException) -> None:
        super().__init__(f"stopped at line {line}: {type(cause).__name__}: {cause}")
        self.line = line


@dataclass
class _Batch:
    first_line: int
    rows: list[ImportRow] = field(default_factory=list)
    bad: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.bad)


class _Writer(threading.Thread):
    """Owns the database connection: applies batch after batch while the reader validates the next.

    psycopg and sqlite3 release the GIL while the database works, so reading and validating
    overlap with the writes on a machine with two cores.
    """

    def __init__(
        self, engine: Engine, actor: str, summary: ImportSummary, rejected: RejectedFile, clock: Clock
    ):
        super().__init__(name="dose-import-writer", daemon=True)
        self.queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self._engine, self._actor, self._summary, self._rejected, self._clock = (
            engine,
            actor,
            summary,
            rejected,
            clock,
        )

    def run(self) -> None:
        line = 2
        try:
            with self._engine.connect() as conn:
                store = import_store(conn, self._actor)
                writer = BatchWriter(store, self._summary)
                conn.commit()
                while (batch := self.queue.get()) is not None:
                    line = batch.first_line
                    with conn.begin():
                        store.begin_batch()
                        rejected = batch.bad + (writer.apply(batch.rows, self._clock()) if batch.rows else [])
                    for at, fields, reasons in sorted(rejected, key=lambda r: r[0]):
                        self._rejected.write(at, fields, self._summary.reject(at, reasons))
                with conn.begin():
                    store.audit("doses.import", _audit_detail(self._summary), self._clock())
        except SQLAlchemyError as exc:
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
    progress: Progress | None = None,
) -> ImportSummary:
    """Imports `path` into the embedded registry at `engine`. Raises ImportFileError, OSError, ImportStopped."""
    today = clock().astimezone(VIET_NAM).date()
    started = time.monotonic()
    with open(path, "rb") as raw:
        source = CsvSource(raw)
        summary = ImportSummary(path)
        rejected = RejectedFile(rejected_path(path), source.header, source.had_bom, source.delimiter)
        validator = RowValidator(source.index, len(source.header), today)
        writer = _Writer(engine, f"import:{path.name}"[:100], summary, rejected, clock)
        writer.start()
        try:
            batch = _Batch(2)
            for record in source.records():
                if not batch:
                    batch.first_line = record.line
                summary.rows_read += 1
                result = validator.validate(record)
                if isinstance(result, ImportRow):
                    batch.rows.append(result)
                else:
                    batch.bad.append((record.line, record.fields, result))
                if len(batch) >= batch_rows:
                    if not writer.send(batch):
                        break
                    batch = _Batch(record.line + 1)
                if progress is not None:
                    progress.update(summary.rows_read)
            else:
                if (not batch or writer.send(batch)) and writer.send(None):
                    writer.join()
        finally:
            if writer.is_alive() and writer.error is None:
                writer.send(None)
            writer.join()
            if progress is not None:
                progress.done()
            rejected.close(any_rejected=summary.rejected > 0)
    if writer.error is not None:
        raise writer.error
    summary.rejected_file = rejected.path if summary.rejected else None
    summary.seconds = time.monotonic() - started
    return summary


def _audit_detail(summary: ImportSummary) -> str:
    return (
        f"file={summary.source.name} rows={summary.rows_read} persons_created={summary.persons_created}"
        f" doses_added={summary.doses_added} unchanged={summary.unchanged} rejected={summary.rejected}"
        f" cases_closed={summary.cases_closed}"
    )


def run_import_cli(settings: Any, path: str) -> int:
    """The CLI command: 0 when the file was processed (even with rejected rows), non-zero otherwise."""
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
        print(f"Cannot prepare the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    engine = make_sync_engine(settings.database_url)
    try:
        summary = import_file(engine, Path(path), progress=Progress())
    except ImportFileError as exc:
        print(f"Cannot import {path}: {exc}.", file=sys.stderr)
        return 2
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
    print(summary.render(), flush=True)
    return 0


__all__ = ["ImportFileError", "ImportStopped", "import_file", "run_import_cli"]
