"""What a person's doses prove: THE rule, asked by every place that shows or signs a dose count.

Status texts (every channel), the certificate payload (`dn`/`sd`), the certificate page, the
certificate-code answer and the console all read a `SeriesReading`; none counts doses itself.

The rule, following the EU DCC dose-numbering guidance (the eHealth Network examples
`1-of-1-janssen`, `2-of-1-janssen-janssen`, `3-of-3-moderna-…`):

- Doses are taken in the order they were given (date, then recorded number). A dose counts for
  what it is in that order, whatever number it was filed under: a certificate never claims more
  doses than the record holds, and the numbers the record skips are reported as missing.
- The primary series needs the number of doses of the product that started it (Jcovden and
  Sputnik Light 1, Abdala 3, the others 2); a mixed (heterologous) series is complete when that
  many doses were given, whatever the products.
- Doses after a complete primary series are boosters. `sd` is the primary-series length for a
  primary dose (1/2, 2/2); a booster after a two- or three-dose series carries `sd = dn` (3/3,
  4/4); a booster after a one-dose series keeps `sd = 1` (2/1, 3/1).

It also says what is wrong with a record — a gap in the numbers, a number used twice, a dose
dated before the dose it follows — so that approvals and imports can ask for an explicit
override before they write such a record (`problems_added_by`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from certificates import valuesets
from certificates.protocols import DoseLike

DEFAULT_SERIES = 2  # a product missing from the value sets: the common two-dose schedule

Role = Literal["primary", "booster"]
ProblemKind = Literal["gap", "duplicate", "out_of_order"]


@dataclass(frozen=True)
class CountedDose:
    """One dose as the rule counts it: its place in the history and what a certificate encodes."""

    dose: DoseLike
    ordinal: int  # 1 for the first dose given, 2 for the second, ...
    role: Role
    dn: int  # what a certificate for this dose encodes
    sd: int

    @property
    def recorded_number(self) -> int:
        return self.dose.dose_number

    @property
    def renumbered(self) -> bool:
        """Filed under another number than its place in the history (the record has a gap)."""
        return self.dose.dose_number != self.ordinal


@dataclass(frozen=True)
class SequenceProblem:
    """Something in a record that a careful person would not write without a reason."""

    kind: ProblemKind
    dose_number: int  # the dose the problem is about
    detail: tuple[int, ...] = ()  # gap: the missing numbers; duplicate/out_of_order: the other dose

    def describe(self) -> str:
        """One English sentence for logs, audit lines, API answers and the import report."""
        if self.kind == "gap":
            missing = ", ".join(str(n) for n in self.detail)
            plural = "s" if len(self.detail) > 1 else ""
            return f"dose {self.dose_number} leaves a gap: dose{plural} {missing} not on record"
        if self.kind == "duplicate":
            other = self.detail[0] if self.detail else self.dose_number
            if other == self.dose_number:
                return f"dose {self.dose_number} is already on record with other data"
            return f"dose {self.dose_number} has the same date as dose {other}"
        other = self.detail[0] if self.detail else 0
        return f"dose {self.dose_number} is dated out of order with dose {other}"


@dataclass(frozen=True)
class SeriesReading:
    """What the record proves. Build it with `read_series`."""

    counted: tuple[CountedDose, ...]  # in the order given
    primary_required: int  # 0 when there is no dose
    missing: tuple[int, ...]  # dose numbers the record skips
    problems: tuple[SequenceProblem, ...]

    @property
    def given(self) -> int:
        return len(self.counted)

    @property
    def primary_given(self) -> int:
        return min(self.given, self.primary_required)

    @property
    def primary_complete(self) -> bool:
        return self.given > 0 and self.given >= self.primary_required

    @property
    def boosters(self) -> int:
        return max(0, self.given - self.primary_required)

    @property
    def latest(self) -> CountedDose | None:
        """The dose a certificate encodes: the last one given."""
        return self.counted[-1] if self.counted else None

    @property
    def mixed(self) -> bool:
        return len({c.dose.product.strip().lower() for c in self.counted}) > 1

    @property
    def has_gap(self) -> bool:
        return bool(self.missing)

    def for_dose(self, dose: DoseLike) -> CountedDose | None:
        return next((c for c in self.counted if c.dose is dose), None)


def series_length(product_code: str) -> int:
    """Doses in the primary series of a product (the value sets' schedule)."""
    found = valuesets.product(product_code)
    return found.series_doses if found else DEFAULT_SERIES


def _given_order(doses: Sequence[DoseLike]) -> list[DoseLike]:
    return sorted(doses, key=lambda d: (d.administered_on, d.dose_number))


def encoded_numbers(ordinal: int, primary_required: int) -> tuple[Role, int, int]:
    """(role, dn, sd) of the `ordinal`-th dose given, after the EU DCC dose-numbering guidance."""
    if ordinal <= primary_required:
        return "primary", ordinal, primary_required
    if primary_required == 1:
        return "booster", ordinal, 1
    return "booster", ordinal, ordinal


def sequence_problems(doses: Sequence[DoseLike]) -> tuple[SequenceProblem, ...]:
    """Gaps in the numbers, numbers or dates used twice, doses dated before an earlier number."""
    problems: list[SequenceProblem] = []
    by_number: dict[int, DoseLike] = {}
    for dose in sorted(doses, key=lambda d: (d.dose_number, d.administered_on)):
        if dose.dose_number in by_number:
            problems.append(SequenceProblem("duplicate", dose.dose_number, (dose.dose_number,)))
        else:
            by_number[dose.dose_number] = dose
    numbers = sorted(by_number)
    previous = 0
    for n in numbers:
        if n > previous + 1:
            problems.append(SequenceProblem("gap", n, tuple(range(previous + 1, n))))
        previous = n
    for lower, higher in zip(numbers, numbers[1:], strict=False):
        if by_number[higher].administered_on < by_number[lower].administered_on:
            problems.append(SequenceProblem("out_of_order", higher, (lower,)))
    seen: dict[date, int] = {}
    for n in numbers:
        day = by_number[n].administered_on
        if day in seen:
            problems.append(SequenceProblem("duplicate", n, (seen[day],)))
        else:
            seen[day] = n
    return tuple(problems)


def read_series(doses: Sequence[DoseLike]) -> SeriesReading:
    """What `doses` (one person's, any order) prove."""
    ordered = _given_order(doses)
    if not ordered:
        return SeriesReading((), 0, (), ())
    required = series_length(ordered[0].product)
    counted = []
    for ordinal, dose in enumerate(ordered, start=1):
        role, dn, sd = encoded_numbers(ordinal, required)
        counted.append(CountedDose(dose, ordinal, role, dn, sd))
    numbers = {d.dose_number for d in ordered}
    missing = tuple(n for n in range(1, max(numbers)) if n not in numbers)
    return SeriesReading(tuple(counted), required, missing, sequence_problems(ordered))


def problems_added_by(
    existing: Sequence[DoseLike], new: DoseLike, *, replaces_same_number: bool = False
) -> tuple[SequenceProblem, ...]:
    """The problems that writing `new` would bring into the record (none it already had).

    `replaces_same_number`: the write corrects the dose of that number (a wrong-dose report)
    instead of adding one; a missing-dose report that names a number already on record with
    other data is a duplicate.
    """
    kept = list(existing)
    same = [d for d in kept if d.dose_number == new.dose_number]
    if any(_same_dose(d, new) for d in same):
        return ()  # already recorded as it is: writing it again changes nothing
    if replaces_same_number:
        kept = [d for d in kept if d.dose_number != new.dose_number]
    before = set(sequence_problems(kept))
    return tuple(p for p in sequence_problems([*kept, new]) if p not in before)


def _same_dose(a: DoseLike, b: DoseLike) -> bool:
    return (
        a.dose_number == b.dose_number
        and a.product.strip().lower() == b.product.strip().lower()
        and a.administered_on == b.administered_on
    )


def next_dose_number(doses: Sequence[DoseLike]) -> int:
    """The number the next dose takes on this record (what an approval form suggests)."""
    return max((d.dose_number for d in doses), default=0) + 1
