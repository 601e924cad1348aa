"""What the console's JSON API answers, as models for its OpenAPI description (docs/http-api.md).

The routes build their JSON themselves; these models only describe it, and the OpenAPI fuzz test
(tests/fuzz/test_openapi.py) checks every documented answer against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    detail: str = Field(description="a short reason, e.g. not_authenticated, forbidden, bad_credentials")


class TokenAnswer(BaseModel):
    token: str = Field(description="send it as `Authorization: Bearer <token>`")
    token_type: str = "bearer"
    expires_at: str = Field(description="ISO 8601")
    expires_in: int = Field(description="seconds")


class SendLinkAnswer(BaseModel):
    status: str = Field(description="queued")
    channel: str = Field(description="sms or telegram")
    sent_to: str = Field(description="the address the link goes to, masked")


class PhoneChangeAnswer(BaseModel):
    change_id: str
    status: str = Field(description="code_sent")
    sent_to: str = Field(description="the new phone, masked")
    expires_at: str = Field(description="ISO 8601: the code's end")


class PhoneChangeConfirmed(BaseModel):
    change_id: str
    status: str = Field(description="confirmed")
    registered_phone: str | None = Field(description="the person's registered phone now, masked")
    retired: list[str] = Field(description="the phones no longer current, masked")
    bindings_ended: int = Field(description="logins (SMS, USSD, Telegram chats) ended by the change")


class WrongCode(BaseModel):
    detail: str = Field(
        description="wrong_code, change_dead (5 wrong tries), code_expired, or why the body is unreadable"
    )
    tries_left: int | None = Field(default=None, description="with a code that was compared")


class CorrectionPerson(BaseModel):
    name: str | None
    date_of_birth: str | None
    national_id_masked: str | None


class ClaimedDose(BaseModel):
    administered_on: str | None
    vaccine: str | None
    site: str | None
    lot: str | None


class AttachmentLink(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    url: str = Field(description="console page of the file (login required)")


class Correction(BaseModel):
    ref: str = Field(description="the report's reference, e.g. PA-7K3D-95")
    status: str
    kind: str
    doses_concerned: str | None
    site_code: str | None
    due_on: str | None
    sla_state: str
    created_at: str | None
    resolved_at: str | None
    resolution_note: str | None
    channel: str | None
    person: CorrectionPerson
    contact_phone_masked: str | None
    claimed: ClaimedDose
    workplace: str | None
    description: str | None
    attachments: list[AttachmentLink]


class CorrectionsAnswer(BaseModel):
    site: str | None = Field(description="the queue listed: a site code, HOTLINE, or null (all)")
    status: str
    count: int
    corrections: list[Correction]


class ResolveAnswer(BaseModel):
    ref: str
    status: str = Field(description="approved or rejected")
    citizen_told: bool = Field(description="a message to the citizen was queued")
    certificate_reissued: bool
    correction: Correction


class SequenceProblem(BaseModel):
    kind: str
    dose_number: int | None
    detail: list[Any]
    text: str


class ResolveConflict(BaseModel):
    """409: the report is closed already, or (detail `dose_sequence`) the dose leaves a gap,
    reuses a number or date, or predates its predecessor: the problems, and how to override."""

    detail: str = Field(description="dose_sequence, or why the report cannot be resolved")
    reason: str | None = None
    problems: list[SequenceProblem] | None = None
    override: str | None = Field(default=None, description="how to record the dose anyway")


def problems(**described: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: status code → its meaning, each answered as a Problem."""
    return {int(code[1:]): {"model": Problem, "description": text} for code, text in described.items()}


NOT_AUTHENTICATED = "no valid bearer token (POST /api/agent/token)"
