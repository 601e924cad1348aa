"""What a dose import tells its operator: the rejected-rows file, progress, and the summary."""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

SHOWN = 100  # rejected rows and warnings listed in the summary; the rest are counted


def rejected_path(source: Path) -> Path:
    """doses.csv → doses.rejected.csv, beside the input."""
    return source.with_name(f"{source.stem if source.suffix else source.name}.rejected.csv")


@dataclass
class ImportSummary:
    source: Path
    rows_read: int = 0
    persons_created: int = 0
    doses_added: int = 0
    unchanged: int = 0
    rejected: int = 0
    sites_created: int = 0
    contacts_added: int = 0
    cases_closed: int = 0
    cases_linked: int = 0
    warnings: int = 0
    seconds: float = 0.0
    rejected_file: Path | None = None
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    warnings_by_reason: Counter[str] = field(default_factory=Counter)
    rejections_shown: list[tuple[int, str]] = field(default_factory=list)
    warnings_shown: list[tuple[int, str]] = field(default_factory=list)
    closed_refs: list[str] = field(default_factory=list)

    def reject(self, line: int, reasons: list[str]) -> str:
        self.rejected += 1
        for reason in reasons:
            self.rejected_by_reason[reason.split(": ", 1)[0]] += 1
        text = "; ".join(reasons)
        if len(self.rejections_shown) < SHOWN:
            self.rejections_shown.append((line, text))
        return text

    def warn(self, line: int, text: str) -> None:
        self.warnings += 1
        self.warnings_by_reason[text] += 1
        if len(self.warnings_shown) < SHOWN:
            self.warnings_shown.append((line, text))

    def merge(self, part: ImportSummary) -> None:
        """Adds the counts of one writer (rows read and rejections are counted here already)."""
        for name in (
            "persons_created",
            "doses_added",
            "unchanged",
            "sites_created",
            "contacts_added",
            "cases_closed",
            "cases_linked",
            "warnings",
        ):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.warnings_by_reason.update(part.warnings_by_reason)
        self.warnings_shown = sorted(self.warnings_shown + part.warnings_shown)[:SHOWN]
        self.closed_refs = (self.closed_refs + part.closed_refs)[:SHOWN]

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary for scripts (`import-doses --json`): counts, the rejected rows' file, reasons."""
        return {
            "file": str(self.source),
            "rows_read": self.rows_read,
            "persons_created": self.persons_created,
            "doses_added": self.doses_added,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "rejected_file": str(self.rejected_file) if self.rejected_file else None,
            "rejected_by_reason": dict(self.rejected_by_reason.most_common()),
            "sites_created": self.sites_created,
            "contacts_added": self.contacts_added,
            "cases_closed": self.cases_closed,
            "cases_linked": self.cases_linked,
            "warnings": self.warnings,
            "warnings_by_reason": dict(self.warnings_by_reason.most_common()),
            "seconds": round(self.seconds, 3),
        }

    def render(self) -> str:
        out = [
            f"Imported {self.source.name}",
            f"  rows read        {self.rows_read:>12,}",
            f"  persons created  {self.persons_created:>12,}",
            f"  doses added      {self.doses_added:>12,}",
            f"  unchanged        {self.unchanged:>12,}   (already recorded with the same data)",
            f"  rejected         {self.rejected:>12,}"
            + (f"   (written to {self.rejected_file})" if self.rejected_file else ""),
        ]
        out += [f"      {n:>8,}  {reason}" for reason, n in self.rejected_by_reason.most_common()]
        out += [
            f"  sites created    {self.sites_created:>12,}",
            f"  phones added     {self.contacts_added:>12,}   (as unverified contacts)",
            f"  correction cases closed {self.cases_closed:>5,}"
            + (
                f"   ({', '.join(self.closed_refs[:20])}{', …' if self.cases_closed > 20 else ''})"
                if self.closed_refs
                else ""
            ),
        ]
        if self.cases_linked:
            out.append(f"  cases linked to their person record {self.cases_linked:,}")
        out.append(f"  warnings         {self.warnings:>12,}")
        out += [f"      {n:>8,}  {text}" for text, n in self.warnings_by_reason.most_common()]
        out.append(f"  time             {self.seconds:>11.1f}s   ({self.rows_per_second:,.0f} rows/s)")
        if self.rejections_shown:
            out.append("Rejected rows:")
            out += [f"  line {line}: {text}" for line, text in self.rejections_shown]
            if self.rejected > len(self.rejections_shown):
                out.append(
                    f"  … and {self.rejected - len(self.rejections_shown):,} more in {self.rejected_file}"
                )
        if self.warnings_shown:
            out.append("Warnings (rows imported, stored data kept):")
            out += [f"  line {line}: {text}" for line, text in self.warnings_shown]
            if self.warnings > len(self.warnings_shown):
                out.append(f"  … and {self.warnings - len(self.warnings_shown):,} more")
        return "\n".join(out)


class RejectedFileError(Exception):
    """The rejected rows cannot be written beside the input."""


class RejectedFile:
    """`<input>.rejected.csv`: the original columns of each rejected row, then `line` and `reason`.

    Opened at the first rejection; a stale file from an earlier run is removed when no row is
    rejected this time. Bytes that were not UTF-8 are written back as they were.
    """

    def __init__(self, path: Path, header: list[str], with_bom: bool, delimiter: str = ",") -> None:
        self.path = path
        self._keep = [i for i, name in enumerate(header) if name not in ("line", "reason")]
        self._header = [header[i] for i in self._keep] + ["line", "reason"]
        self._encoding = "utf-8-sig" if with_bom else "utf-8"
        self._delimiter = delimiter
        self._file: IO[str] | None = None
        self._csv: Any = None

    def write(self, line: int, fields: list[str], reason: str) -> None:
        try:
            if self._file is None:
                self._file = open(
                    self.path, "w", encoding=self._encoding, errors="surrogateescape", newline=""
                )
                self._csv = csv.writer(self._file, delimiter=self._delimiter)
                self._csv.writerow(self._header)
            original = [fields[i] if i < len(fields) else "" for i in self._keep]
            self._csv.writerow([*original, line, reason])
        except OSError as exc:
            raise RejectedFileError(
                f"cannot write the rejected rows to {self.path}: {exc.strerror or exc}"
            ) from exc

    def close(self, any_rejected: bool) -> Path | None:
        if self._file is not None:
            self._file.close()
            return self.path
        if not any_rejected and self.path.exists():
            self.path.unlink()
        return None


class Progress:
    """A progress line on a terminal (stderr), every `every` rows; silent when not a terminal."""

    def __init__(self, every: int = 50_000, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._on = self._stream.isatty()
        self._every = every
        self._next = every
        self._start = time.monotonic()

    def update(self, rows: int) -> None:
        if not self._on or rows < self._next:
            return
        self._next = rows - rows % self._every + self._every
        rate = rows / max(time.monotonic() - self._start, 1e-6)
        self._stream.write(f"\r  {rows:>12,} rows  {rate:>9,.0f} rows/s")
        self._stream.flush()

    def done(self) -> None:
        if self._on and self._next > self._every:
            self._stream.write("\n")
            self._stream.flush()
