"""What the FHIR backend writes is standard R4 a ministry system can read: the resources on the server."""

from __future__ import annotations

from datetime import date
from typing import Any

from registry_client.fhir import codes
from registry_client.fhir.registry import FhirRegistry
from registry_client.models import (
    AuditEntry,
    CaseStatus,
    ContactChange,
    Decision,
    DoseSource,
    NewAttachment,
    NewDose,
    NewPerson,
    Resolution,
    Sex,
)
from settings import Settings
from tests.fhir.server import FhirTestServer
from tests.registry_client.contract import HN, missing_dose_report, seed_person


def read(server: FhirTestServer, path: str, **params: Any) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(path, params=params)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


async def test_patient_shape(fhir_server: FhirTestServer, fhir_registry: FhirRegistry) -> None:
    person = await seed_person(fhir_registry, name="Nguyễn Văn Ánh")
    patient = read(fhir_server, f"Patient/{person.id}")
    assert patient["identifier"] == [{"use": "official", "system": "urn:vn:cccd", "value": "001085001234"}]
    assert patient["birthDate"] == "1985-03-14"
    assert patient["gender"] == "male"
    assert patient["name"][0] == {
        "use": "official",
        "text": "Nguyễn Văn Ánh",
        "family": "Nguyễn",
        "given": ["Văn", "Ánh"],
    }
    (phone,) = patient["telecom"]
    assert (phone["system"], phone["use"], phone["value"]) == ("phone", "mobile", "+84901234567")
    assert "start" in phone["period"] and "end" not in phone["period"]

    await fhir_registry.update_contact(
        person.id, ContactChange("+84987654321", "+84901234567", evidence="otp", actor="agent:lan")
    )
    patient = read(fhir_server, f"Patient/{person.id}")
    old, new = patient["telecom"]
    assert old["value"] == "+84901234567" and "end" in old["period"]
    assert new["value"] == "+84987654321" and "end" not in new["period"]
    verification = {e["url"]: e for e in new["extension"][0]["extension"]}
    assert verification["verified"]["valueBoolean"] is True
    assert verification["evidence"]["valueString"] == "otp"
    history = read(fhir_server, f"Patient/{person.id}/_history")
    assert len(history["entry"]) == 2  # a versioned update, not a new record


async def test_cmnd_and_configured_systems(fhir_server: FhirTestServer) -> None:
    settings = Settings(
        registry_backend="fhir",
        registry_url=fhir_server.base_url,
        registry_auth=fhir_server.auth,
        fhir_identifier_system_cccd="https://moh.gov.vn/sid/cccd",
        fhir_identifier_system_cmnd="https://moh.gov.vn/sid/cmnd",
    )
    registry = FhirRegistry.from_settings(settings)
    try:
        old = await registry.create_person(
            NewPerson("123456789", date(1960, 2, 29), "Trần Thị Cũ", Sex.FEMALE, None), actor="test"
        )
        new = await registry.create_person(
            NewPerson("001060001234", date(1960, 2, 29), "Trần Thị Mới", Sex.FEMALE, None), actor="test"
        )
        assert (
            read(fhir_server, f"Patient/{old.id}")["identifier"][0]["system"] == "https://moh.gov.vn/sid/cmnd"
        )
        assert (
            read(fhir_server, f"Patient/{new.id}")["identifier"][0]["system"] == "https://moh.gov.vn/sid/cccd"
        )
        assert (await registry.find_person("123456789", date(1960, 2, 29))).id == old.id
    finally:
        await registry.close()


async def test_immunization_shape(fhir_server: FhirTestServer, fhir_registry: FhirRegistry) -> None:
    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    dose = await fhir_registry.record_dose(
        person.id, NewDose(1, "Pfizer", date(2021, 8, 1), "HN001", "FK5127", recorded_by="site:HN001/minh")
    )
    imm = read(fhir_server, f"Immunization/{dose.id}")
    assert imm["status"] == "completed"
    assert imm["patient"] == {"reference": f"Patient/{person.id}"}
    coding = {c["system"]: c["code"] for c in imm["vaccineCode"]["coding"]}
    assert coding == {codes.DCC_PRODUCT: "EU/1/20/1528", codes.CVX: "208", codes.SNOMED: "1119349007"}
    assert imm["occurrenceDateTime"] == "2021-08-01"
    assert imm["lotNumber"] == "FK5127"
    assert imm["protocolApplied"][0]["doseNumberPositiveInt"] == 1
    assert imm["protocolApplied"][0]["seriesDosesPositiveInt"] == 2
    site = read(fhir_server, "Location", identifier=f"{codes.SITE_CODE}|HN001")["entry"][0]["resource"]
    assert imm["location"]["reference"] == f"Location/{site['id']}"
    assert site["name"] == HN.name and site["address"]["state"] == "Hà Nội"

    fixed = await fhir_registry.record_dose(
        person.id, NewDose(1, "Moderna", date(2021, 8, 2), "HN001", "M1", source=DoseSource.CORRECTION)
    )
    assert fixed.id == dose.id  # the same Immunization, a new version
    assert len(read(fhir_server, f"Immunization/{dose.id}/_history")["entry"]) == 2
    assert fixed.source == DoseSource.CORRECTION


async def test_task_lifecycle_and_documents(fhir_server: FhirTestServer, fhir_registry: FhirRegistry) -> None:
    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    await fhir_registry.record_dose(person.id, NewDose(1, "AstraZeneca", date(2021, 8, 1), "HN001", "AZ1"))
    case = await fhir_registry.submit_correction(missing_dose_report(person.id, site="HN001"))

    def task() -> dict[str, Any]:
        bundle = read(fhir_server, "Task", identifier=f"{codes.CASE_REF}|{case.ref}")
        assert bundle["total"] == 1
        return bundle["entry"][0]["resource"]  # type: ignore[no-any-return]

    created = task()
    assert (created["status"], created["intent"]) == ("requested", "order")
    assert created["businessStatus"]["coding"][0]["code"] == "routed"
    assert created["for"]["reference"] == f"Patient/{person.id}"
    assert created["owner"]["reference"].startswith("Location/")
    assert created["owner"]["identifier"]["value"] == "HN001"
    inputs = {i["type"]["coding"][0]["code"]: i for i in created["input"]}
    assert inputs["claimed-vaccine"]["valueString"] == "AstraZeneca"
    assert inputs["claimed-administered-on"]["valueDate"] == "2021-09-01"
    assert inputs["doses-concerned"]["valueCode"] == "2"
    assert "focus" not in created  # dose 2 does not exist yet
    assert [n["text"] for n in created["note"]] == ["received", "routed: HN001"]

    await fhir_registry.mark_in_review(case.ref, "site:HN001/minh")
    assert task()["status"] == "in-progress"
    await fhir_registry.add_attachment(
        case.ref, NewAttachment("card.jpg", "image/jpeg", 1234, "uploads/card.jpg"), "citizen"
    )
    doc_ref = next(i for i in task()["input"] if "valueReference" in i)["valueReference"]["reference"]
    doc = read(fhir_server, doc_ref)
    assert doc["content"][0]["attachment"]["title"] == "card.jpg"
    assert doc["subject"] == {"reference": f"Patient/{person.id}"}

    resolved = await fhir_registry.resolve_correction(
        case.ref,
        Resolution(
            Decision.APPROVED,
            "found in the paper log",
            "site:HN001/minh",
            NewDose(2, "AstraZeneca", date(2021, 9, 1), "HN001", "AZ9", source=DoseSource.CORRECTION),
        ),
    )
    assert resolved.status == CaseStatus.APPROVED
    done = task()
    assert done["status"] == "completed"
    assert done["statusReason"]["text"] == "found in the paper log"
    dose2 = next(d for d in await fhir_registry.list_doses(person.id) if d.dose_number == 2)
    assert done["focus"] == {"reference": f"Immunization/{dose2.id}"}
    assert [e.action for e in resolved.history] == [
        "received",
        "routed",
        "in_review",
        "attachment",
        "dose_recorded",
        "approved",
    ]


async def test_unknown_person_report_then_join(fhir_registry: FhirRegistry) -> None:
    report = missing_dose_report(
        None,
        claimed_national_id="001199000555",
        claimed_date_of_birth=date(1999, 5, 5),
        claimed_name="Phạm Minh Tuấn",
    )
    first = await fhir_registry.submit_correction(report)
    second = await fhir_registry.submit_correction(report)
    assert second.ref == first.ref and second.joined
    assert first.site_code is None and first.status == CaseStatus.ROUTED


async def test_queued_ref_that_joined_is_an_alias(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry
) -> None:
    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    first = await fhir_registry.submit_correction(missing_dose_report(person.id, site="HN001"))
    joined = await fhir_registry.submit_correction(
        missing_dose_report(person.id, site="HN001", ref="PA-2345-6A")
    )
    assert joined.ref == first.ref and joined.joined
    by_alias = await fhir_registry.get_correction("PA-2345-6A")
    assert by_alias.ref == first.ref
    again = await fhir_registry.submit_correction(
        missing_dose_report(person.id, site="HN001", ref="PA-2345-6A")
    )
    assert again.ref == first.ref
    assert [e.action for e in again.history].count("joined") == 1  # a replay joins once
    tasks = read(fhir_server, "Task")
    assert tasks["total"] == 1


async def test_audit_event(fhir_server: FhirTestServer, fhir_registry: FhirRegistry) -> None:
    person = await seed_person(fhir_registry)
    await fhir_registry.audit(AuditEntry("sms:+84901234567", "doses.view", person.id, "status"))
    (entry,) = read(fhir_server, "AuditEvent")["entry"]
    event = entry["resource"]
    assert event["subtype"][0] == {"system": codes.AUDIT_ACTION, "code": "doses.view"}
    assert event["action"] == "R"
    assert event["agent"][0]["altId"] == "sms:+84901234567"
    assert event["entity"][0]["what"] == {"reference": f"Patient/{person.id}"}
