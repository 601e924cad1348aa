"""Mapping between the registry's domain values and FHIR R4 resources.

| domain                 | FHIR R4                                                                        |
|------------------------|--------------------------------------------------------------------------------|
| Person.id              | Patient.id (the logical id)                                                    |
| Person.national_id     | Patient.identifier, system `urn:vn:cccd` (12 digits) or `urn:vn:cmnd` (9)      |
|                        | (both configurable: FHIR_IDENTIFIER_SYSTEM_CCCD / _CMND)                       |
| Person.date_of_birth   | Patient.birthDate                                                              |
| Person.full_name       | Patient.name[0]: `text` as given, `family` = first word (Vietnamese order),    |
|                        | `given` = the other words, use official                                        |
| Person.sex             | Patient.gender male / female (absent when unknown)                             |
| Person.contacts        | Patient.telecom (system phone, use mobile, value E.164); history in            |
|                        | `period` (start = added, end = retired); verification in extension             |
|                        | `…/contact-verification` (verified, verified-at, evidence, added-by)           |
| Site                   | Location and/or Organization with the site code (registry_client.fhir.sites)   |
| Dose                   | Immunization: status completed, patient, vaccineCode (the EU DCC product code: |
|                        | system `https://ec.europa.eu/health/documents/community-register/html/` for   |
|                        | EU-authorised products, `http://ec.europa.eu/temp/vaccineproductname` for the  |
|                        | others; CVX where known; the vaccine type in SNOMED CT or ATC),                 |
|                        | occurrenceDateTime, lotNumber, location (the site's Location) and performer    |
|                        | (its Organization, function AP), each with the site code as identifier and the |
|                        | name as display, protocolApplied.doseNumberPositiveInt /                       |
|                        | seriesDosesPositiveInt, recorded, identifier `…/sid/dose-key` =                |
|                        | `<Patient id>/<dose number>`, extensions dose-source and recorded-by           |
| CorrectionCase         | Task (see registry_client.fhir.tasks)                                          |
| Attachment             | Binary (the photo) + DocumentReference (registry_client.fhir.tasks)            |
| what a citizen is told | Communication about the Task (registry_client.fhir.notices)                    |
| AuditEntry             | AuditEvent: type rest, subtype `…/audit-action` = action, agent.altId = actor, |
|                        | entity.what = the Patient, entity.description = detail                         |

`…` stands for `http://vaxchannel.vn/fhir` (registry_client.fhir.codes).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from registry_client.errors import InvalidRequest
from registry_client.fhir import codes
from registry_client.fhir.http import Json
from registry_client.models import (
    AuditEntry,
    Contact,
    ContactChange,
    Dose,
    DoseSource,
    NewPerson,
    Person,
    Sex,
)
from registry_client.vaccines import Product

# -- dates ----------------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant(value: datetime) -> str:
    """A FHIR instant/dateTime in UTC with milliseconds."""
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_date(value: str | None) -> date | None:
    return date.fromisoformat(value[:10]) if value else None


def reference_id(reference: Json | None, resource_type: str) -> str | None:
    ref = (reference or {}).get("reference") or ""
    prefix = f"{resource_type}/"
    if ref.startswith(prefix):
        return str(ref[len(prefix) :].split("/_history")[0])
    return None


def extension(element: Json, url: str) -> Json | None:
    return next((e for e in element.get("extension") or [] if e.get("url") == url), None)


def identifier_value(resource: Json, system: str) -> str | None:
    return next((i.get("value") for i in resource.get("identifier") or [] if i.get("system") == system), None)


# -- persons --------------------------------------------------------------------------------------


def name_element(full_name: str) -> Json:
    words = full_name.split()
    element: Json = {"use": "official", "text": full_name}
    if words:
        element["family"] = words[0]
    if len(words) > 1:
        element["given"] = words[1:]
    return element


def telecom_element(contact: Contact, added_by: str | None = None) -> Json:
    period: Json = {"start": instant(contact.added_at)}
    if contact.removed_at is not None:
        period["end"] = instant(contact.removed_at)
    parts: list[Json] = [{"url": "verified", "valueBoolean": contact.verified}]
    if contact.verified_at is not None:
        parts.append({"url": "verified-at", "valueDateTime": instant(contact.verified_at)})
    if contact.evidence:
        parts.append({"url": "evidence", "valueString": contact.evidence})
    if added_by:
        parts.append({"url": "added-by", "valueString": added_by})
    return {
        "extension": [{"url": codes.EXT_CONTACT, "extension": parts}],
        "system": "phone",
        "value": contact.phone,
        "use": "mobile",
        "period": period,
    }


def patient_resource(new: NewPerson, systems: codes.IdentifierSystems, now: datetime, actor: str) -> Json:
    system = systems.for_id(new.national_id)
    if system is None:
        raise InvalidRequest("national ID must be a 12-digit CCCD or a 9-digit CMND")
    patient: Json = {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": system, "value": new.national_id}],
        "name": [name_element(new.full_name)],
        "birthDate": new.date_of_birth.isoformat(),
    }
    if new.sex is not None:
        patient["gender"] = "male" if new.sex == Sex.MALE else "female"
    if new.phone:
        patient["telecom"] = [telecom_element(Contact(new.phone, now), added_by=actor)]
    return patient


def _contact(element: Json) -> Contact | None:
    if element.get("system") not in ("phone", "sms") or not element.get("value"):
        return None
    period = element.get("period") or {}
    parts = {e.get("url"): e for e in (extension(element, codes.EXT_CONTACT) or {}).get("extension") or []}
    return Contact(
        phone=str(element["value"]),
        added_at=parse_instant(period.get("start")) or EPOCH,
        removed_at=parse_instant(period.get("end")),
        verified=bool((parts.get("verified") or {}).get("valueBoolean", False)),
        verified_at=parse_instant((parts.get("verified-at") or {}).get("valueDateTime")),
        evidence=(parts.get("evidence") or {}).get("valueString"),
    )


def _added_by(element: Json) -> str | None:
    parts = (extension(element, codes.EXT_CONTACT) or {}).get("extension") or []
    return next((p.get("valueString") for p in parts if p.get("url") == "added-by"), None)


def full_name(patient: Json) -> str:
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if name.get("text"):
        return str(name["text"])
    return " ".join([name.get("family") or "", *(name.get("given") or [])]).strip()


def birth_date(patient: Json) -> date | None:
    """Patient.birthDate when it is a full date (FHIR also allows "1985" or "1985-03")."""
    value = str(patient.get("birthDate") or "")
    return date.fromisoformat(value) if len(value) == 10 else None


def person_from_patient(
    patient: Json, systems: codes.IdentifierSystems, prefer_id: str | None = None
) -> Person:
    """The person of a Patient; InvalidRequest when the registry holds no full birth date for it."""
    dob = birth_date(patient)
    if dob is None:
        raise InvalidRequest(f"the registry holds no full birth date for Patient/{patient.get('id')}")
    ids = {i.get("system"): i.get("value") for i in patient.get("identifier") or []}
    national_id = (
        prefer_id
        if prefer_id and prefer_id in ids.values()
        else ids.get(systems.cccd) or ids.get(systems.cmnd)
    )
    gender = patient.get("gender")
    contacts = [c for c in (_contact(t) for t in patient.get("telecom") or []) if c is not None]
    return Person(
        id=str(patient["id"]),
        national_id=str(national_id or ""),
        date_of_birth=dob,
        full_name=full_name(patient),
        sex=Sex.MALE if gender == "male" else Sex.FEMALE if gender == "female" else None,
        contacts=tuple(contacts),
    )


def apply_contact_change(patient: Json, change: ContactChange, now: datetime) -> Json:
    """The Patient with the change applied to its phones (history kept; other telecom untouched)."""
    telecom = [dict(t) for t in patient.get("telecom") or []]
    current = [
        (i, c) for i, c in ((i, _contact(t)) for i, t in enumerate(telecom)) if c is not None and c.is_current
    ]
    for i, contact in current:
        retired = contact.phone == change.remove_phone or (
            change.replace and change.add_phone is not None and contact.phone != change.add_phone
        )
        if retired:
            telecom[i]["period"] = {**(telecom[i].get("period") or {}), "end": instant(now)}
    if change.add_phone:
        same = [(i, c) for i, c in current if c.phone == change.add_phone]
        if same:
            for i, contact in same:
                if change.verified and not contact.verified:
                    verified = Contact(contact.phone, contact.added_at, None, True, now, change.evidence)
                    telecom[i] = {**telecom[i], **telecom_element(verified, _added_by(telecom[i]))}
        else:
            added = Contact(
                change.add_phone,
                now,
                verified=change.verified,
                verified_at=now if change.verified else None,
                evidence=change.evidence,
            )
            telecom.append(telecom_element(added, added_by=change.actor))
    return {**patient, "telecom": telecom}


# -- doses ----------------------------------------------------------------------------------------


def dose_key(patient_id: str, dose_number: int) -> str:
    return f"{patient_id}/{dose_number}"


def immunization_resource(
    patient_id: str,
    dose_number: int,
    product: Product,
    administered_on: date,
    lot: str | None,
    site: Json,
    source: DoseSource,
    recorded_by: str,
    recorded_at: datetime,
    existing: Json | None = None,
) -> Json:
    base: Json = dict(existing or {})
    identifiers = [i for i in base.get("identifier") or [] if i.get("system") != codes.DOSE_KEY]
    extensions = [
        e
        for e in base.get("extension") or []
        if e.get("url") not in (codes.EXT_DOSE_SOURCE, codes.EXT_RECORDED_BY)
    ]
    base.pop("location", None)
    base.pop("performer", None)
    resource: Json = {
        **base,
        **site,
        "resourceType": "Immunization",
        "extension": [
            *extensions,
            {"url": codes.EXT_DOSE_SOURCE, "valueCode": source.value},
            {"url": codes.EXT_RECORDED_BY, "valueString": recorded_by},
        ],
        "identifier": [{"system": codes.DOSE_KEY, "value": dose_key(patient_id, dose_number)}, *identifiers],
        "status": "completed",
        "vaccineCode": codes.vaccine_code(product),
        "patient": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": administered_on.isoformat(),
        "recorded": instant(recorded_at),
        "primarySource": source != DoseSource.IMPORT,
        "protocolApplied": [
            {
                "targetDisease": [{"coding": [{"system": "http://snomed.info/sct", "code": "840539006"}]}],
                "doseNumberPositiveInt": dose_number,
                "seriesDosesPositiveInt": max(product.series_doses, dose_number),
            }
        ],
    }
    if lot:
        resource["lotNumber"] = lot
    else:
        resource.pop("lotNumber", None)
    return resource


def dose_number(immunization: Json) -> int | None:
    for applied in immunization.get("protocolApplied") or []:
        number = applied.get("doseNumberPositiveInt")
        if number is None and str(applied.get("doseNumberString") or "").isdigit():
            number = int(applied["doseNumberString"])
        if number is not None:
            return int(number)
    return None


def dose_from_immunization(immunization: Json, site_code: str | None, site_name: str | None) -> Dose:
    """The dose of an Immunization whose site (see registry_client.fhir.sites) is already known."""
    vaccine = immunization.get("vaccineCode") or {}
    product = codes.product_from_coding(vaccine.get("coding") or [], vaccine.get("text"))
    source_ext = extension(immunization, codes.EXT_DOSE_SOURCE) or {}
    recorded_by_ext = extension(immunization, codes.EXT_RECORDED_BY) or {}
    location = immunization.get("location") or {}
    site_code = site_code or reference_id(location, "Location") or ""
    occurrence = immunization.get("occurrenceDateTime") or ""
    try:
        source = DoseSource(source_ext.get("valueCode") or DoseSource.IMPORT.value)
    except ValueError:
        source = DoseSource.IMPORT
    return Dose(
        id=str(immunization["id"]),
        person_id=reference_id(immunization.get("patient"), "Patient") or "",
        dose_number=dose_number(immunization) or 0,
        product=product or str(vaccine.get("text") or "unknown"),
        lot=immunization.get("lotNumber"),
        administered_on=date.fromisoformat(occurrence[:10]),
        site_code=site_code,
        site_name=site_name or str(location.get("display") or site_code),
        source=source,
        recorded_by=str(recorded_by_ext.get("valueString") or "registry"),
        recorded_at=parse_instant(immunization.get("recorded"))
        or parse_instant((immunization.get("meta") or {}).get("lastUpdated"))
        or EPOCH,
    )


# -- audit ----------------------------------------------------------------------------------------


def audit_event(entry: AuditEntry, at: datetime) -> Json:
    event: Json = {
        "resourceType": "AuditEvent",
        "type": {"system": codes.AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": codes.AUDIT_ACTION, "code": entry.action}],
        "action": "R" if entry.action.endswith(".view") else "E",
        "recorded": instant(at),
        "outcome": "0",
        "agent": [{"altId": entry.actor, "requestor": True, "who": {"display": entry.actor}}],
        "source": {"site": "VaxChannel", "observer": {"display": "VaxChannel"}},
    }
    entity: Json = {}
    if entry.person_id:
        entity["what"] = {"reference": f"Patient/{entry.person_id}"}
    if entry.detail:
        entity["description"] = entry.detail
    if entity:
        event["entity"] = [entity]
    return event
