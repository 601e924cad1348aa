"""What the FHIR backend writes is standard R4 a ministry system can read: the resources on the server."""

from __future__ import annotations

import base64
import hashlib
from datetime import date
from pathlib import Path
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
from tests.fhir.r4_validation import assert_valid_r4, r4_problems
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


# -- issue 13: what the backend writes is valid R4 and readable by any client ---------------------------


async def test_a_photo_is_a_binary_any_registry_client_can_fetch(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry, tmp_path: Path
) -> None:
    photo = tmp_path / "uploads" / "PA" / "card.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"card bytes" * 100)
    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    case = await fhir_registry.submit_correction(missing_dose_report(person.id, site="HN001"))
    attachment = NewAttachment("card.jpg", "image/jpeg", photo.stat().st_size, str(photo))
    updated = await fhir_registry.add_attachment(case.ref, attachment, "citizen")
    await fhir_registry.add_attachment(case.ref, attachment, "citizen")  # a retried upload: stored once

    (doc,) = [e["resource"] for e in read(fhir_server, "DocumentReference")["entry"]]
    content = doc["content"][0]["attachment"]
    assert content["url"] == f"{fhir_server.base_url}/Binary/{content['url'].rsplit('/', 1)[1]}"
    assert (content["contentType"], content["size"]) == ("image/jpeg", photo.stat().st_size)
    assert content["hash"] == base64.b64encode(hashlib.sha1(photo.read_bytes()).digest()).decode()
    with fhir_server.client() as client:  # as any authorised client of the registry would
        binary = client.get(content["url"]).json()
    assert binary["contentType"] == "image/jpeg"
    assert base64.b64decode(binary["data"]) == photo.read_bytes()
    assert len(read(fhir_server, "Binary")["entry"]) == 1
    # the console of this service still serves its own copy
    assert updated.attachments[0].storage_path == str(photo)
    assert_valid_r4(fhir_server.written())


def test_the_old_relative_attachment_path_is_what_the_validation_refuses() -> None:
    """Issue 13 as reported: DocumentReference.content.attachment.url = a local relative path."""
    old = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "image/jpeg", "url": "var/uploads/PA/card.jpg"}}],
    }
    assert any("not absolute" in p for p in r4_problems(old))
    assert (
        r4_problems(
            {**old, "content": [{"attachment": {"contentType": "image/jpeg", "url": "http://r/Binary/1"}}]}
        )
        == []
    )
    assert r4_problems({"resourceType": "Task", "status": "bogus", "intent": "order"})  # the validators bite


def test_vaccine_codes_follow_the_eu_value_set() -> None:
    """EU-authorised products under the Union Register system, the others under the value set's
    temporary system (issue 13: BBIBP-CorV and CoronaVac were filed under the EU register)."""
    from registry_client.vaccines import product

    def systems(code: str) -> dict[str, str]:
        return {c["system"]: c["code"] for c in codes.vaccine_code(product(code))["coding"]}  # type: ignore[union-attr, index]

    assert systems("EU/1/20/1528") == {
        codes.DCC_PRODUCT: "EU/1/20/1528",
        codes.CVX: "208",
        codes.SNOMED: "1119349007",
    }
    sinopharm = systems("BBIBP-CorV")
    assert sinopharm[codes.DCC_PRODUCT_OTHER] == "BBIBP-CorV" and codes.DCC_PRODUCT not in sinopharm
    assert sinopharm[codes.CVX] == "510"
    coronavac = systems("CoronaVac")
    assert coronavac[codes.DCC_PRODUCT_OTHER] == "CoronaVac" and codes.DCC_PRODUCT not in coronavac
    abdala = systems("Abdala")
    assert codes.DCC_PRODUCT not in abdala and abdala[codes.DCC_PRODUCT_OTHER] == "Abdala"
    # read back: either system, and a registry's CVX-only coding, give the product
    for code in ("EU/1/20/1528", "BBIBP-CorV", "CoronaVac", "Abdala"):
        coding = codes.vaccine_code(product(code))["coding"]
        assert codes.product_from_coding(coding, None) == code  # type: ignore[arg-type]
    assert codes.product_from_coding([{"system": codes.CVX, "code": "511"}], None) == "CoronaVac"


async def test_what_the_citizen_was_told_is_a_communication_about_the_task(
    fhir_server: FhirTestServer, fhir_registry: FhirRegistry
) -> None:
    from datetime import UTC, datetime

    from registry_client.models import CaseNotice

    person = await seed_person(fhir_registry)
    await fhir_registry.upsert_site(HN)
    case = await fhir_registry.submit_correction(missing_dose_report(person.id, site="HN001"))
    notice = CaseNotice(
        ref=case.ref,
        person_id=person.id,
        channel="sms",
        address="+84901234567",
        text=f"VaxChannel: report {case.ref} not approved. Reason: no such dose.",
        topics=("report-rejected",),
        at=datetime(2021, 10, 1, 9, 30, tzinfo=UTC),
    )
    await fhir_registry.record_notice(notice)
    await fhir_registry.record_notice(notice)  # told once, kept once
    (entry,) = read(fhir_server, "Communication")["entry"]
    communication = entry["resource"]
    task_id = read(fhir_server, "Task", identifier=f"{codes.CASE_REF}|{case.ref}")["entry"][0]["resource"][
        "id"
    ]
    assert communication["partOf"][0]["reference"] == f"Task/{task_id}"
    assert communication["sent"] == "2021-10-01T09:30:00.000Z"
    assert communication["category"][0]["coding"][0]["code"] == "report-rejected"
    assert communication["medium"][0]["text"] == "SMS"
    assert_valid_r4(fhir_server.written())
