"""Imports check the dose sequence (certificates.dose_series), on SQLite and PostgreSQL: a dose
that leaves a gap, reuses a number or date, or is dated before its predecessor is rejected with
the reason and the way to override; the rejected row imported again with an `override` column
is recorded, audited and reported. Rows in sequence (in any order within the file) pass."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import select

import main
from db.base import make_async_engine, make_sync_engine
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.embedded.tables import AuditRow

HEADER = "national_id,full_name,date_of_birth,sex,phone,dose_number,vaccine,lot,administered_on,site_code,site_name"
CUONG = "048095006789,Lê Văn Cường,1995-11-30,M,0987654321"
AN = "001085012345,Nguyễn Văn An,1985-03-14,M,0901234567"


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REGISTRY_BACKEND", "embedded")
    return db_url


def _doses(url: str, national_id: str, born: str) -> list[int]:
    import asyncio
    from datetime import date

    async def read() -> list[int]:
        engine = make_async_engine(url)
        try:
            registry = EmbeddedRegistry(engine)
            person = await registry.find_person(national_id, date.fromisoformat(born))
            return [d.dose_number for d in await registry.list_doses(person.id)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _overrides(url: str) -> list[AuditRow]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(AuditRow).where(AuditRow.action == "dose.sequence_override")))
    finally:
        engine.dispose()


def test_a_gap_is_rejected_then_imported_with_an_override(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "doses.csv"
    source.write_text(
        "\n".join(
            [
                HEADER,
                f"{CUONG},1,Pfizer,FK1,2021-08-02,HN001,Trạm Y tế Hoàn Kiếm",
                f"{CUONG},3,Pfizer,FK2,2022-03-01,HN001,",  # dose 2 missing
                f"{AN},2,Pfizer,FK3,2021-08-30,HN001,",  # given before its dose 1 (below), in file order
                f"{AN},1,Pfizer,FK4,2021-08-01,HN001,",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert main.main(["import-doses", str(source)]) == 0
    out = capsys.readouterr().out
    assert "dose sequence" in out
    assert _doses(cli_env, "048095006789", "1995-11-30") == [1]
    assert _doses(cli_env, "001085012345", "1985-03-14") == [1, 2]  # in sequence, whatever the row order

    rejected_file = tmp_path / "doses.rejected.csv"
    rows = list(csv.DictReader(rejected_file.open(encoding="utf-8")))
    assert [(r["line"], r["dose_number"]) for r in rows] == [("3", "3")], rows
    reason = rows[0]["reason"]
    assert reason.startswith("dose sequence: dose 3 leaves a gap: dose 2 not on record")
    assert "'override' column" in reason
    assert _overrides(cli_env) == []

    # the operator fills the override column of the rejected row and imports it again
    again = tmp_path / "again.csv"
    with again.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*HEADER.split(","), "override"])
        writer.writeheader()
        row = {k: v for k, v in rows[0].items() if k in HEADER.split(",")}
        writer.writerow({**row, "override": "x"})  # too short to count as a reason
    assert main.main(["import-doses", str(again)]) == 0
    capsys.readouterr()
    assert _doses(cli_env, "048095006789", "1995-11-30") == [1]
    with again.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*HEADER.split(","), "override"])
        writer.writeheader()
        writer.writerow({**row, "override": "dose 2 given abroad, paper card seen by the site"})
    assert main.main(["import-doses", str(again)]) == 0
    out = capsys.readouterr().out
    assert "imported with the override reason" in out
    assert _doses(cli_env, "048095006789", "1995-11-30") == [1, 3]
    [audit] = _overrides(cli_env)
    assert "dose 3 leaves a gap" in audit.detail and "paper card seen" in audit.detail
    assert audit.person_id is not None


def test_a_second_dose_dated_before_the_first_is_rejected(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "doses.csv"
    source.write_text(
        f"{HEADER}\n{CUONG},1,Pfizer,FK1,2021-08-02,HN001,Trạm Y tế\n{CUONG},2,Pfizer,FK2,2021-07-01,HN001,\n",
        encoding="utf-8",
    )
    assert main.main(["import-doses", str(source)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader((tmp_path / "doses.rejected.csv").open(encoding="utf-8")))
    assert [r["line"] for r in rows] == ["3"]
    assert "dose 2 is dated out of order with dose 1" in rows[0]["reason"]
