"""Against a registry seeded the way an existing national registry holds its data
(tests/fhir_server/seeds/registry.json): its own person identifier systems, sites as
Organization + Location under urn:vn:site (one only an Organization, one only a Location),
Immunizations naming their site by reference only, coded with CVX; SMART Backend Services auth.

Issue 14 as it was reported: a site user for DN001 was warned "the registry has no sites yet", a
report naming DN001 went to the hotline queue, the site's queue stayed empty, so nothing after it
happened. Here the whole loop runs: USSD report naming DN001 → the site's queue → approval →
Immunization written → certificate reissued → citizen told → Communication on the registry."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import create_app
from registry_client.fhir import codes
from registry_client.fhir.registry import FhirRegistry
from registry_client.models import CaseStatus, CorrectionQuery, Decision, Resolution
from settings import Settings
from sms_gateway.simulator import UssdPhone
from tests.fhir.r4_validation import assert_valid_r4
from tests.fhir.server import FhirTestServer
from tests.fhir.smart_keys import jwks, write_key
from tests.registry_client.contract import missing_dose_report

SITE_SYSTEM = "urn:vn:site"
CCCD = "https://moh.gov.vn/fhir/sid/cccd"
CMND = "https://moh.gov.vn/fhir/sid/cmnd"
CLIENT = "vaxchannel"
BINH_PHONE = "+84905111222"
PASSWORD = "correct horse 42"


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    from argon2 import PasswordHasher

    from web.console.passwords import use_hasher

    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


@pytest.fixture
def registry_server(fhir_server: FhirTestServer, tmp_path: Path) -> FhirTestServer:
    fhir_server.seed("registry")
    (tmp_path / "data").mkdir(mode=0o700)
    key = write_key(tmp_path / "data" / "registry_private_key.pem")  # where the service looks by default
    fhir_server.register_smart_client(CLIENT, jwks(key), scope="system/*.*")
    fhir_server.written(clear=True)  # from here on: only what the service writes
    return fhir_server


def foreign_settings(server: FhirTestServer, tmp_path: Path, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/service.db",
        "data_dir": tmp_path / "data",
        "registry_backend": "fhir",
        "registry_url": server.base_url,
        "registry_auth": f"smart:{CLIENT}",
        "fhir_identifier_system_site": SITE_SYSTEM,
        "fhir_identifier_system_cccd": CCCD,
        "fhir_identifier_system_cmnd": CMND,
        "run_workers": False,
        "secret_key": "foreign-registry-secret-key",
        "public_base_url": "http://testserver",
        "twilio_account_sid": None,
        "twilio_auth_token": None,
        "twilio_from": None,
        "telegram_bot_token": None,
        **more,
    }
    return Settings(**values)


@pytest.fixture
async def foreign(registry_server: FhirTestServer, tmp_path: Path) -> AsyncIterator[FhirRegistry]:
    registry = FhirRegistry.from_settings(foreign_settings(registry_server, tmp_path))
    yield registry
    await registry.close()


def fhir_get(server: FhirTestServer, path: str, **params: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def test_sites_and_doses_as_the_registry_holds_them(foreign: FhirRegistry) -> None:
    sites = {s.code: s for s in await foreign.list_sites()}
    assert sorted(sites) == ["DN001", "DN002", "QN003"]  # the Ministry (another system) is no site
    assert sites["DN001"].name == "Điểm tiêm Trung tâm Y tế Hải Châu" and sites["DN001"].province == "Đà Nẵng"
    assert sites["DN002"].name == "Bệnh viện Đà Nẵng"  # an Organization only

    binh = await foreign.find_person("048190001234", date(1990, 4, 12))
    (dose,) = await foreign.list_doses(binh.id)
    assert (dose.site_code, dose.product, dose.dose_number) == ("DN001", "EU/1/21/1529", 1)  # CVX 210
    khoa = await foreign.find_person("201456789", date(1975, 11, 2))  # CMND under the registry's system
    doses = await foreign.list_doses(khoa.id)
    assert [(d.site_code, d.site_name) for d in doses] == [
        ("DN002", "Bệnh viện Đà Nẵng"),  # named by performer.actor only
        ("QN003", "Trạm Y tế xã Điện Nam"),  # by location reference only
    ]


async def test_tasks_are_owned_as_the_registry_models_sites(
    registry_server: FhirTestServer, foreign: FhirRegistry
) -> None:
    khoa = await foreign.find_person("201456789", date(1975, 11, 2))
    owners = {}
    for site in ("DN001", "DN002", "QN003"):
        case = await foreign.submit_correction(missing_dose_report(khoa.id, site=site))
        assert case.site_code == site and not case.joined
        task = fhir_get(registry_server, "Task", identifier=f"{codes.CASE_REF}|{case.ref}")["entry"][0][
            "resource"
        ]
        owners[site] = task["owner"]
        queue = await foreign.list_corrections(CorrectionQuery(site_code=site))
        assert [c.ref for c in queue] == [case.ref]
        # closed, so that the next report (same person, same dose) is a new one
        await foreign.resolve_correction(case.ref, Resolution(Decision.REJECTED, "test", "site:test"))
    assert owners["DN001"] == {
        "reference": "Organization/org-dn001",
        "identifier": {"system": SITE_SYSTEM, "value": "DN001"},
        "display": "Điểm tiêm Trung tâm Y tế Hải Châu",
    }
    assert owners["DN002"]["reference"] == "Organization/org-dn002"
    assert owners["QN003"]["reference"] == "Location/loc-qn003"
    assert_valid_r4(registry_server.written())


async def test_a_task_the_registry_filed_by_reference_only_reaches_the_site_queue(
    registry_server: FhirTestServer, foreign: FhirRegistry
) -> None:
    """The registry's own staff file a Task owned by the Location, without identifier or display."""
    binh = await foreign.find_person("048190001234", date(1990, 4, 12))
    case = await foreign.submit_correction(missing_dose_report(binh.id, site="DN001"))
    with registry_server.client() as http:
        task = http.get("Task", params={"identifier": f"{codes.CASE_REF}|{case.ref}"}).json()["entry"][0][
            "resource"
        ]
        task["owner"] = {"reference": "Location/loc-dn001"}
        assert http.put(f"Task/{task['id']}", json=task).status_code == 200
    queue = await foreign.list_corrections(CorrectionQuery(site_code="DN001"))
    assert [c.ref for c in queue] == [case.ref] and queue[0].site_code == "DN001"


def test_create_user_for_a_registry_site_is_checked_not_warned(
    registry_server: FhirTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from web.console.users import create_user_cli

    settings = foreign_settings(registry_server, tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert create_user_cli(settings, "lan", "site", "dn001", True) == 0
    out = capsys.readouterr()
    assert "no sites yet" not in out.err and "warning" not in out.err, out.err
    assert "at site DN001" in out.out
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert create_user_cli(settings, "tam", "site", "DN999", True) == 1
    assert "unknown site DN999" in capsys.readouterr().err
    # the site system left at the default: no site is found, and the warning says where to look
    default = foreign_settings(
        registry_server, tmp_path, fhir_identifier_system_site=Settings().fhir_identifier_system_site
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert create_user_cli(default, "hai", "site", "DN001", True) == 0
    assert "see FHIR_IDENTIFIER_SYSTEM_SITE" in capsys.readouterr().err


def test_registry_check_lists_sites_and_systems(
    registry_server: FhirTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry_client.check import registry_check_cli

    assert registry_check_cli(foreign_settings(registry_server, tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"CCCD {CCCD} · CMND {CMND} · site {SITE_SYSTEM}" in out
    assert "site             : DN001 Điểm tiêm Trung tâm Y tế Hải Châu (Organization + Location)" in out
    assert "site             : DN002 Bệnh viện Đà Nẵng (Organization)" in out
    assert "site             : QN003 Trạm Y tế xã Điện Nam (Location)" in out
    assert "Organization: " in out and "Communication: " in out


def test_healthz_is_degraded_when_the_key_is_refused(
    registry_server: FhirTestServer, tmp_path: Path, sqlite_url: str
) -> None:
    other = write_key(tmp_path / "not-registered.pem")
    settings = foreign_settings(
        registry_server, tmp_path, registry_private_key_file=other, database_url=sqlite_url
    )
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        health = client.get("/healthz")
    assert health.status_code == 200
    assert "registry" in health.json().get("degraded", {}), health.json()


# -- the whole correction loop over USSD ---------------------------------------------------------------


@pytest.fixture
def service(
    registry_server: FhirTestServer, tmp_path: Path, sqlite_url: str
) -> Iterator[tuple[Any, TestClient]]:
    app = create_app(foreign_settings(registry_server, tmp_path, database_url=sqlite_url))
    with TestClient(app, base_url="http://testserver") as client:
        client.portal.call(lambda: app.state.console.users.create("lan", "site", "DN001", PASSWORD, "tests"))
        yield app, client


def last_sms(app: Any, client: TestClient, phone: str) -> Any:
    rows = client.portal.call(lambda: app.state.outbox.messages_to("sms", phone))
    assert rows, f"no SMS to {phone}"
    return rows[-1]


def test_correction_loop_on_a_foreign_registry(
    registry_server: FhirTestServer, service: tuple[Any, TestClient]
) -> None:
    app, client = service
    phone = UssdPhone(client, "http://testserver", BINH_PHONE, app.state.settings.resolved_gateway_token)

    # login with the CCCD the registry holds under its own system; the code goes to its phone
    phone.dial()
    phone.send("1")
    phone.send("048190001234")
    assert "Ma 6 so da gui" in phone.send("12041990")
    screen = phone.send(last_sms(app, client, BINH_PHONE).params["code"])
    assert "Tran Thi Binh" in screen and "Mui 1: AstraZeneca, 10/08/2021" in screen, screen

    # report the missing dose 2, naming the site DN001
    phone.dial()
    # report, missing dose, dose 2, the date, the site, vaccine unknown, no workplace, this phone
    for answer in ("3", "1", "2", "15092021", "DN001", "9", "9", "1"):
        screen = phone.send(answer)
    assert screen.startswith(
        "CON Gui phan anh: Thieu mui tiem, Mui 2, 15/09/2021, Diem tiem Trung tam Y te Hai Chau"
    ), screen
    done = phone.send("1")
    found = re.search(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}", done)
    assert done.startswith("END Da nhan phan anh") and found is not None, done
    ref = found[0]

    # the Task is the site's: owned by DN001's Organization, with the code and the name
    task = fhir_get(registry_server, "Task", identifier=f"{codes.CASE_REF}|{ref}")["entry"][0]["resource"]
    assert task["owner"]["reference"] == "Organization/org-dn001"
    assert task["owner"]["identifier"] == {"system": SITE_SYSTEM, "value": "DN001"}

    # the DN001 user sees it in the site's queue and approves it
    token = client.post("/api/agent/token", json={"username": "lan", "password": PASSWORD}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    queue = client.get("/api/corrections?status=open", headers=auth).json()["corrections"]
    assert ref in [c["ref"] for c in queue]
    resolved = client.post(
        f"/api/corrections/{ref}/resolve",
        headers=auth,
        json={
            "decision": "approved",
            "note": "in the site's paper log",
            "dose": {
                "dose_number": 2,
                "vaccine": "AstraZeneca",
                "lot": "ABV7711",
                "administered_on": "2021-09-15",
                "site_code": "DN001",
            },
        },
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["certificate_reissued"] is True

    # the Immunization names the site the way the registry does
    immunizations = fhir_get(registry_server, "Immunization", patient="Patient/pat-binh")["entry"]
    dose2 = next(
        e["resource"]
        for e in immunizations
        if e["resource"]["protocolApplied"][0]["doseNumberPositiveInt"] == 2
    )
    assert dose2["location"]["reference"] == "Location/loc-dn001"
    assert dose2["performer"][0]["actor"]["reference"] == "Organization/org-dn001"
    assert {c["system"] for c in dose2["vaccineCode"]["coding"]} >= {
        codes.DCC_PRODUCT,
        codes.CVX,
        codes.SNOMED,
    }

    # the citizen is told, with the reissued certificate; the registry sees what they were told
    told = last_sms(app, client, BINH_PHONE)
    assert told.kind == "notification" and told.params["ref"] == ref and told.params["link"]
    (entry,) = fhir_get(registry_server, "Communication", **{"part-of": f"Task/{task['id']}"})["entry"]
    communication = entry["resource"]
    assert communication["status"] == "completed" and communication["subject"] == {
        "reference": "Patient/pat-binh"
    }
    assert {c["coding"][0]["code"] for c in communication["category"]} == {
        "report-approved",
        "certificate-reissued",
    }
    text = communication["payload"][0]["contentString"]
    assert ref in text and "[certificate link]" in text and told.params["link"] not in text
    assert BINH_PHONE in communication["note"][0]["text"]

    # everything the service wrote is valid FHIR R4
    written = registry_server.written()
    assert {r["resourceType"] for r in written} >= {"Task", "Immunization", "Communication", "AuditEvent"}
    assert_valid_r4(written)


async def test_a_task_owned_by_something_that_is_no_site_is_hotline_and_costs_no_reloads(
    registry_server: FhirTestServer, foreign: FhirRegistry
) -> None:
    """The registry's staff hand a Task to their own department (an Organization without a site code)."""
    binh = await foreign.find_person("048190001234", date(1990, 4, 12))
    case = await foreign.submit_correction(missing_dose_report(binh.id, site="DN001"))
    with registry_server.client() as http:
        task = http.get("Task", params={"identifier": f"{codes.CASE_REF}|{case.ref}"}).json()["entry"][0][
            "resource"
        ]
        task["owner"] = {"reference": "Organization/org-moh"}
        assert http.put(f"Task/{task['id']}", json=task).status_code == 200
    assert (await foreign.get_correction(case.ref)).site_code is None
    registry_server.requests(clear=True)
    for _ in range(3):
        await foreign.get_correction(case.ref)
        await foreign.list_corrections(CorrectionQuery(statuses=frozenset({CaseStatus.ROUTED})))
    counted = registry_server.requests()
    assert counted.get("GET Organization", 0) == 0 and counted.get("GET Location", 0) == 0, counted
