"""Reading and validating the rows of a dose import file (docs/import-file.md), one at a time.

The file is read as bytes line by line (memory does not grow with the file); each line is
decoded as UTF-8 on its own, so one line in another encoding is one rejected row, not a
failed import. Validation turns the text of a row into an `ImportRow` or a list of reasons.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, BinaryIO

from registry_client.identity import cccd_birth_year_mismatch, normalize_national_id, normalize_phone
from registry_client.vaccines import lookup_product

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

COLUMNS = (
    "national_id",
    "full_name",
    "date_of_birth",
    "sex",
    "phone",
    "dose_number",
    "vaccine",
    "lot",
    "administered_on",
    "site_code",
    "site_name",
)
# Optional: the reason to import a dose that breaks the dose sequence (certificates.dose_series);
# a row rejected for its sequence is imported again with this column filled in.
OVERRIDE_COLUMN = "override"
MAX_OVERRIDE = 500
FIRST_DOSE_DAY = date(2021, 1, 1)
EARLIEST_BIRTH = date(1900, 1, 1)
BOM = b"\xef\xbb\xbf"
CACHE_LIMIT = 50_000  # entries per memo of repeated values (dates, vaccine and site names)

# Column widths of the registry tables (checked here so SQLite and PostgreSQL agree).
MAX_NAME, MAX_LOT, MAX_SITE_CODE, MAX_SITE_NAME = 200, 40, 32, 200

# Rejection reasons (fixed texts, so the summary can count them); details follow after ": ".
R_COLUMNS = "wrong number of columns"
R_UTF8 = "not valid UTF-8"
R_CSV = "malformed CSV"
R_NATIONAL_ID = "national_id is not a 12-digit CCCD or 9-digit CMND"
R_CCCD_YEAR = "CCCD birth year digits disagree with date_of_birth"
R_NAME = "full_name is missing"
R_NAME_LONG = f"full_name is longer than {MAX_NAME} characters"
R_DOB = "date_of_birth is not a date YYYY-MM-DD"
R_DOB_RANGE = "date_of_birth is in the future or before 1900"
R_SEX = "sex is not M or F"
R_PHONE = "phone is not a Vietnamese phone number"
R_DOSE_NUMBER = "dose_number is not a number from 1 to 9"
R_VACCINE = "unknown vaccine"
R_LOT_LONG = f"lot is longer than {MAX_LOT} characters"
R_GIVEN = "administered_on is not a date YYYY-MM-DD"
R_GIVEN_FUTURE = "administered_on is in the future"
R_GIVEN_EARLY = "administered_on is before 2021-01-01"
R_GIVEN_BEFORE_BIRTH = "administered_on is before date_of_birth"
R_SITE_CODE = f"site_code is missing or longer than {MAX_SITE_CODE} characters"
R_SITE_NAME_LONG = f"site_name is longer than {MAX_SITE_NAME} characters"


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, empty, missing columns)."""


@dataclass(slots=True)
class ImportRow:
    """A valid row: normalised values, plus its line and original text for a later rejection."""

    line: int
    fields: list[str]
    national_id: str
    date_of_birth: date
    full_name: str
    sex: str
    phone: str | None
    dose_number: int
    product: str  # EU DCC medicinal product code
    lot: str | None
    administered_on: date
    site_code: str
    site_name: str | None
    override: str | None = None  # the reason to accept a dose out of sequence


@dataclass(slots=True)
class RawRecord:
    line: int
    fields: list[str]
    bad_encoding: bool
    error: str | None = None  # the CSV parser's complaint about this record


class CsvSource:
    """Header and records of an import file opened in binary mode."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._bad_line = False
        self.had_bom = False
        self._lines = self._decoded_lines()
        self._reader: CsvReader = csv.reader(self._lines)
        self.header, self.delimiter = self._read_header()
        if self.delimiter != ",":
            self._reader = csv.reader(self._lines, delimiter=self.delimiter)
        self.index = {name: self.header.index(name) for name in COLUMNS}
        if OVERRIDE_COLUMN in self.header:
            self.index[OVERRIDE_COLUMN] = self.header.index(OVERRIDE_COLUMN)

    def _decoded_lines(self) -> Iterator[str]:
        first = True
        for chunk in self._raw:
            if first:
                first = False
                if chunk.startswith(BOM):
                    self.had_bom, chunk = True, chunk[len(BOM) :]
            try:
                yield chunk.decode("utf-8")
            except UnicodeDecodeError:
                self._bad_line = True
                yield chunk.decode("utf-8", "surrogateescape")

    def _read_header(self) -> tuple[list[str], str]:
        try:
            first = next(self._lines, None)
        except OSError as exc:
            raise ImportFileError(f"cannot read the file: {exc.strerror or exc}") from exc
        if first is None or not first.strip():
            raise ImportFileError("the file is empty: the first line must be the header row")
        if self._bad_line:
            raise ImportFileError("the header row is not valid UTF-8")
        for delimiter in (",", ";", "\t"):
            names = [n.strip().lower() for n in next(csv.reader([first], delimiter=delimiter))]
            if not set(COLUMNS) - set(names):
                break
        else:
            names = [n.strip().lower() for n in next(csv.reader([first]))]
            missing = [c for c in COLUMNS if c not in names]
            raise ImportFileError(
                f"the header row lacks the column(s) {', '.join(missing)}; "
                f"expected {','.join(COLUMNS)} (found {','.join(names)[:300]})"
            )
        duplicated = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
        if duplicated:
            raise ImportFileError(f"the header row names these columns twice: {', '.join(duplicated)}")
        return names, delimiter

    def records(self) -> Iterator[RawRecord]:
        """Data records with the line each starts on (the header is line 1); blank lines skipped."""
        reader = self._reader
        end = 1
        while True:
            self._bad_line = False
            try:
                fields = next(reader, None)
            except csv.Error as exc:
                start, end = end + 1, 1 + reader.line_num
                yield RawRecord(start, [], False, f"{R_CSV}: {exc}")
                continue
            if fields is None:
                return
            start, end = end + 1, 1 + reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            yield RawRecord(start, fields, self._bad_line)


def _clean_text(text: str) -> str:
    """Trimmed, inner whitespace collapsed, Unicode NFC (names may arrive decomposed)."""
    text = " ".join(text.split())
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def _iso_date(text: str) -> date | None:
    text = text.strip()
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


class RowValidator:
    """Checks one record against §5; `today` is the local (Viet Nam) date of the import."""

    def __init__(self, index: dict[str, int], width: int, today: date) -> None:
        self._i = [index[c] for c in COLUMNS]
        self._i_override = index.get(OVERRIDE_COLUMN)
        self._width = width
        self._today = today
        self._products: dict[str, str | None] = {}
        self._dates: dict[str, date | None] = {}  # the same dates recur on thousands of rows
        self._site_names: dict[str, str] = {}
        self._names: dict[str, str] = {}  # full names recur too (family, middle and given names are few)

    def _product(self, text: str) -> str | None:
        try:
            return self._products[text]
        except KeyError:
            found = lookup_product(text)
            code = found.code if found is not None else None
            if len(self._products) < CACHE_LIMIT:
                self._products[text] = code
            return code

    def _date(self, text: str) -> date | None:
        try:
            return self._dates[text]
        except KeyError:
            parsed = _iso_date(text)
            if len(self._dates) < CACHE_LIMIT:
                self._dates[text] = parsed
            return parsed

    def _site_name(self, text: str) -> str:
        try:
            return self._site_names[text]
        except KeyError:
            cleaned = _clean_text(text)
            if len(self._site_names) < CACHE_LIMIT:
                self._site_names[text] = cleaned
            return cleaned

    def _name(self, text: str) -> str:
        try:
            return self._names[text]
        except KeyError:
            cleaned = _clean_text(text)
            if len(self._names) < CACHE_LIMIT:
                self._names[text] = cleaned
            return cleaned

    def validate(self, record: RawRecord) -> ImportRow | list[str]:
        fields = record.fields
        if record.error is not None:
            return [record.error]
        if record.bad_encoding:
            return [R_UTF8]
        if len(fields) != self._width:
            return [f"{R_COLUMNS}: expected {self._width}, got {len(fields)}"]
        i_nid, i_name, i_dob, i_sex, i_phone, i_dose, i_vac, i_lot, i_given, i_code, i_site = self._i
        errors: list[str] = []

        text = fields[i_nid].strip()
        if text.isascii() and text.isdigit():  # the usual case, without the regular expressions
            national_id: str | None = text if len(text) in (9, 12) else None
        else:
            national_id = normalize_national_id(text)
            if national_id is not None and not national_id.isascii():  # "digits" of other scripts
                national_id = None
        if national_id is None:
            errors.append(R_NATIONAL_ID)
        full_name = self._name(fields[i_name])
        if not full_name:
            errors.append(R_NAME)
        elif len(full_name) > MAX_NAME:
            errors.append(R_NAME_LONG)
        dob = self._date(fields[i_dob])
        if dob is None:
            errors.append(R_DOB)
        elif dob > self._today or dob < EARLIEST_BIRTH:
            errors.append(R_DOB_RANGE)
        elif national_id is not None and cccd_birth_year_mismatch(national_id, dob):
            errors.append(R_CCCD_YEAR)
        sex = fields[i_sex].strip().upper()
        if sex not in ("M", "F"):
            errors.append(R_SEX)
        phone_text = fields[i_phone].strip()
        if (
            len(phone_text) == 10
            and phone_text[0] == "0"
            and phone_text[1] in "35789"
            and phone_text.isascii()
            and phone_text.isdigit()
        ):
            phone: str | None = "+84" + phone_text[1:]  # 0901234567, the usual case
        else:
            phone = normalize_phone(phone_text) if phone_text else None
            if phone is not None and not phone.isascii():
                phone = None
        if phone_text and phone is None:
            errors.append(R_PHONE)
        dose_text = fields[i_dose].strip()
        dose_number = (
            int(dose_text) if len(dose_text) <= 2 and dose_text.isascii() and dose_text.isdigit() else 0
        )
        if not 1 <= dose_number <= 9:
            errors.append(R_DOSE_NUMBER)
        product = self._product(fields[i_vac])
        if product is None:
            errors.append(R_VACCINE)
        lot = fields[i_lot].strip() or None
        if lot is not None and len(lot) > MAX_LOT:
            errors.append(R_LOT_LONG)
        given = self._date(fields[i_given])
        if given is None:
            errors.append(R_GIVEN)
        elif given > self._today:
            errors.append(R_GIVEN_FUTURE)
        elif given < FIRST_DOSE_DAY:
            errors.append(R_GIVEN_EARLY)
        elif dob is not None and given < dob:
            errors.append(R_GIVEN_BEFORE_BIRTH)
        site_code = fields[i_code].strip()
        if not site_code or len(site_code) > MAX_SITE_CODE:
            errors.append(R_SITE_CODE)
        site_name = self._site_name(fields[i_site]) or None
        if site_name is not None and len(site_name) > MAX_SITE_NAME:
            errors.append(R_SITE_NAME_LONG)

        override = None
        if self._i_override is not None:
            override = " ".join(fields[self._i_override].split())[:MAX_OVERRIDE] or None

        if errors:
            return errors
        assert national_id is not None and dob is not None and product is not None and given is not None
        return ImportRow(
            record.line,
            fields,
            national_id,
            dob,
            full_name,
            sex,
            phone,
            dose_number,
            product,
            lot,
            given,
            site_code,
            site_name,
            override,
        )
