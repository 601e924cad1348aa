"""Verifying an HC1 string: decode, find the signer by kid, check the signature, time and schema.

`Verifier.check` never raises: any input, however broken, gives a `VerificationResult` with
`valid: False` and a precise reason. Holder and vaccinations are reported whenever the payload
could be decoded, also when the signer is unknown (a checkpoint can still read it).
Revocation is the service's business (it needs the database): see `CertificateService.verify`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from certificates import hcert
from certificates.keys import KeyRing
from certificates.names import display_name

log = logging.getLogger(__name__)

VALID = "valid"
INPUT_TOO_LARGE = "input too large"
NOT_HC1 = "not HC1"
BAD_BASE45 = "bad base45"
BAD_ZLIB = "bad zlib"
NOT_COSE = "not COSE"
WRONG_TAG = "wrong tag"
SCHEMA = "schema"
UNKNOWN_SIGNER = "unknown signer"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
REVOKED = "revoked"
SIGNER_NOT_ALLOWED = "signer not allowed"
INTERNAL = "could not be checked"


@dataclass(frozen=True)
class Vaccination:
    dose_number: int | None
    total_doses: int | None
    date: str
    product: str  # the mp code as written in the certificate
    country: str
    certificate_id: str
    manufacturer: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dose_number": self.dose_number,
            "total_doses": self.total_doses,
            "date": self.date,
            "product": self.product,
            "country": self.country,
            "certificate_id": self.certificate_id,
        }


@dataclass(frozen=True)
class VerificationResult:
    valid: bool
    code: str  # one of the constants above
    detail: str = ""
    holder_name: str = ""
    date_of_birth: str = ""
    vaccinations: tuple[Vaccination, ...] = ()
    issuer: str = ""
    kid: bytes | None = None
    signer: str = ""  # "own" / "trusted" when the signature verified
    signature_valid: bool | None = None  # None: not reached
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    certificate_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code

    def to_json(self) -> dict[str, Any]:
        """The /api/verify answer (docs/http-api.md), nothing more."""
        return {
            "valid": self.valid,
            "reason": self.reason,
            "holder": {"name": self.holder_name, "date_of_birth": self.date_of_birth},
            "vaccinations": [v.to_json() for v in self.vaccinations],
        }

    def invalid(self, code: str, detail: str = "") -> VerificationResult:
        return replace(self, valid=False, code=code, detail=detail)


_KIND_NAMES = {"v": "vaccination", "t": "test", "r": "recovery"}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _instant(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _vaccinations(dcc: dict[Any, Any]) -> tuple[Vaccination, ...]:
    entries = dcc.get("v")
    if not isinstance(entries, list | tuple):
        return ()
    return tuple(
        Vaccination(
            _int(v.get("dn")),
            _int(v.get("sd")),
            _text(v.get("dt")),
            _text(v.get("mp")),
            _text(v.get("co")),
            _text(v.get("ci")),
            _text(v.get("ma")),
        )
        for v in entries
        if isinstance(v, dict)
    )


def _schema_problem(claims: dict[Any, Any], dcc: object) -> str | None:
    """Sanity, not full JSON-schema validation: what a checkpoint needs must be there."""
    if not isinstance(dcc, dict):
        return "no DCC in the hcert claim (-260/1)"
    if not isinstance(claims.get(hcert.CLAIM_EXP), int | float):
        return "missing expiry (exp)"
    if not isinstance(dcc.get("nam"), dict):
        return "missing holder name (nam)"
    if not isinstance(dcc.get("dob"), str):
        return "missing date of birth (dob)"
    groups = [k for k in ("v", "t", "r") if isinstance(dcc.get(k), list | tuple) and dcc.get(k)]
    if not groups:
        return "no vaccination, test or recovery entry"
    if len(groups) > 1:
        return "more than one kind of entry (v, t, r) in one certificate"
    if any(not isinstance(e, dict) for k in groups for e in dcc[k]):
        return "an entry is not a map"
    return None


class Verifier:
    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    def check(self, text: object, at: datetime) -> VerificationResult:
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # a naive instant is taken as UTC
        try:
            return self._check(text, at)
        except Exception:  # a verifier answers; it never fails
            log.exception("verification failed unexpectedly")
            return VerificationResult(False, INTERNAL)

    def _check(self, text: object, at: datetime) -> VerificationResult:
        try:
            decoded = hcert.decode_hc1(text)
        except hcert.DecodeError as exc:
            return VerificationResult(False, exc.reason, exc.detail)
        claims = decoded.claims
        hc = claims.get(hcert.CLAIM_HCERT)
        dcc = hc.get(1) if isinstance(hc, dict) else None
        issuer = _text(claims.get(hcert.CLAIM_ISS))
        result = VerificationResult(False, "", issuer=issuer, kid=decoded.kid)
        if isinstance(dcc, dict):
            vaccinations = _vaccinations(dcc)
            family_first = issuer == "VN" or any(v.country == "VN" for v in vaccinations)
            result = replace(
                result,
                holder_name=display_name(dcc.get("nam"), family_first),
                date_of_birth=_text(dcc.get("dob")),
                vaccinations=vaccinations,
                certificate_ids=tuple(v.certificate_id for v in vaccinations if v.certificate_id),
                issued_at=_instant(claims.get(hcert.CLAIM_IAT)),
                expires_at=_instant(claims.get(hcert.CLAIM_EXP)),
            )
        if decoded.kid is None:
            return result.invalid(UNKNOWN_SIGNER, "no key identifier (kid)")
        candidates = self.keys.by_kid(decoded.kid)
        if not candidates:
            return result.invalid(UNKNOWN_SIGNER)
        problem = "no candidate key"
        for key in candidates:
            found = hcert.check_signature(decoded.cose, decoded.alg, key)
            if found is None:
                signer = key
                result = replace(result, signature_valid=True, signer=key.source)
                break
            problem = found
        else:
            return replace(result.invalid(BAD_SIGNATURE, problem), signature_valid=False)
        schema = _schema_problem(claims, dcc)
        if schema:
            return result.invalid(SCHEMA, schema)
        assert isinstance(dcc, dict)
        kinds = {k for k in ("v", "t", "r") if dcc.get(k)}
        if not kinds <= signer.allowed_types:
            allowed = ", ".join(_KIND_NAMES[k] for k in sorted(signer.allowed_types))
            return result.invalid(SIGNER_NOT_ALLOWED, f"the document signer may sign {allowed} only")
        if result.issued_at is not None and at < result.issued_at:
            return result.invalid(NOT_YET_VALID, f"issued {result.issued_at:%Y-%m-%d %H:%M:%S}Z")
        if result.expires_at is not None and at > result.expires_at:
            return result.invalid(EXPIRED, f"on {result.expires_at:%Y-%m-%d %H:%M:%S}Z")
        return replace(result, valid=True, code=VALID)
