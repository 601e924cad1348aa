"""What a citizen was told about a report, as a FHIR Communication the registry's staff can see.

| CaseNotice   | Communication                                                                  |
|--------------|--------------------------------------------------------------------------------|
| ref + topics | identifier `…/sid/notice-key` = "<ref>/<topics>" (one Communication per notice) |
| —            | status completed; partOf and about = the Task of the report                     |
| topics       | category `…/CodeSystem/notice-kind` (report-approved, report-rejected,         |
|              | certificate-reissued)                                                          |
| person_id    | subject and recipient = the Patient                                            |
| channel      | medium.text (SMS, Telegram)                                                    |
| address      | note: where it went (the phone or chat)                                        |
| text         | payload.contentString (links to the certificate left out)                      |
| at           | sent                                                                           |
"""

from __future__ import annotations

from registry_client.fhir import codes
from registry_client.fhir.http import Json
from registry_client.fhir.mapping import instant
from registry_client.models import CaseNotice

NOTICE_KEY = f"{codes.NS}/sid/notice-key"
MEDIUM = {"sms": "SMS", "telegram": "Telegram", "ussd": "USSD", "whatsapp": "WhatsApp", "voice": "voice call"}


def notice_key(notice: CaseNotice) -> str:
    return f"{notice.ref}/{'+'.join(notice.topics)}"


def communication(notice: CaseNotice, task_id: str) -> Json:
    task = {"reference": f"Task/{task_id}", "display": f"report {notice.ref}"}
    resource: Json = {
        "resourceType": "Communication",
        "identifier": [{"system": NOTICE_KEY, "value": notice_key(notice)}],
        "partOf": [task],
        "status": "completed",
        "category": [
            {"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": topic}], "text": topic}
            for topic in notice.topics
        ],
        "medium": [{"text": MEDIUM.get(notice.channel, notice.channel)}],
        "about": [task],
        "sent": instant(notice.at),
        "payload": [{"contentString": notice.text}],
        "note": [{"text": f"sent by {MEDIUM.get(notice.channel, notice.channel)} to {notice.address}"}],
    }
    if notice.person_id:
        patient = {"reference": f"Patient/{notice.person_id}"}
        resource["subject"] = patient
        resource["recipient"] = [patient]
    return resource
