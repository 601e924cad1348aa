"""One rule, every reader: a table of dose histories through the real app. For each history the
status text (the engine's catalogue), the certificate payload (dn/sd), POST /api/verify,
POST /api/verify-code and the console's person page say the same thing, and none says more than
the record holds (issue 13: "incomplete (1/2)" on the phone, "3/3" at the checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest

from certificates import hcert
from certificates.dose_series import read_series
from certificates.service import NoDoses
from conversations import i18n
from conversations.flows.status import status_lines
from registry_client.models import DoseSource, NewDose, NewPerson, Sex, Site
from tests.console.conftest import Console

PFIZER, MODERNA, JANSSEN = "EU/1/20/1528", "EU/1/20/1507", "EU/1/20/1525"


@dataclass(frozen=True)
class History:
    name: str
    doses: tuple[tuple[int, str, str], ...]  # (recorded number, product, date)
    dn_sd: tuple[int, int] | None  # what the certificate encodes
    status: tuple[str, ...]  # lines the English status must contain
    console: str  # what the console's person page says ("" for no dose)
    missing: tuple[int, ...] = ()
    problems: tuple[str, ...] = ()


HISTORIES = (
    History("none", (), None, ("No dose on record",), ""),
    History(
        "dose 1",
        ((1, PFIZER, "2021-07-01"),),
        (1, 2),
        ("Dose 1: Pfizer, 01/07/2021", "Primary series not complete (1/2).", "Next dose from 22/07/2021."),
        "Primary series not complete (1/2)",
    ),
    History(
        "doses 1 and 2",
        ((1, PFIZER, "2021-07-01"), (2, PFIZER, "2021-07-29")),
        (2, 2),
        ("Dose 2: Pfizer, 29/07/2021", "Primary series complete."),
        "Primary series complete (2/2)",
    ),
    History(
        "1 and 3, dose 2 missing",
        ((1, PFIZER, "2021-07-01"), (3, PFIZER, "2022-03-01")),
        (2, 2),
        ("Dose 2: Pfizer, 01/03/2022, Site (filed as dose 3)", "Dose 2 is not on record"),
        "Dose 2 not on record",
        missing=(2,),
        problems=("gap",),
    ),
    History(
        "single-dose product",
        ((1, JANSSEN, "2021-08-01"),),
        (1, 1),
        ("Dose 1: Janssen, 01/08/2021", "Primary series complete."),
        "Primary series complete (1/1)",
    ),
    History(
        "1, 2 and a booster",
        ((1, PFIZER, "2021-07-01"), (2, PFIZER, "2021-07-29"), (3, MODERNA, "2022-01-10")),
        (3, 3),
        ("Dose 3 (booster): Moderna, 10/01/2022", "Primary series complete."),
        "1 booster(s)",
    ),
    History(
        "mixed primary series",
        ((1, PFIZER, "2021-07-01"), (2, MODERNA, "2021-08-01")),
        (2, 2),
        ("Dose 2: Moderna, 01/08/2021", "Primary series complete."),
        "mixed products",
    ),
    History(
        "booster after a single dose",
        ((1, JANSSEN, "2021-08-01"), (2, PFIZER, "2022-01-10")),
        (2, 1),
        ("Dose 2 (booster): Pfizer, 10/01/2022", "Primary series complete."),
        "The certificate states dose 2/1",
    ),
    History(
        "dates out of order",
        ((1, PFIZER, "2021-09-01"), (2, PFIZER, "2021-07-01")),
        (2, 2),
        (
            "Dose 1: Pfizer, 01/07/2021, Site (filed as dose 2)",
            "Dose 2: Pfizer, 01/09/2021, Site (filed as dose 1)",
        ),
        "Primary series complete (2/2)",
        problems=("out_of_order",),
    ),
)


def _english_status(doses: list[Any]) -> str:
    ctx = SimpleNamespace(t=lambda key, **kw: i18n.t("en", key, hotline="1900", **kw))
    lines = status_lines(ctx, doses)  # type: ignore[arg-type]
    return "\n".join(lines) if doses else i18n.t("en", "status.no_doses", hotline="1900")


@pytest.mark.parametrize("history", HISTORIES, ids=[h.name for h in HISTORIES])
def test_every_reader_agrees_with_the_rule(console: Console, history: History) -> None:
    registry, certificates = console.state.registry, console.state.certificates
    index = HISTORIES.index(history)
    person = console.call(
        registry.create_person,
        NewPerson(f"21000{index:04d}", date(1980, 1, 2), "Phạm Thị Test", Sex.FEMALE, "+84912000001"),
        "test",
    )
    console.call(registry.upsert_site, Site("SITE1", "Site"))
    for number, product, when in history.doses:
        new = NewDose(number, product, date.fromisoformat(when), "SITE1", "L1", source=DoseSource.IMPORT)
        console.call(registry.record_dose, person.id, new)
    doses = console.call(registry.list_doses, person.id)

    reading = read_series(doses)
    assert reading.missing == history.missing
    assert tuple(p.kind for p in reading.problems) == history.problems

    status = _english_status(doses)
    for expected in history.status:
        assert expected in status, status

    console.as_user("lan")
    console.client.cookies.set("vx_lang", "en")
    page = console.client.get(f"/agent/persons/{console.handle(person.id)}").text
    if history.console:
        assert history.console in page, page[-3000:]
    else:
        assert "Primary series" not in page and "certificate states" not in page

    if history.dn_sd is None:
        with pytest.raises(NoDoses):
            console.call(certificates.issue, person, doses)
        return
    issued = console.call(certificates.issue, person, doses)
    entry = cbor2.loads(hcert.decode_hc1(issued.hc1).cose.payload)[-260][1]["v"][0]
    assert (entry["dn"], entry["sd"]) == history.dn_sd
    assert entry["dt"] == max(when for _, _, when in history.doses)  # the last dose given

    verified = console.client.post("/api/verify", json={"hc1": issued.hc1}).json()
    assert verified["valid"] is True
    assert [(v["dose_number"], v["total_doses"]) for v in verified["vaccinations"]] == [history.dn_sd]

    code = console.call(certificates.code_for, person, doses)
    answer = console.client.post("/api/verify-code", json={"code": code, "birth_year": 1980}).json()
    assert answer["valid"] is True and answer["doses"] == len(history.doses) == history.dn_sd[0]
    assert answer["latest_dose_date"] == entry["dt"]
