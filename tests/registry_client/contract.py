"""The Registry contract: one test class every implementation must pass unchanged.

A subclass provides an async fixture `registry` yielding an empty registry of its backend, and a
fixture `audit_lines`: an async function (person_id) -> [(actor, action, detail)] reading what the
backend stored, through the backend's own store (the protocol writes audit lines, never reads them).
Everything is seeded through the protocol itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from registry_client.errors import Conflict, InvalidRequest, RecordNotFound
from registry_client.models import (
    AuditEntry,
    CaseKind,
    CaseStatus,
    ClaimedDose,
    ContactChange,
    CorrectionQuery,
    Decision,
    DosesConcerned,
    DoseSource,
    NewAttachment,
    NewCorrection,
    NewDose,
    NewPerson,
    Resolution,
    Sex,
    Site,
)
from registry_client.protocol import Registry

HN = Site("HN001", "Trạm Y tế Phường Dịch Vọng", "Hà Nội")
HCM = Site("HCM07", "Bệnh viện Quận 7", "TP Hồ Chí Minh")


async def seed_person(
    registry: Registry,
    national_id: str = "001085001234",
    phone: str | None = "+84901234567",
    dob: date = date(1985, 3, 14),
    name: str = "Nguyễn Văn Ánh",
):  # type: ignore[no-untyped-def]
    return await registry.create_person(NewPerson(national_id, dob, name, Sex.MALE, phone), actor="test")


def missing_dose_report(
    person_id: str | None, site: str | None = None, dose: DosesConcerned = DosesConcerned.SECOND, **kw: object
) -> NewCorrection:
    return NewCorrection(
        kind=CaseKind.MISSING_DOSE,
        doses_concerned=dose,
        claimed=ClaimedDose(administered_on=date(2021, 9, 1), vaccine="AstraZeneca", site=site),
        channel="sms",
        channel_address="+84901234567",
        person_id=person_id,
        **kw,  # type: ignore[arg-type]
    )


class RegistryContract:
    """Shared behaviour of every Registry implementation."""

    async def test_find_person_by_id_and_dob(self, registry: Registry) -> None:
        created = await seed_person(registry)
        found = await registry.find_person("001085001234", date(1985, 3, 14))
        assert found.id == created.id
        assert found.full_name == "Nguyễn Văn Ánh"
        assert found.sex == Sex.MALE
        assert found.current_phones == ("+84901234567",)
        assert (await registry.get_person(created.id)).national_id == "001085001234"

    async def test_wrong_date_of_birth_is_not_found(self, registry: Registry) -> None:
        await seed_person(registry)
        with pytest.raises(RecordNotFound):
            await registry.find_person("001085001234", date(1985, 3, 15))
        with pytest.raises(RecordNotFound):
            await registry.find_person("999999999999", date(1985, 3, 14))

    async def test_duplicate_person_conflicts(self, registry: Registry) -> None:
        await seed_person(registry)
        with pytest.raises(Conflict):
            await seed_person(registry)

    async def test_one_phone_serves_a_family(self, registry: Registry) -> None:
        parent = await seed_person(registry, "001085001234", "+84912000111")
        child = await seed_person(registry, "001215000777", "+84912000111", date(2015, 6, 1), "Nguyễn Thị Bé")
        await seed_person(registry, "001070009999", "+84988777666", date(1970, 1, 1), "Trần Văn Khác")
        found = await registry.find_persons_by_phone("+84912000111")
        assert {p.id for p in found} == {parent.id, child.id}
        assert await registry.find_persons_by_phone("+84900000000") == []

    async def test_phone_change_keeps_history_and_doses(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.record_dose(person.id, NewDose(1, "AstraZeneca", date(2021, 8, 1), "HN001", "AZ123"))
        updated = await registry.update_contact(
            person.id, ContactChange("+84987654321", "+84901234567", evidence="otp", actor="agent:lan")
        )
        assert updated.current_phones == ("+84987654321",)
        old = [c for c in updated.contacts if c.phone == "+84901234567"]
        assert old and old[0].removed_at is not None
        assert await registry.find_persons_by_phone("+84901234567") == []
        assert [p.id for p in await registry.find_persons_by_phone("+84987654321")] == [person.id]
        assert [d.dose_number for d in await registry.list_doses(person.id)] == [1]

    async def test_replacing_the_registered_phone_retires_every_other(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.update_contact(
            person.id, ContactChange("+84912000333", None, evidence="import", actor="x", verified=False)
        )
        assert set((await registry.get_person(person.id)).current_phones) == {"+84901234567", "+84912000333"}
        change = ContactChange("+84987654321", None, evidence="code", actor="agent:lan", replace=True)
        updated = await registry.update_contact(person.id, change)
        assert updated.current_phones == ("+84987654321",)
        assert updated.registered_phone == "+84987654321"
        assert await registry.find_persons_by_phone("+84901234567") == []
        assert await registry.find_persons_by_phone("+84912000333") == []
        again = await registry.update_contact(person.id, change)  # a retried change changes nothing
        assert again.current_phones == ("+84987654321",)
        assert len(again.contacts) == len(updated.contacts)

    async def test_doses_ordered_and_idempotent(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.record_dose(person.id, NewDose(2, "Pfizer", date(2021, 10, 1), "HN001", "FP2"))
        first = await registry.record_dose(
            person.id, NewDose(1, "EU/1/21/1529", date(2021, 8, 1), "HN001", "AZ1")
        )
        again = await registry.record_dose(
            person.id, NewDose(1, "astrazeneca", date(2021, 8, 1), "HN001", "AZ1")
        )
        assert again.id == first.id
        doses = await registry.list_doses(person.id)
        assert [(d.dose_number, d.product) for d in doses] == [(1, "EU/1/21/1529"), (2, "EU/1/20/1528")]
        assert doses[0].site_name == HN.name
        assert doses[0].administered_on == date(2021, 8, 1)

    async def test_conflicting_dose_is_refused_but_correction_replaces(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.record_dose(person.id, NewDose(1, "AstraZeneca", date(2021, 8, 1), "HN001", "AZ1"))
        with pytest.raises(Conflict):
            await registry.record_dose(person.id, NewDose(1, "Moderna", date(2021, 8, 2), "HN001", "M1"))
        fixed = await registry.record_dose(
            person.id, NewDose(1, "Moderna", date(2021, 8, 2), "HN001", "M1", source=DoseSource.CORRECTION)
        )
        assert fixed.product == "EU/1/20/1507"
        assert len(await registry.list_doses(person.id)) == 1

    async def test_unknown_vaccine_or_site_is_invalid(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        with pytest.raises(InvalidRequest):
            await registry.record_dose(person.id, NewDose(1, "Snake oil", date(2021, 8, 1), "HN001"))
        with pytest.raises((InvalidRequest, RecordNotFound)):
            await registry.record_dose(person.id, NewDose(1, "Pfizer", date(2021, 8, 1), "NOPE"))

    async def test_sites(self, registry: Registry) -> None:
        await registry.upsert_site(HN)
        await registry.upsert_site(HCM)
        assert {s.code for s in await registry.list_sites()} >= {"HN001", "HCM07"}
        assert (await registry.get_site("HCM07")).name == HCM.name
        with pytest.raises(RecordNotFound):
            await registry.get_site("XX999")

    async def test_report_routed_to_named_site(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.upsert_site(HCM)
        case = await registry.submit_correction(missing_dose_report(person.id, site="bệnh viện quận 7"))
        assert case.site_code == "HCM07"
        assert case.status in (CaseStatus.ROUTED, CaseStatus.RECEIVED)
        assert case.ref.startswith("PA-")
        fetched = await registry.get_correction(case.ref)
        assert fetched.person_id == person.id
        assert fetched.kind == CaseKind.MISSING_DOSE
        assert fetched.doses_concerned == DosesConcerned.SECOND
        assert fetched.claimed.vaccine == "AstraZeneca"
        assert fetched.due_on > fetched.created_at.date()

    async def test_report_routed_to_latest_dose_site_then_hotline(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.upsert_site(HCM)
        await registry.record_dose(person.id, NewDose(1, "Pfizer", date(2021, 8, 1), "HN001"))
        case = await registry.submit_correction(missing_dose_report(person.id, site="somewhere unknown"))
        assert case.site_code == "HN001"
        nobody = await seed_person(registry, "001290001111", "+84977000111", date(1990, 2, 2), "Lê Thị Không")
        case2 = await registry.submit_correction(missing_dose_report(nobody.id, site=None))
        assert case2.site_code is None
        hotline = await registry.list_corrections(CorrectionQuery(hotline_queue=True))
        assert [c.ref for c in hotline] == [case2.ref]

    async def test_second_report_joins_open_case(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        first = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
        second = await registry.submit_correction(
            missing_dose_report(person.id, site="HN001", dose=DosesConcerned.BOTH)
        )
        assert second.ref == first.ref
        assert second.joined
        other_dose = await registry.submit_correction(
            missing_dose_report(person.id, site="HN001", dose=DosesConcerned.BOOSTER)
        )
        assert other_dose.ref != first.ref

    async def test_resubmission_with_same_ref_is_idempotent(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        a = await registry.submit_correction(missing_dose_report(person.id, site="HN001", ref="PA-2345-6A"))
        b = await registry.submit_correction(missing_dose_report(person.id, site="HN001", ref="PA-2345-6A"))
        assert a.ref == b.ref == "PA-2345-6A"
        assert len(await registry.list_corrections(CorrectionQuery(person_id=person.id))) == 1

    async def test_report_for_unknown_person_keeps_claimed_identity(self, registry: Registry) -> None:
        case = await registry.submit_correction(
            missing_dose_report(
                None,
                claimed_national_id="001199000555",
                claimed_date_of_birth=date(1999, 5, 5),
                claimed_name="Phạm Minh Tuấn",
                dose=DosesConcerned.FIRST,
            )
        )
        fetched = await registry.get_correction(case.ref)
        assert fetched.person_id is None
        assert fetched.claimed_national_id == "001199000555"
        assert fetched.claimed_date_of_birth == date(1999, 5, 5)
        assert fetched.site_code is None

    async def test_approve_records_dose_and_closes(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        case = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
        resolved = await registry.resolve_correction(
            case.ref,
            Resolution(
                Decision.APPROVED,
                "found in the paper log",
                "site:HN001/minh",
                NewDose(2, "AstraZeneca", date(2021, 9, 1), "HN001", "AZ9", source=DoseSource.CORRECTION),
            ),
        )
        assert resolved.status == CaseStatus.APPROVED
        assert resolved.resolution_note == "found in the paper log"
        assert resolved.resolved_at is not None
        assert [d.dose_number for d in await registry.list_doses(person.id)] == [2]
        assert any(e.action == "approved" for e in resolved.history)
        with pytest.raises(InvalidRequest):
            await registry.resolve_correction(case.ref, Resolution(Decision.REJECTED, "again", "x"))
        open_cases = await registry.list_corrections(
            CorrectionQuery(statuses=frozenset({CaseStatus.ROUTED, CaseStatus.IN_REVIEW}), site_code="HN001")
        )
        assert open_cases == []

    async def test_reject_reassign_review_attach(self, registry: Registry) -> None:
        person = await seed_person(registry)
        await registry.upsert_site(HN)
        await registry.upsert_site(HCM)
        case = await registry.submit_correction(missing_dose_report(person.id, site="HN001"))
        moved = await registry.reassign_correction(case.ref, "HCM07", "site:HN001/minh", "not ours")
        assert moved.site_code == "HCM07"
        to_hotline = await registry.reassign_correction(case.ref, None, "site:HCM07/an", "no idea")
        assert to_hotline.site_code is None
        reviewing = await registry.mark_in_review(case.ref, "agent:lan")
        assert reviewing.status == CaseStatus.IN_REVIEW
        with_photo = await registry.add_attachment(
            case.ref, NewAttachment("card.jpg", "image/jpeg", 1234, "uploads/card.jpg"), "citizen"
        )
        assert [a.filename for a in with_photo.attachments] == ["card.jpg"]
        rejected = await registry.resolve_correction(
            case.ref, Resolution(Decision.REJECTED, "no record", "agent:lan")
        )
        assert rejected.status == CaseStatus.REJECTED
        assert [e.action for e in rejected.history][-1] == "rejected"

    async def test_list_corrections_by_site_oldest_due_first(self, registry: Registry) -> None:
        await registry.upsert_site(HN)
        refs = []
        for i in range(3):
            p = await seed_person(registry, f"00108500{i:04d}", f"+8490123{i:04d}")
            refs.append((await registry.submit_correction(missing_dose_report(p.id, site="HN001"))).ref)
        listed = await registry.list_corrections(CorrectionQuery(site_code="HN001"))
        assert sorted(c.ref for c in listed) == sorted(refs)
        assert [c.due_on for c in listed] == sorted(c.due_on for c in listed)

    async def test_unknown_references(self, registry: Registry) -> None:
        with pytest.raises(RecordNotFound):
            await registry.get_correction("PA-2222-2A")
        with pytest.raises(RecordNotFound):
            await registry.get_person("123456789")

    async def test_audit_and_info(self, registry: Registry, audit_lines) -> None:  # type: ignore[no-untyped-def]
        person = await seed_person(registry)
        at = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
        await registry.audit(AuditEntry("sms:+84901234567", "doses.view", person.id, "status", at=at))
        await registry.audit(AuditEntry("sms:+84901234567", "doses.view", person.id, "status", at=at))
        await registry.audit(AuditEntry("agent:lan", "person.view", person.id))
        stored = sorted(await audit_lines(person.id))
        assert stored == [
            ("agent:lan", "person.view", None),
            ("sms:+84901234567", "doses.view", "status"),
            ("sms:+84901234567", "doses.view", "status"),  # two alike lines are two lines
        ]
        info = await registry.info()
        assert info.reachable

    @pytest.mark.parametrize(
        ("dose", "reason"),
        [
            (NewDose(1, "Sputnik Light Plus", date(2021, 8, 2), "HN001"), "unknown vaccine"),
            (NewDose(0, "AstraZeneca", date(2021, 8, 2), "HN001"), "dose number"),
            (NewDose(10, "AstraZeneca", date(2021, 8, 2), "HN001"), "dose number"),
            (NewDose(1, "AstraZeneca", date(2019, 12, 31), "HN001"), "before any COVID-19 vaccine"),
            (NewDose(1, "AstraZeneca", date(2021, 8, 2), "  "), "site"),
            (NewDose(1, "AstraZeneca", date(2021, 8, 2), "HN001", lot="L" * 41), "lot"),
        ],
        ids=["unknown-vaccine", "dose-0", "dose-10", "before-2020", "no-site", "long-lot"],
    )
    async def test_a_dose_breaking_the_shared_rule_is_refused_alike(
        self, registry: Registry, dose: NewDose, reason: str
    ) -> None:
        """Every backend refuses the same doses with the same reason (registry_client/dose_validation)."""
        await registry.upsert_site(HN)
        person = await seed_person(registry)
        with pytest.raises(InvalidRequest, match=reason):
            await registry.record_dose(person.id, dose)
        assert await registry.list_doses(person.id) == []

    async def test_a_dose_is_stored_normalised(self, registry: Registry) -> None:
        await registry.upsert_site(HN)
        person = await seed_person(registry)
        stored = await registry.record_dose(
            person.id, NewDose(1, "astrazeneca", date(2021, 8, 2), " HN001 ", " ")
        )
        assert (stored.product, stored.site_code, stored.lot) == ("EU/1/21/1529", "HN001", None)
        again = await registry.record_dose(person.id, NewDose(1, "EU/1/21/1529", date(2021, 8, 2), "HN001"))
        assert again.id == stored.id  # the same dose: nothing changes
