"""`python main.py import-doses FILE.csv` (docs/import-file.md) on SQLite and PostgreSQL.

The CLI runs through `main.main`, with DATABASE_URL pointing at the test database; what landed
is read back through EmbeddedRegistry. Payload files live in `import_files/`.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

import main
from db.base import make_async_engine, make_sync_engine
from registry_client.embedded.import_report import Progress
from registry_client.embedded.importer import import_file
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.embedded.tables import AuditRow, ContactRow, DoseRow, PersonRow, SiteRow
from registry_client.errors import RecordNotFound
from registry_client.models import (
    CaseKind,
    CaseStatus,
    ClaimedDose,
    ContactChange,
    DosesConcerned,
    DoseSource,
    NewCorrection,
    NewDose,
    NewPerson,
    Sex,
    Site,
)

FILES = Path(__file__).parent / "import_files"

# mixed.csv: line → the reason its row is rejected
MIXED_REJECTED = {
    5: "conflicts with the stored dose: dose 2 differs in administered_on",
    8: "national_id is not a 12-digit CCCD or 9-digit CMND",
    9: "CCCD birth year digits disagree with date_of_birth",
    10: "administered_on is in the future",
    11: "administered_on is before 2021-01-01",
    12: "unknown vaccine",
    13: "phone is not a Vietnamese phone number",
    14: "site_name is required for a new site_code",
    15: "wrong number of columns: expected 11, got 7",
    16: "not valid UTF-8",
    17: "national_id is on record with another date_of_birth",
    18: "sex is not M or F",
    19: "dose_number is not a number from 1 to 9",
    20: "administered_on is not a date YYYY-MM-DD",
}


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REGISTRY_BACKEND", "embedded")
    return db_url


@pytest.fixture
async def registry(db_url: str) -> AsyncIterator[EmbeddedRegistry]:
    engine = make_async_engine(db_url)
    yield EmbeddedRegistry(engine)
    await engine.dispose()


def payload(name: str, tmp_path: Path) -> Path:
    """A copy of a payload file in tmp_path (the rejected file is written beside it)."""
    target = tmp_path / name
    shutil.copy(FILES / name, target)
    return target


def run_cli(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main.main(["import-doses", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def summary_count(out: str, label: str) -> int:
    for line in out.splitlines():
        if line.strip().startswith(label):
            return int(line.strip()[len(label) :].split()[0].replace(",", ""))
    raise AssertionError(f"no {label!r} in the summary:\n{out}")


async def table_counts(registry: EmbeddedRegistry) -> dict[str, int]:
    counts = {}
    async with registry._sessions() as session:
        for row in (PersonRow, DoseRow, ContactRow, SiteRow):
            counts[row.__tablename__] = await session.scalar(select(func.count()).select_from(row))
    return counts


def read_rejected(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


async def check_mixed_landed(registry: EmbeddedRegistry) -> None:
    an = await registry.find_person("001085012345", date(1985, 3, 14))
    assert an.full_name == "Nguyễn Văn An" and an.sex == Sex.MALE
    assert an.current_phones == ("+84901234567",)
    assert [c.verified for c in an.contacts] == [False]
    doses = await registry.list_doses(an.id)
    assert [(d.dose_number, d.product, d.lot, d.administered_on, d.site_code) for d in doses] == [
        (1, "EU/1/21/1529", "AZ-NV4211", date(2021, 8, 2), "HN001"),
        (2, "EU/1/21/1529", "AZ-PX9034", date(2021, 10, 25), "HN001"),
        (3, "EU/1/20/1528", "FK5127", date(2022, 3, 10), "HN002"),
    ]
    assert {d.source for d in doses} == {DoseSource.IMPORT}
    assert doses[2].site_name == "Bệnh viện Bạch Mai, Hà Nội"

    hoa = await registry.find_person("025123456", date(1972, 6, 1))  # a 9-digit CMND
    assert hoa.full_name == "Lê Thị Hoa"  # line 7 spells it otherwise: the first name is kept
    assert sorted(hoa.current_phones) == ["+84912345678", "+84987654321"]
    hoa_doses = await registry.list_doses(hoa.id)
    assert [(d.dose_number, d.product, d.site_code) for d in hoa_doses] == [
        (1, "EU/1/20/1528", "HCM07"),
        (2, "EU/1/20/1528", "HCM07"),  # "hcm07" is the site HCM07
    ]
    assert {s.code: s.name for s in await registry.list_sites()} == {
        "HN001": "Trạm Y tế Phường Dịch Vọng",
        "HCM07": "Trạm Y tế Phường Tân Phong",
        "HN002": "Bệnh viện Bạch Mai, Hà Nội",
    }
    for national_id, born in (
        ("079190004321", date(1990, 7, 21)),  # every row of hers was rejected
        ("001086012399", date(1985, 1, 1)),
        ("001085012345", date(1985, 4, 14)),
    ):
        with pytest.raises(RecordNotFound):
            await registry.find_person(national_id, born)


async def test_mixed_file_lands_the_good_rows_and_reports_each_bad_one(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = payload("mixed.csv", tmp_path)
    code, out, _err = run_cli(source, capsys)
    assert code == 0
    await check_mixed_landed(registry)

    assert summary_count(out, "rows read") == 20
    assert summary_count(out, "persons created") == 2
    assert summary_count(out, "doses added") == 5
    assert summary_count(out, "unchanged") == 1  # line 4 repeats line 2
    assert summary_count(out, "rejected") == len(MIXED_REJECTED)
    assert summary_count(out, "sites created") == 3
    assert summary_count(out, "phones added") == 3
    assert summary_count(out, "warnings") == 1
    assert "line 7: full_name differs from the name on record" in out
    for line, reason in MIXED_REJECTED.items():
        assert f"line {line}: {reason}" in out

    rejected_file = tmp_path / "mixed.rejected.csv"
    assert str(rejected_file) in out
    rows = read_rejected(rejected_file)
    assert [(int(r["line"]), r["reason"]) for r in rows] == sorted(MIXED_REJECTED.items())
    by_line = {int(r["line"]): r for r in rows}
    assert by_line[8]["national_id"] == "12345678" and by_line[8]["full_name"] == "Phạm Văn Bảy"
    assert by_line[5]["administered_on"] == "2021-11-25"
    assert by_line[15]["vaccine"] == "Vero Cell" and by_line[15]["site_code"] == ""
    assert by_line[16]["national_id"] == "048095006789"
    assert by_line[16]["full_name"].encode("utf-8", "surrogateescape") == b"L\xea V\xe3n C\xfd\xf5\xccng"

    async with registry._sessions() as session:
        audit = (await session.scalars(select(AuditRow).where(AuditRow.action == "doses.import"))).all()
    assert [a.actor for a in audit] == ["import:mixed.csv"]

    before = await table_counts(registry)
    code, again, _err = run_cli(source, capsys)
    assert code == 0
    assert await table_counts(registry) == before
    assert summary_count(again, "persons created") == 0
    assert summary_count(again, "doses added") == 0
    assert summary_count(again, "sites created") == 0
    assert summary_count(again, "phones added") == 0
    assert summary_count(again, "unchanged") == 6
    assert summary_count(again, "rejected") == len(MIXED_REJECTED)
    await check_mixed_landed(registry)


async def test_small_batches_and_parallel_writers_give_the_same_result(
    db_url: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    """Rows of one person spread over several batches (and, on PostgreSQL, two writers)."""
    source = payload("mixed.csv", tmp_path)
    engine = make_sync_engine(db_url)
    try:
        writers = 2 if db_url.startswith("postgresql") else 1
        summary = import_file(engine, source, batch_rows=3, writers=writers)
    finally:
        engine.dispose()
    assert (summary.rows_read, summary.persons_created, summary.doses_added, summary.unchanged) == (
        20,
        2,
        5,
        1,
    )
    assert (summary.rejected, summary.sites_created, summary.contacts_added, summary.warnings) == (
        14,
        3,
        3,
        1,
    )
    assert summary.rejections_shown == sorted(MIXED_REJECTED.items())
    rows = read_rejected(tmp_path / "mixed.rejected.csv")
    assert [(int(r["line"]), r["reason"]) for r in rows] == sorted(MIXED_REJECTED.items())
    await check_mixed_landed(registry)


async def test_missing_columns_is_an_error_and_imports_nothing(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(payload("missing_columns.csv", tmp_path), capsys)
    assert code != 0
    assert "lot, site_name" in err and "national_id,full_name" in err
    assert out == ""
    assert (await table_counts(registry))["persons"] == 0
    assert not (tmp_path / "missing_columns.rejected.csv").exists()


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
async def test_unreadable_file_is_an_error(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "doses.csv"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    code, out, err = run_cli(path, capsys)
    assert code != 0
    assert str(path) in err
    assert {"missing": "No such file", "directory": "directory", "empty": "empty"}[kind] in err
    assert (await table_counts(registry))["persons"] == 0


async def test_header_only_file_is_processed(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "doses.csv"
    path.write_text(",".join(["site_name", *MIXED_HEADER[:-1]]) + "\r\n", encoding="utf-8")
    code, out, _err = run_cli(path, capsys)
    assert code == 0
    assert summary_count(out, "rows read") == 0


MIXED_HEADER = (
    "national_id,full_name,date_of_birth,sex,phone,dose_number,vaccine,lot,administered_on,site_code,site_name"
).split(",")


async def seed_bình_with_open_cases(registry: EmbeddedRegistry) -> dict[str, str]:
    """Bình has dose 1 and reports dose 2 missing (and, separately, a booster); Cường is not on record."""
    await registry.upsert_site(Site("HCM07", "Trạm Y tế Phường Tân Phong, Quận 7", "TP Hồ Chí Minh"))
    binh = await registry.create_person(
        NewPerson("079190004321", date(1990, 7, 21), "Trần Thị Bình", Sex.FEMALE, "+84912345678"), "test"
    )
    await registry.record_dose(binh.id, NewDose(1, "Vero Cell", date(2021, 9, 10), "HCM07", "202107B2215"))

    def report(doses: DosesConcerned, **kw: object) -> NewCorrection:
        return NewCorrection(
            kind=CaseKind.MISSING_DOSE,
            doses_concerned=doses,
            claimed=ClaimedDose(date(2021, 10, 8), "Vero Cell", "HCM07"),
            channel="sms",
            channel_address="+84912345678",
            **kw,  # type: ignore[arg-type]
        )

    second = await registry.submit_correction(report(DosesConcerned.SECOND, person_id=binh.id))
    booster = await registry.submit_correction(report(DosesConcerned.BOOSTER, person_id=binh.id))
    cuong = await registry.submit_correction(
        report(
            DosesConcerned.FIRST,
            claimed_national_id="048095006789",
            claimed_date_of_birth=date(1995, 11, 30),
            claimed_name="Lê Văn Cường",
        )
    )
    assert second.ref != booster.ref and cuong.person_id is None
    return {"second": second.ref, "booster": booster.ref, "cuong": cuong.ref, "binh": binh.id}


async def test_import_closes_the_open_case_of_that_dose(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = await seed_bình_with_open_cases(registry)
    code, out, _err = run_cli(payload("cases.csv", tmp_path), capsys)
    assert code == 0
    assert summary_count(out, "correction cases closed") == 2
    assert refs["second"] in out and refs["cuong"] in out

    second = await registry.get_correction(refs["second"])
    assert second.status == CaseStatus.APPROVED
    assert second.resolution_note == "dose 2 found in an import"
    assert second.resolved_at is not None
    assert ("import:cases.csv", "approved") in [(e.actor, e.action) for e in second.history]
    assert (await registry.get_correction(refs["booster"])).status == CaseStatus.ROUTED  # about dose 3

    cuong = await registry.find_person("048095006789", date(1995, 11, 30))
    case = await registry.get_correction(refs["cuong"])
    assert case.person_id == cuong.id  # linked to the record the import created
    assert case.status == CaseStatus.APPROVED and case.resolution_note == "dose 1 found in an import"
    assert [e.action for e in case.history][-2:] == ["linked", "approved"]

    code, again, _err = run_cli(tmp_path / "cases.csv", capsys)
    assert code == 0 and summary_count(again, "correction cases closed") == 0
    assert (await registry.get_correction(refs["booster"])).status == CaseStatus.ROUTED


async def test_phone_forms_become_one_contact_and_a_retired_phone_stays_retired(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    giang = await registry.create_person(
        NewPerson("031188007777", date(1988, 9, 9), "Hoàng Thị Giang", Sex.FEMALE, "+84909000111"), "test"
    )
    await registry.update_contact(
        giang.id, ContactChange("+84909000222", "+84909000111", evidence="hotline", actor="agent:lan")
    )
    # phones.csv: a byte-order mark, CRLF, columns in another order, every usual phone form
    code, out, _err = run_cli(payload("phones.csv", tmp_path), capsys)
    assert code == 0, out
    assert summary_count(out, "rejected") == 0, out
    assert not (tmp_path / "phones.rejected.csv").exists()

    an = await registry.find_person("001085012345", date(1985, 3, 14))
    assert an.current_phones == ("+84901234567",)
    assert [d.dose_number for d in await registry.list_doses(an.id)] == [1, 2, 3, 4]
    dung = await registry.find_person("001182003333", date(1982, 5, 2))
    duc = await registry.find_person("001210004444", date(2010, 12, 24))
    assert dung.current_phones == duc.current_phones == ("+84938111222",)
    assert duc.sex == Sex.MALE  # "m"
    assert [p.full_name for p in await registry.find_persons_by_phone("+84938111222")] == [
        "Phạm Thị Dung",
        "Phạm Minh Đức",
    ]

    giang = await registry.get_person(giang.id)
    assert giang.current_phones == ("+84909000222",)  # the old number is not brought back
    assert giang.registered_phone == "+84909000222"
    assert "line 8: phone was removed from this person's contacts earlier" in out
    assert len(await registry.list_doses(giang.id)) == 1


async def test_semicolon_separated_file_from_a_spreadsheet(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(
        ";".join(MIXED_HEADER)
        + "\n001085012345;Nguyễn Văn An;1985-03-14;M;0901234567;1;Vero Cell;L1;2021-08-02;HN001;"
        + "Trạm Y tế; Phường Dịch Vọng\n",
        encoding="utf-8",
    )
    code, out, _err = run_cli(path, capsys)
    assert code == 0
    assert summary_count(out, "doses added") == 0 and summary_count(out, "rejected") == 1
    rows = read_rejected(tmp_path / "excel.rejected.csv", delimiter=";")  # as the spreadsheet wrote it
    assert rows[0]["reason"] == "wrong number of columns: expected 11, got 12"
    path.write_text(
        ";".join(MIXED_HEADER)
        + '\n001085012345;Nguyễn Văn An;1985-03-14;M;0901234567;1;Vero Cell;L1;2021-08-02;HN001;"Trạm; Dịch Vọng"\n',
        encoding="utf-8",
    )
    code, out, _err = run_cli(path, capsys)
    assert code == 0 and summary_count(out, "doses added") == 1
    assert not (tmp_path / "excel.rejected.csv").exists()  # the stale one of the first run is gone
    assert (await registry.get_site("HN001")).name == "Trạm; Dịch Vọng"


def test_progress_is_shown_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        progress = Progress(every=10, stream=stream)
        for rows in range(1, 35):
            progress.update(rows)
        progress.done()
    assert hidden.getvalue() == ""
    lines = shown.getvalue().replace("\r", "\n").split()
    assert "30" in lines and "rows/s" in lines
    assert shown.getvalue().count("\r") == 3 and shown.getvalue().endswith("\n")


@pytest.mark.parametrize(
    ("column", "text", "expected"),
    [
        ("national_id", " 001085012345 ", "001085012345"),
        ("national_id", "001.085.012.345", "001085012345"),
        ("national_id", "٠٠١٠٨٥٠١٢٣٤٥", None),  # digits of another script
        ("dose_number", "²", None),
        ("dose_number", "10", None),
        ("phone", "09٠1234567", None),
        ("phone", "0912 345 678", "+84912345678"),
        ("phone", "", None),  # no phone is allowed: the person simply gets no contact
        ("sex", " f ", "F"),
        ("full_name", "  Nguyễn   Văn\tAn ", "Nguyễn Văn An"),
        ("full_name", "Nguye\u0302\u0303n Văn An", "Nguyễn Văn An"),  # decomposed → NFC
        ("administered_on", "20210802", None),  # only YYYY-MM-DD
        ("administered_on", "2021-02-30", None),
        ("lot", "L" * 41, None),
        ("vaccine", "  vero   CELL ", "BBIBP-CorV"),
    ],
)
def test_row_validation_edge_cases(column: str, text: str, expected: str | None) -> None:
    from registry_client.embedded.import_rows import COLUMNS, RawRecord, RowValidator

    fields = "001085012345,Nguyễn Văn An,1985-03-14,M,0901234567,1,Pfizer,L1,2021-08-02,HN001,".split(",")
    fields[COLUMNS.index(column)] = text
    validator = RowValidator({c: i for i, c in enumerate(COLUMNS)}, len(COLUMNS), date(2025, 1, 1))
    result = validator.validate(RawRecord(2, fields, False))
    if expected is None and not (column == "phone" and text == ""):
        assert isinstance(result, list) and len(result) == 1, result
        return
    assert not isinstance(result, list), result
    value = {"vaccine": result.product}.get(column, getattr(result, column, None))
    assert value == expected


async def test_unreachable_database_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    monkeypatch.setenv("REGISTRY_BACKEND", "embedded")
    code, out, err = run_cli(payload("cases.csv", tmp_path), capsys)
    assert code not in (0, None)
    assert "Cannot prepare the database" in err and out == ""


FAILING_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER import_test_fail BEFORE INSERT ON doses WHEN NEW.lot = 'FK5127'"
        " BEGIN SELECT RAISE(ABORT, 'simulated outage'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION import_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.lot = 'FK5127' THEN RAISE EXCEPTION 'simulated outage'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER import_test_fail BEFORE INSERT ON doses FOR EACH ROW EXECUTE FUNCTION import_test_fail()",
    ],
}
DROP_TRIGGER = {
    "sqlite": ["DROP TRIGGER IF EXISTS import_test_fail"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS import_test_fail ON doses",
        "DROP FUNCTION IF EXISTS import_test_fail()",
    ],
}


async def test_a_database_failure_stops_the_import_and_a_rerun_finishes_it(
    db_url: str, registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    from sqlalchemy import text

    from registry_client.embedded.importer import ImportStopped

    source = payload("mixed.csv", tmp_path)
    engine = make_sync_engine(db_url)
    dialect = engine.dialect.name
    try:
        with engine.begin() as conn:
            for statement in FAILING_TRIGGER[dialect]:
                conn.execute(text(statement))
        try:
            # lines 2-4, 5-7 are written; the batch of line 6 (lot FK5127, Hoa's first dose) fails
            with pytest.raises(ImportStopped) as stopped:
                import_file(engine, source, batch_rows=3, writers=1)
        finally:
            with engine.begin() as conn:
                for statement in DROP_TRIGGER[dialect]:
                    conn.execute(text(statement))
        assert stopped.value.line == 5 and "simulated outage" in str(stopped.value)
        an = await registry.find_person("001085012345", date(1985, 3, 14))
        assert [d.dose_number for d in await registry.list_doses(an.id)] == [1, 2]
        with pytest.raises(RecordNotFound):
            await registry.find_person("025123456", date(1972, 6, 1))

        summary = import_file(engine, source, batch_rows=3, writers=1)
    finally:
        engine.dispose()
    assert (summary.persons_created, summary.doses_added, summary.unchanged) == (1, 3, 3)
    await check_mixed_landed(registry)


async def test_rejected_rows_that_cannot_be_written_stop_the_import(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mixed.rejected.csv").mkdir()  # in the way of the rejected file
    code, _out, err = run_cli(payload("mixed.csv", tmp_path), capsys)
    assert code == 3
    assert "cannot write the rejected rows to" in err and "run the same command again" in err


async def test_json_summary_tells_a_script_how_many_rows_were_rejected_and_where(
    cli_env: str, registry: EmbeddedRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = payload("mixed.csv", tmp_path)
    code = main.main(["import-doses", str(source), "--json"])
    out, _err = capsys.readouterr()
    assert code == 0  # processed, even with rejected rows
    summary = json.loads(out)
    assert summary["rows_read"] == 20 and summary["doses_added"] == 5 and summary["unchanged"] == 1
    assert summary["rejected"] == len(MIXED_REJECTED)
    assert summary["rejected_file"] == str(tmp_path / "mixed.rejected.csv")
    assert sum(summary["rejected_by_reason"].values()) >= len(MIXED_REJECTED)

    code = main.main(["import-doses", str(source), "--json"])  # again: nothing new, nothing rejected anew
    again = json.loads(capsys.readouterr()[0])
    assert code == 0 and again["doses_added"] == 0 and again["unchanged"] == 6
