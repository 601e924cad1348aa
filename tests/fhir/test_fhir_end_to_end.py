"""The whole service on the FHIR backend: create_app with REGISTRY_BACKEND=fhir against the Medplum
FHIR server, seeded through FhirRegistry with the demo identities; a phone logs in over USSD (as
Africa's Talking calls /ussd), sees its doses, reports a missing dose, a site user resolves it over
the console API, and the citizen checks the report. Every registry read and write goes over FHIR."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import create_app
from registry_client.embedded.demo import load_demo
from registry_client.fhir import codes
from settings import Settings
from sms_gateway.simulator import UssdPhone
from tests.fhir.r4_validation import assert_valid_r4
from tests.fhir.server import FhirTestServer

AN_PHONE = "+84901234567"
PASSWORD = "correct horse 42"


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    """Argon2id with small parameters (same code path, less CPU), as the console tests do."""
    from argon2 import PasswordHasher

    from web.console.passwords import use_hasher

    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


@pytest.fixture
def service(fhir_server: FhirTestServer, sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    settings = Settings(
        database_url=sqlite_url,
        data_dir=tmp_path / "data",
        registry_backend="fhir",
        registry_url=fhir_server.base_url,
        registry_auth=fhir_server.auth,
        run_workers=False,
        secret_key="fhir-e2e-secret-key",
        public_base_url="http://testserver",
        twilio_account_sid=None,
        twilio_auth_token=None,
        twilio_from=None,
        telegram_bot_token=None,
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as client:
        backend = app.state.registry.inner
        assert type(backend).__name__ == "FhirRegistry"
        client.portal.call(lambda: load_demo(backend, 0))  # seeded over FHIR
        client.portal.call(lambda: app.state.console.users.create("hoa", "site", "HN002", PASSWORD, "tests"))
        yield app, client


def last_sms(app: Any, client: TestClient, phone: str) -> Any:
    rows = client.portal.call(lambda: app.state.outbox.messages_to("sms", phone))
    assert rows, f"no SMS to {phone}"
    return rows[-1]


def fhir_get(server: FhirTestServer, path: str, **params: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def test_ussd_login_status_report_resolve_on_fhir(
    fhir_server: FhirTestServer, service: tuple[Any, TestClient]
) -> None:
    app, client = service
    phone = UssdPhone(client, "http://testserver", AN_PHONE, app.state.settings.resolved_gateway_token)

    # login: national ID → date of birth → the code sent to the phone the FHIR Patient holds
    assert phone.dial().startswith("CON Tiem chung COVID-19")
    assert phone.send("1").startswith("CON Nhap so CCCD")
    phone.send("001085012345")
    assert "Ma 6 so da gui" in phone.send("14031985")
    otp = last_sms(app, client, AN_PHONE)
    assert otp.kind == "otp"
    screen = phone.send(otp.params["code"])
    # status: the three Immunizations of the Patient
    assert "Nguyen Van An" in screen and "Mui 1: AstraZeneca, 02/08/2021" in screen, screen
    assert len(screen) <= 182

    # report a missing dose in a new session (the phone is now bound)
    phone.dial()
    for answer in ("3", "1", "2", "9", "9", "9", "9", "1"):
        screen = phone.send(answer)
    assert screen.startswith("CON Gui phan anh: Thieu mui tiem, Mui 2"), screen
    done = phone.send("1")
    found = re.search(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}", done)
    assert done.startswith("END Da nhan phan anh") and found is not None, done
    ref = found[0]

    # the report is a Task on the FHIR server, routed to the site of the latest dose (HN002)
    (entry,) = fhir_get(fhir_server, "Task", identifier=f"{codes.CASE_REF}|{ref}")["entry"]
    task = entry["resource"]
    assert task["status"] == "requested" and task["owner"]["identifier"]["value"] == "HN002"
    patient_id = task["for"]["reference"].split("/")[1]

    # the site resolves it over the console API: dose 2 corrected in the registry
    token = client.post("/api/agent/token", json={"username": "hoa", "password": PASSWORD})
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['token']}"}
    queue = client.get("/api/corrections?status=open", headers=auth).json()
    assert ref in [c["ref"] for c in queue["corrections"]]
    resolved = client.post(
        f"/api/corrections/{ref}/resolve",
        headers=auth,
        json={
            "decision": "approved",
            "note": "found in the paper log",
            "dose": {
                "dose_number": 2,
                "vaccine": "AstraZeneca",
                "lot": "AZ-FIXED-2",
                "administered_on": "2021-10-25",
                "site_code": "HN001",
            },
        },
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "approved"

    task = fhir_get(fhir_server, "Task", identifier=f"{codes.CASE_REF}|{ref}")["entry"][0]["resource"]
    assert task["status"] == "completed"
    assert task["statusReason"]["text"] == "found in the paper log"
    immunizations = fhir_get(fhir_server, "Immunization", patient=f"Patient/{patient_id}")["entry"]
    dose2 = next(
        e["resource"]
        for e in immunizations
        if e["resource"]["protocolApplied"][0]["doseNumberPositiveInt"] == 2
    )
    assert dose2["lotNumber"] == "AZ-FIXED-2"
    assert task["focus"]["reference"] == f"Immunization/{dose2['id']}"

    # the citizen is told, and sees the outcome when checking the report over USSD
    told = last_sms(app, client, AN_PHONE)
    assert told.kind == "notification" and told.params["ref"] == ref
    link = client.get(told.params["link"].removeprefix("http://testserver"))  # the reissued certificate
    assert link.status_code == 200 and "Nguyễn Văn An" in link.text
    # … and the registry keeps what the citizen was told: a Communication about the Task
    (entry,) = fhir_get(fhir_server, "Communication", **{"part-of": f"Task/{task['id']}"})["entry"]
    assert ref in entry["resource"]["payload"][0]["contentString"]
    assert told.params["link"] not in entry["resource"]["payload"][0]["contentString"]
    phone.dial()
    assert "Nhap ma phan anh" in phone.send("4")
    screen = phone.send(ref)
    assert screen.startswith(f"CON {ref}: da duyet"), screen

    # every resource the service wrote (persons, sites, doses, the Task, audit, …) is valid R4
    assert_valid_r4(fhir_server.written())
