"""One batch of valid import rows against the registry: decide each row, then write set-at-a-time.

Per batch: one query each for the persons, doses and contacts already stored, decisions in
Python (the same code on SQLite and PostgreSQL), then bulk inserts of the new sites, persons,
doses and contacts, and the closing of the correction cases that the new doses answer.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from certificates.dose_series import SequenceProblem, sequence_problems
from registry_client.embedded.dose_matching import (
    DoseData,
    case_closed_by_dose,
    differing_fields,
    dose_data,
    import_resolution_note,
)
from registry_client.embedded.import_report import ImportSummary
from registry_client.embedded.import_rows import ImportRow
from registry_client.embedded.import_store import ImportStore, PersonKey

R_SITE_NAME = "site_name is required for a new site_code"
R_OTHER_DOB = "national_id is on record with another date_of_birth"
R_CONFLICT = "conflicts with the stored dose"
R_RACE = "dose recorded by someone else during the import"
W_NAME = "full_name differs from the name on record; kept the name on record"
W_SEX = "sex differs from the record; kept the recorded sex"
W_OLD_PHONE = "phone was removed from this person's contacts earlier; not added again"
R_SEQUENCE = "dose sequence"
SEQUENCE_HINT = "to import it anyway, give the reason in an 'override' column and import the row again"
W_OVERRIDE = "dose out of sequence imported with the override reason given (audited)"
MIN_OVERRIDE = 5

Rejection = tuple[int, list[str], list[str]]  # line, original fields, reasons


def _same_name(a: str, b: str) -> bool:
    return unicodedata.normalize("NFC", a).casefold() == unicodedata.normalize("NFC", b).casefold()


@dataclass(eq=False, slots=True)
class _Person:
    """A person of this batch, stored already (id known) or new (id after the insert)."""

    national_id: str
    date_of_birth: date
    full_name: str
    sex: str | None
    id: int = 0
    is_new: bool = False
    current_phones: set[str] = field(default_factory=set)
    retired_phones: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _SeqDose:
    """A dose as certificates.dose_series reads it (stored, or a row of this batch)."""

    dose_number: int
    product: str
    administered_on: date
    lot: str | None
    site_code: str


@dataclass(slots=True)
class _Plan:
    persons: dict[PersonKey, _Person] = field(default_factory=dict)
    doses: dict[tuple[_Person, int], DoseData] = field(default_factory=dict)
    new_doses: list[tuple[_Person, ImportRow, str]] = field(default_factory=list)  # person, row, site
    new_contacts: list[tuple[_Person, str]] = field(default_factory=list)
    new_sites: dict[str, tuple[str, str]] = field(default_factory=dict)  # folded code → (code, name)
    unchanged: int = 0


class SiteCache:
    """Codes of the stored sites, looked up case-insensitively; shared by the writers of one import."""

    def __init__(self, codes: Iterable[str]) -> None:
        self._codes = {code.casefold(): code for code in codes}
        self._lock = threading.Lock()

    def get(self, folded: str) -> str | None:
        return self._codes.get(folded)

    def add(self, codes: Iterable[str]) -> None:
        """Codes whose insert is committed (never before: another writer would rely on them)."""
        with self._lock:
            self._codes.update((code.casefold(), code) for code in codes)


class BatchWriter:
    """Applies batches to the registry through `store`; counts into `summary`."""

    def __init__(self, store: ImportStore, summary: ImportSummary, sites: SiteCache) -> None:
        self.store = store
        self.summary = summary
        self.sites = sites
        self._sites_written: list[str] = []

    def committed(self) -> None:
        """The caller committed the last batch: its new sites are known to every writer now."""
        self.sites.add(self._sites_written)
        self._sites_written = []

    def apply(self, rows: list[ImportRow], now: datetime) -> list[Rejection]:
        """Decides and writes `rows` (inside the caller's transaction); answers the rejected ones."""
        rejected: list[Rejection] = []
        plan = self._load(rows)
        for row in rows:
            reason = self._decide(plan, row)
            if reason is not None:
                rejected.append((row.line, row.fields, [reason]))
        overrides = self._check_sequences(plan, rejected)
        self._write(plan, now, rejected)
        for person, row, text in overrides:  # after the write: new persons have their id now
            self.store.audit("dose.sequence_override", text, now, person.id)
            self.summary.warn(row.line, W_OVERRIDE)
        return rejected

    # -- the dose sequence (certificates.dose_series) ------------------------------------------
    def _check_sequences(
        self, plan: _Plan, rejected: list[Rejection]
    ) -> list[tuple[_Person, ImportRow, str]]:
        """Rejects new doses that would leave a gap, reuse a number or date, or come before their
        predecessor, unless the row gives an override reason; answers the overridden ones."""
        news: dict[_Person, list[tuple[ImportRow, str]]] = defaultdict(list)
        for person, row, site in plan.new_doses:
            news[person].append((row, site))
        if not news:
            return []
        stored: dict[_Person, list[_SeqDose]] = defaultdict(list)
        for (person, number), data in plan.doses.items():
            if person in news:
                stored[person].append(_SeqDose(number, data[0], data[1], data[3], data[2]))
        dropped: set[tuple[_Person, int]] = set()
        overrides: list[tuple[_Person, ImportRow, str]] = []
        for person, added in news.items():
            new_numbers = {row.dose_number for row, _ in added}
            kept = [d for d in stored[person] if d.dose_number not in new_numbers]
            before = set(sequence_problems(kept))
            accepted = list(added)
            while True:
                record = kept + [
                    _SeqDose(r.dose_number, r.product, r.administered_on, r.lot, site) for r, site in accepted
                ]
                problems = [p for p in sequence_problems(record) if p not in before]
                blamed: dict[int, list[SequenceProblem]] = defaultdict(list)
                for problem in problems:  # on the dose the problem names; else the new dose it involves
                    candidates = [problem.dose_number]
                    if problem.kind != "gap":
                        candidates += list(problem.detail)
                    involved = [n for n in candidates if n in new_numbers]
                    if involved:
                        blamed[involved[0]].append(problem)
                refused = [
                    (r, s)
                    for r, s in accepted
                    if r.dose_number in blamed and len(r.override or "") < MIN_OVERRIDE
                ]
                if not refused:
                    break
                for row, site in refused:
                    described = "; ".join(p.describe() for p in blamed[row.dose_number])
                    rejected.append((row.line, row.fields, [f"{R_SEQUENCE}: {described} ({SEQUENCE_HINT})"]))
                    dropped.add((person, row.dose_number))
                    accepted.remove((row, site))
            for row, _site in accepted:
                if row.dose_number in blamed:
                    described = "; ".join(p.describe() for p in blamed[row.dose_number])
                    overrides.append((person, row, f"line {row.line}: {described}; reason: {row.override}"))
        if dropped:
            plan.new_doses = [d for d in plan.new_doses if (d[0], d[1].dose_number) not in dropped]
            for key in dropped:
                del plan.doses[key]
        return overrides

    # -- reading what is stored ---------------------------------------------------------------
    def _load(self, rows: list[ImportRow]) -> _Plan:
        plan = _Plan()
        stored = self.store.persons_by_national_id(sorted({r.national_id for r in rows}))
        by_id: dict[int, _Person] = {}
        for p in stored:
            person = _Person(p.national_id, p.date_of_birth, p.full_name, p.sex, id=p.id)
            plan.persons[(p.national_id, p.date_of_birth)] = person
            by_id[p.id] = person
        self._other_dob = {p.national_id for p in stored}
        wanted = {(r.national_id, r.date_of_birth) for r in rows}
        ids = sorted(p.id for p in by_id.values() if (p.national_id, p.date_of_birth) in wanted)
        for d in self.store.doses_of(ids):
            plan.doses[(by_id[d.person_id], d.dose_number)] = dose_data(
                d.product, d.administered_on, d.site_code, d.lot
            )
        for pid, phone, current in self.store.contacts_of(ids):
            (by_id[pid].current_phones if current else by_id[pid].retired_phones).add(phone)
        for person in by_id.values():
            person.retired_phones -= person.current_phones
        return plan

    # -- one row --------------------------------------------------------------------------------
    def _decide(self, plan: _Plan, row: ImportRow) -> str | None:
        folded = row.site_code.casefold()
        site_code = self.sites.get(folded)
        new_site = None
        if site_code is None:
            pending = plan.new_sites.get(folded)
            if pending is not None:
                site_code = pending[0]
            elif row.site_name:
                site_code, new_site = row.site_code, (row.site_code, row.site_name)
            else:
                return R_SITE_NAME
        key = (row.national_id, row.date_of_birth)
        person = plan.persons.get(key)
        fresh = person is None
        if person is None:
            if row.national_id in self._other_dob:
                return R_OTHER_DOB
            person = _Person(row.national_id, row.date_of_birth, row.full_name, row.sex, is_new=True)
        data = dose_data(row.product, row.administered_on, site_code, row.lot)
        stored = plan.doses.get((person, row.dose_number))
        if stored is not None and stored != data:
            return (
                f"{R_CONFLICT}: dose {row.dose_number} differs in {', '.join(differing_fields(stored, data))}"
            )
        # accepted from here on
        if fresh:
            plan.persons[key] = person
            self._other_dob.add(row.national_id)
        if new_site is not None:
            plan.new_sites[folded] = new_site
        if stored is None:
            plan.doses[(person, row.dose_number)] = data
            plan.new_doses.append((person, row, site_code))
        else:
            plan.unchanged += 1
        if not fresh:
            if person.full_name != row.full_name and not _same_name(person.full_name, row.full_name):
                self.summary.warn(row.line, W_NAME)
            if person.sex and person.sex != row.sex:
                self.summary.warn(row.line, W_SEX)
        if row.phone and row.phone not in person.current_phones:
            if row.phone in person.retired_phones:
                self.summary.warn(row.line, W_OLD_PHONE)
            else:
                person.current_phones.add(row.phone)
                plan.new_contacts.append((person, row.phone))
        return None

    # -- writing --------------------------------------------------------------------------------
    def _write(self, plan: _Plan, now: datetime, rejected: list[Rejection]) -> None:
        store, summary = self.store, self.summary
        if plan.new_sites:
            summary.sites_created += store.insert_sites(sorted(plan.new_sites.values()))
            self._sites_written = [code for code, _name in plan.new_sites.values()]
        new_persons = [p for p in plan.persons.values() if p.is_new]
        if new_persons:
            ids = store.insert_persons(
                [(p.national_id, p.date_of_birth, p.full_name, p.sex or "") for p in new_persons], now
            )
            for p in new_persons:
                p.id = ids[(p.national_id, p.date_of_birth)]
            summary.persons_created += len(new_persons)
        inserted = store.insert_doses(
            [
                (p.id, r.dose_number, r.product, r.lot, r.administered_on, site)
                for p, r, site in plan.new_doses
            ],
            now,
        )
        added = plan.new_doses
        if len(inserted) < len(added):  # another writer got in first: those rows are not ours
            added = [d for d in plan.new_doses if (d[0].id, d[1].dose_number) in inserted]
            rejected.extend(
                (r.line, r.fields, [R_RACE])
                for p, r, _ in plan.new_doses
                if (p.id, r.dose_number) not in inserted
            )
        summary.doses_added += len(added)
        summary.unchanged += plan.unchanged
        if plan.new_contacts:
            store.insert_contacts([(p.id, phone) for p, phone in plan.new_contacts], now)
            summary.contacts_added += len(plan.new_contacts)
        if added:
            self._close_cases(plan, added, now)

    def _close_cases(
        self, plan: _Plan, new_doses: list[tuple[_Person, ImportRow, str]], now: datetime
    ) -> None:
        persons = {p.id: p for p, _row, _site in new_doses}
        stored_before = sorted(pid for pid, p in persons.items() if not p.is_new)  # only they can have cases
        cases = self.store.open_cases(stored_before, sorted({p.national_id for p in persons.values()}))
        if not cases:
            return
        added: dict[int, list[int]] = defaultdict(list)
        for p, row, _site in new_doses:
            added[p.id].append(row.dose_number)
        for case in cases:
            person_id = case.person_id
            if person_id is None:
                claimed = (case.claimed_national_id or "", case.claimed_date_of_birth)
                person = plan.persons.get(claimed) if claimed[1] is not None else None  # type: ignore[arg-type]
                if person is None or person.id not in added:
                    continue
                if not self.store.link_case(case.ref, person.id, now):
                    continue
                self.summary.cases_linked += 1
                person_id = person.id
            number = next(
                (
                    n
                    for n in sorted(added.get(person_id, ()))
                    if case_closed_by_dose(case.status, case.doses_concerned, n)
                ),
                None,
            )
            if number is not None and self.store.approve_case(case.ref, import_resolution_note(number), now):
                self.summary.cases_closed += 1
                if len(self.summary.closed_refs) < 100:
                    self.summary.closed_refs.append(case.ref)
