"""Correction cases as FHIR Task, their photos as DocumentReference.

| CorrectionCase               | Task                                                                       |
|------------------------------|----------------------------------------------------------------------------|
| ref                          | identifier `…/sid/case-ref` (use official); a queued reference that joined |
|                              | this case is kept as a further identifier with use secondary (alias)       |
| kind                         | code (`…/CodeSystem/case-kind`)                                            |
| status                       | status: received, routed → requested; in_review → in-progress;             |
|                              | approved → completed; rejected → rejected. The exact value is in           |
|                              | businessStatus (`…/CodeSystem/case-status`)                                |
| —                            | intent order, priority routine                                             |
| person_id                    | for = Patient/<id>                                                         |
| the dose concerned           | focus = Immunization/<id> when that dose exists (after an approval: the    |
|                              | dose recorded, also in output `dose-recorded`)                             |
| site_code                    | owner = the site's Organization, else its Location, with the site code as  |
|                              | identifier and the name as display (registry_client.fhir.sites);           |
|                              | no owner = the hotline queue                                               |
| due_on                       | restriction.period.end                                                     |
| created_at / updated_at      | authoredOn / lastModified                                                  |
| resolved_at, resolution_note | executionPeriod.end, statusReason.text                                     |
| description                  | description                                                                |
| claimed dose and identity,   | input[], type `…/CodeSystem/case-input`: doses-concerned,                  |
| contact and channel details  | claimed-administered-on, claimed-vaccine, claimed-site, claimed-lot,       |
|                              | claimed-national-id, claimed-date-of-birth, claimed-name, workplace,       |
|                              | contact-phone, channel, channel-address, language                          |
| (search key)                 | groupIdentifier `…/sid/claimed-person` = "<national id>/<date of birth>"   |
| history                      | note[]: authorString = actor, time, text "action: note", extension         |
|                              | case-event-action = action                                                 |
| attachments                  | the photo as a Binary; a DocumentReference (identifier                     |
|                              | `…/sid/attachment-key`, subject Patient, content.attachment title,         |
|                              | contentType, size, hash, creation, url = the Binary's absolute URL on the  |
|                              | registry; extension `…/local-copy` = our stored file), referenced from     |
|                              | input `attachment`                                                         |
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from registry_client.fhir import codes, sites
from registry_client.fhir.http import Json
from registry_client.fhir.mapping import EPOCH, extension, instant, parse_date, parse_instant, reference_id
from registry_client.models import (
    Attachment,
    CaseEvent,
    CaseKind,
    CaseStatus,
    ClaimedDose,
    CorrectionCase,
    DosesConcerned,
    NewAttachment,
    NewCorrection,
    Person,
)

TO_FHIR_STATUS = {
    CaseStatus.RECEIVED: "requested",
    CaseStatus.ROUTED: "requested",
    CaseStatus.IN_REVIEW: "in-progress",
    CaseStatus.APPROVED: "completed",
    CaseStatus.REJECTED: "rejected",
}
_FROM_FHIR_STATUS = {
    "draft": CaseStatus.RECEIVED,
    "requested": CaseStatus.ROUTED,
    "received": CaseStatus.ROUTED,
    "accepted": CaseStatus.IN_REVIEW,
    "ready": CaseStatus.IN_REVIEW,
    "in-progress": CaseStatus.IN_REVIEW,
    "on-hold": CaseStatus.IN_REVIEW,
    "completed": CaseStatus.APPROVED,
    "rejected": CaseStatus.REJECTED,
    "cancelled": CaseStatus.REJECTED,
    "failed": CaseStatus.REJECTED,
    "entered-in-error": CaseStatus.REJECTED,
}


def fhir_statuses(statuses: frozenset[CaseStatus]) -> str:
    return ",".join(sorted({TO_FHIR_STATUS[s] for s in statuses}))


def claimed_person_key(national_id: str, date_of_birth: date | None) -> str:
    return f"{national_id}/{date_of_birth.isoformat() if date_of_birth else ''}"


def attachment_key(ref: str, attachment: NewAttachment) -> str:
    return hashlib.sha256(f"{ref}\n{attachment.storage_path}".encode()).hexdigest()[:40]


# -- building and changing a Task -------------------------------------------------------------------


def _input(name: str, value_key: str, value: Any) -> Json:
    return {"type": {"coding": [{"system": codes.CASE_INPUT, "code": name}], "text": name}, value_key: value}


def new_task(
    *,
    ref: str,
    new: NewCorrection,
    person: Person | None,
    owner: Json | None,
    focus_dose_id: str | None,
    due_on: date,
    now: datetime,
    document_ids: list[str],
) -> Json:
    national_id = new.claimed_national_id or (person.national_id if person else None)
    date_of_birth = new.claimed_date_of_birth or (person.date_of_birth if person else None)
    name = new.claimed_name or (person.full_name if person else None)
    inputs: list[Json] = []
    for key, value_key, value in (
        ("doses-concerned", "valueCode", new.doses_concerned.value if new.doses_concerned else None),
        ("claimed-administered-on", "valueDate", new.claimed.administered_on),
        ("claimed-vaccine", "valueString", new.claimed.vaccine),
        ("claimed-site", "valueString", new.claimed.site),
        ("claimed-lot", "valueString", new.claimed.lot),
        ("claimed-national-id", "valueString", national_id),
        ("claimed-date-of-birth", "valueDate", date_of_birth),
        ("claimed-name", "valueString", name),
        ("workplace", "valueString", new.workplace),
        ("contact-phone", "valueString", new.contact_phone),
        ("channel", "valueString", new.channel),
        ("channel-address", "valueString", new.channel_address),
        ("language", "valueCode", new.language),
    ):
        if isinstance(value, date):
            value = value.isoformat()
        if value not in (None, ""):
            inputs.append(_input(key, value_key, value))
    task: Json = {
        "resourceType": "Task",
        "identifier": [{"use": "official", "system": codes.CASE_REF, "value": ref}],
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": codes.CASE_KIND, "code": new.kind.value}], "text": new.kind.value},
        "authoredOn": instant(now),
        "lastModified": instant(now),
        "restriction": {"period": {"end": due_on.isoformat()}},
        "input": inputs,
    }
    if national_id:
        task["groupIdentifier"] = {
            "system": codes.CLAIMED_PERSON,
            "value": claimed_person_key(national_id, date_of_birth),
        }
    if person is not None:
        task["for"] = {"reference": f"Patient/{person.id}", "display": person.full_name}
    if focus_dose_id:
        task["focus"] = {"reference": f"Immunization/{focus_dose_id}"}
    if new.description:
        task["description"] = new.description
    set_owner(task, owner)
    set_status(task, CaseStatus.ROUTED)
    add_note(task, now, new.actor, "received", new.description)
    add_note(task, now, "system", "routed", (owner or {}).get("identifier", {}).get("value") or "hotline")
    for doc_id in document_ids:
        add_document(task, doc_id)
    return task


def set_status(task: Json, status: CaseStatus) -> None:
    task["status"] = TO_FHIR_STATUS[status]
    task["businessStatus"] = {
        "coding": [{"system": codes.CASE_STATUS, "code": status.value}],
        "text": status.value,
    }


def set_owner(task: Json, owner: Json | None) -> None:
    if owner is None:
        task.pop("owner", None)
    else:
        task["owner"] = owner


def add_note(task: Json, at: datetime, actor: str, action: str, note: str | None) -> None:
    text = action if note is None else f"{action}: {note}".rstrip()
    task.setdefault("note", []).append(
        {
            "extension": [{"url": codes.EXT_EVENT_ACTION, "valueCode": action}],
            "authorString": actor,
            "time": instant(at),
            "text": text,
        }
    )


def add_alias(task: Json, ref: str) -> None:
    task.setdefault("identifier", []).append({"use": "secondary", "system": codes.CASE_REF, "value": ref})


def add_document(task: Json, document_id: str) -> None:
    task.setdefault("input", []).append(
        _input("attachment", "valueReference", {"reference": f"DocumentReference/{document_id}"})
    )


def record_dose_output(task: Json, immunization_id: str) -> None:
    reference = {"reference": f"Immunization/{immunization_id}"}
    task["focus"] = reference
    task.setdefault("output", []).append(
        {
            "type": {"coding": [{"system": codes.CASE_INPUT, "code": "dose-recorded"}]},
            "valueReference": reference,
        }
    )


def resolve(task: Json, status: CaseStatus, note: str, at: datetime) -> None:
    set_status(task, status)
    if note:
        task["statusReason"] = {"text": note}
    task["executionPeriod"] = {**(task.get("executionPeriod") or {}), "end": instant(at)}


# -- reading a Task -------------------------------------------------------------------------------


def primary_ref(task: Json) -> str | None:
    ids = [i for i in task.get("identifier") or [] if i.get("system") == codes.CASE_REF]
    official = [i for i in ids if i.get("use") != "secondary"]
    chosen = official or ids
    return str(chosen[0]["value"]) if chosen else None


def document_ids(task: Json) -> list[str]:
    found = []
    for item in task.get("input") or []:
        doc_id = reference_id(item.get("valueReference"), "DocumentReference")
        if doc_id:
            found.append(doc_id)
    return found


def case_status(task: Json) -> CaseStatus:
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == codes.CASE_STATUS:
            try:
                return CaseStatus(coding.get("code"))
            except ValueError:
                break
    return _FROM_FHIR_STATUS.get(task.get("status") or "", CaseStatus.RECEIVED)


def _inputs(task: Json) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in task.get("input") or []:
        codings = (item.get("type") or {}).get("coding") or []
        name = next((c.get("code") for c in codings if c.get("system") == codes.CASE_INPUT), None)
        if not name or name == "attachment":
            continue
        for key, value in item.items():
            if key.startswith("value"):
                values[name] = value
    return values


def _event(note: Json) -> CaseEvent:
    action_ext = next(
        (e for e in note.get("extension") or [] if e.get("url") == codes.EXT_EVENT_ACTION), None
    )
    text = str(note.get("text") or "")
    action = str((action_ext or {}).get("valueCode") or text.split(":", 1)[0])
    detail: str | None
    if text == action:
        detail = None
    elif text.startswith(action + ":"):
        detail = text[len(action) + 1 :].lstrip(" ")
    else:
        detail = text
    return CaseEvent(
        at=parse_instant(note.get("time")) or EPOCH,
        actor=str(
            note.get("authorString") or reference_id(note.get("authorReference"), "Practitioner") or ""
        ),
        action=action,
        note=detail,
    )


def case_from_task(
    task: Json,
    attachments: Mapping[str, Attachment],
    joined: bool = False,
    *,
    site_system: str = codes.SITE_CODE,
    site_refs: Mapping[str, str] | None = None,
) -> CorrectionCase:
    """The case of a Task; `site_refs` maps `Location/…`/`Organization/…` to site codes for an owner
    given by reference only."""
    inputs = _inputs(task)
    kind_code = next(
        (
            c.get("code")
            for c in (task.get("code") or {}).get("coding") or []
            if c.get("system") == codes.CASE_KIND
        ),
        CaseKind.OTHER.value,
    )
    concerned = inputs.get("doses-concerned")
    created = parse_instant(task.get("authoredOn")) or parse_instant(
        (task.get("meta") or {}).get("lastUpdated")
    )
    assert created is not None, "a Task without authoredOn"
    return CorrectionCase(
        ref=primary_ref(task) or str(task.get("id")),
        person_id=reference_id(task.get("for"), "Patient"),
        claimed_national_id=inputs.get("claimed-national-id"),
        claimed_date_of_birth=parse_date(inputs.get("claimed-date-of-birth")),
        claimed_name=inputs.get("claimed-name"),
        kind=CaseKind(kind_code),
        doses_concerned=DosesConcerned(concerned) if concerned else None,
        claimed=ClaimedDose(
            administered_on=parse_date(inputs.get("claimed-administered-on")),
            vaccine=inputs.get("claimed-vaccine"),
            site=inputs.get("claimed-site"),
            lot=inputs.get("claimed-lot"),
        ),
        workplace=inputs.get("workplace"),
        contact_phone=inputs.get("contact-phone"),
        channel=str(inputs.get("channel") or ""),
        channel_address=str(inputs.get("channel-address") or ""),
        language=str(inputs.get("language") or "vi"),
        status=case_status(task),
        site_code=sites.owner_site_code(task, site_system, dict(site_refs or {})),
        due_on=parse_date(((task.get("restriction") or {}).get("period") or {}).get("end")) or created.date(),
        created_at=created,
        updated_at=parse_instant(task.get("lastModified")) or created,
        description=task.get("description"),
        resolution_note=(task.get("statusReason") or {}).get("text"),
        resolved_at=parse_instant((task.get("executionPeriod") or {}).get("end")),
        attachments=tuple(attachments[d] for d in document_ids(task) if d in attachments),
        history=tuple(_event(n) for n in task.get("note") or []),
        joined=joined,
    )


# -- attachments ----------------------------------------------------------------------------------


def binary_resource(content_type: str, data: bytes) -> Json:
    return {"resourceType": "Binary", "contentType": content_type, "data": base64.b64encode(data).decode()}


def document_reference(
    ref: str,
    attachment: NewAttachment,
    patient_id: str | None,
    at: datetime,
    binary_url: str | None,
    data: bytes | None,
) -> Json:
    """The DocumentReference of a report's photo: `binary_url` is the absolute URL of the Binary
    holding the bytes on the registry (None when the file could not be read)."""
    content: Json = {
        "contentType": attachment.content_type,
        "size": len(data) if data is not None else attachment.size,
        "title": attachment.filename,
        "creation": instant(at),
    }
    if binary_url:
        content["url"] = binary_url
    if data is not None:
        content["hash"] = base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324 - FHIR's hash is SHA-1
    doc: Json = {
        "resourceType": "DocumentReference",
        "extension": [{"url": codes.EXT_LOCAL_COPY, "valueString": attachment.storage_path}],
        "identifier": [{"system": codes.ATTACHMENT_KEY, "value": attachment_key(ref, attachment)}],
        "status": "current",
        "description": f"evidence for report {ref}",
        "date": instant(at),
        "content": [{"attachment": content}],
    }
    if patient_id:
        doc["subject"] = {"reference": f"Patient/{patient_id}"}
    return doc


def attachment_from_document(doc: Json) -> Attachment:
    content = ((doc.get("content") or [{}])[0]).get("attachment") or {}
    added = parse_instant(content.get("creation")) or parse_instant(doc.get("date"))
    local = (extension(doc, codes.EXT_LOCAL_COPY) or {}).get("valueString")
    return Attachment(
        id=str(doc["id"]),
        filename=str(content.get("title") or ""),
        content_type=str(content.get("contentType") or "application/octet-stream"),
        size=int(content.get("size") or 0),
        storage_path=str(local or content.get("url") or ""),
        added_at=added or EPOCH,
    )
