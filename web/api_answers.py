"""What the public JSON routes answer (/healthz, /api/verify, /api/certificates/keys), as models for
the OpenAPI description (docs/http-api.md). The routes build their JSON themselves; the OpenAPI
fuzz test (tests/fuzz/test_openapi.py) checks every documented answer against these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable (503) when the database does not answer")
    degraded: dict[str, Any] | None = Field(
        default=None, description="what around the service is not well: registry, outbox, redis, telegram …"
    )
    database: str | None = Field(default=None, description="with 503: why the database check failed")


class Holder(BaseModel):
    name: str
    date_of_birth: str


class VerifiedVaccination(BaseModel):
    dose_number: int | None
    total_doses: int | None
    date: str
    product: str = Field(description="the EU DCC medicinal product code written in the certificate")
    country: str
    certificate_id: str = Field(description="the UVCI")


class VerifyAnswer(BaseModel):
    valid: bool
    reason: str = Field(description="why it is valid or not (revoked, expired, bad signature, …)")
    holder: Holder
    vaccinations: list[VerifiedVaccination]


class SignerKey(BaseModel):
    kid: str = Field(description="base64 of the first 8 bytes of the SHA-256 of the DER certificate")
    certificate_pem: str = Field(description="the X.509 document-signer certificate, PEM")


class SignerKeys(BaseModel):
    keys: list[SignerKey] = Field(description="every own document signer that may have signed a live certificate")
