"""HCERT (EU DCC) wire format: `HC1:` + base45(zlib(COSE_Sign1(CWT))).

Encoding builds the DCC 1.3.0 payload, the CWT claims and a COSE_Sign1 (tag 18) by hand with
cbor2 + cryptography: the signed bytes are exactly `Sig_structure` of RFC 9052. Decoding is the
reverse, step by step, each failure reported with a precise reason (`DecodeError.reason`).
Nothing here touches a database or the clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from certificates import valuesets
from certificates.keys import SignerKey
from certificates.protocols import DoseLike

PREFIX = "HC1:"
SCHEMA_VERSION = "1.3.0"
ISSUER_COUNTRY = "VN"
CERTIFICATE_ISSUER = "Ministry of Health VN"
MAX_INPUT_CHARS = 8000  # the largest QR (version 40) holds ~4,300 alphanumerics
MAX_COSE_BYTES = 64 * 1024

ALG_ES256, ALG_PS256, ALG_RS256 = -7, -37, -257
ALG_IDS = {"ES256": ALG_ES256, "PS256": ALG_PS256}
ALG_NAMES = {ALG_ES256: "ES256", ALG_PS256: "PS256", ALG_RS256: "RS256", -35: "ES384", -36: "ES512"}
HDR_ALG, HDR_KID = 1, 4
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
TAG_COSE_SIGN1, TAG_CWT = 18, 61


class DecodeError(Exception):
    """The input is not a decodable HCERT; `reason` is one of the verification reasons."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# -- encoding ------------------------------------------------------------------------------------


def vaccination_entry(dose: DoseLike, uvci: str, dn: int, sd: int) -> dict[str, Any]:
    """The `v` entry of `dose`; dn/sd as `certificates.dose_series` reads the person's record."""
    product = valuesets.product(dose.product)
    if product is None:
        raise ValueError(f"no DCC value-set entry for product {dose.product!r}")
    return {
        "tg": valuesets.DISEASE_COVID19,
        "vp": product.prophylaxis,
        "mp": product.code,
        "ma": product.manufacturer,
        "dn": dn,
        "sd": sd,
        "dt": dose.administered_on.isoformat(),
        "co": ISSUER_COUNTRY,
        "is": CERTIFICATE_ISSUER,
        "ci": uvci,
    }


def dcc_payload(nam: dict[str, str], date_of_birth: date, entry: dict[str, Any]) -> dict[str, Any]:
    return {"ver": SCHEMA_VERSION, "nam": nam, "dob": date_of_birth.isoformat(), "v": [entry]}


def cwt_claims(dcc: dict[str, Any], issued_at: datetime, expires_at: datetime) -> dict[int, Any]:
    return {
        CLAIM_ISS: ISSUER_COUNTRY,
        CLAIM_IAT: int(issued_at.timestamp()),
        CLAIM_EXP: int(expires_at.timestamp()),
        CLAIM_HCERT: {1: dcc},
    }


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def sign_cose(payload: bytes, key: SignerKey) -> bytes:
    """A tagged COSE_Sign1 over `payload` with kid and alg in the protected header."""
    if key.private_key is None:
        raise ValueError("a trusted foreign key cannot sign")
    protected = bytes(cbor2.dumps({HDR_ALG: ALG_IDS[key.alg], HDR_KID: key.kid}, canonical=True))
    to_sign = _sig_structure(protected, payload)
    private = key.private_key
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = private.sign(to_sign, pss, hashes.SHA256())
    message = cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {}, payload, signature])
    return bytes(cbor2.dumps(message))


def encode_hc1(claims: dict[int, Any], key: SignerKey) -> str:
    cose = sign_cose(bytes(cbor2.dumps(claims, canonical=True)), key)
    encoded: bytes = base45.b45encode(zlib.compress(cose, 9))
    return PREFIX + encoded.decode("ascii")


# -- decoding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoseSign1:
    protected_bytes: bytes
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes

    def header(self, label: int) -> Any:
        """A header parameter: the protected bucket wins (HCERT spec 3.3.1)."""
        if label in self.protected:
            return self.protected[label]
        return self.unprotected.get(label)


@dataclass(frozen=True)
class Decoded:
    cose: CoseSign1
    claims: dict[Any, Any]

    @property
    def kid(self) -> bytes | None:
        kid = self.cose.header(HDR_KID)
        return bytes(kid) if isinstance(kid, bytes | bytearray) else None

    @property
    def alg(self) -> int | None:
        alg = self.cose.header(HDR_ALG)
        return alg if isinstance(alg, int) else None


def unprefix(text: object) -> str:
    if not isinstance(text, str):
        raise DecodeError("not HC1", "expected a text string")
    if len(text) > MAX_INPUT_CHARS:
        raise DecodeError("input too large", f"more than {MAX_INPUT_CHARS} characters")
    text = text.strip()
    if not text.startswith(PREFIX):
        found = text[:4] if ":" in text[:5] else "none"
        raise DecodeError("not HC1", f"missing the 'HC1:' prefix (found {found})")
    return text[len(PREFIX) :]


def unbase45(body: str) -> bytes:
    try:
        return bytes(base45.b45decode(body))
    except Exception as exc:  # the library raises ValueError/KeyError on bad symbols
        raise DecodeError("bad base45", str(exc) or type(exc).__name__) from None


def inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_COSE_BYTES)
    except zlib.error as exc:
        raise DecodeError("bad zlib", str(exc)) from None
    if inflater.unconsumed_tail:
        raise DecodeError("bad zlib", f"expands beyond {MAX_COSE_BYTES // 1024} KB")
    if not inflater.eof:
        raise DecodeError("bad zlib", "truncated stream")
    return out


def _cbor(data: bytes, what: str, reason: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # CBORDecodeError, RecursionError, MemoryError, ...
        raise DecodeError(reason, f"{what}: {exc}") from None


def parse_cose(data: bytes) -> CoseSign1:
    obj = _cbor(data, "COSE message", "not COSE")
    if isinstance(obj, cbor2.CBORTag) and obj.tag == TAG_CWT:
        obj = obj.value
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != TAG_COSE_SIGN1:
            raise DecodeError("wrong tag", f"CBOR tag {obj.tag}, expected 18 (COSE_Sign1)")
        obj = obj.value
    if not isinstance(obj, list | tuple) or len(obj) != 4:
        raise DecodeError("not COSE", "not a COSE_Sign1 array of four items")
    protected_bytes, unprotected, payload, signature = obj
    if not isinstance(protected_bytes, bytes) or not isinstance(signature, bytes):
        raise DecodeError("not COSE", "protected header and signature must be byte strings")
    if not isinstance(payload, bytes):
        raise DecodeError("not COSE", "payload must be a byte string")
    if not isinstance(unprotected, dict):
        raise DecodeError("not COSE", "unprotected header must be a map")
    protected = _cbor(protected_bytes, "protected header", "not COSE") if protected_bytes else {}
    if not isinstance(protected, dict):
        raise DecodeError("not COSE", "protected header is not a map")
    return CoseSign1(protected_bytes, protected, unprotected, payload, signature)


def decode_hc1(text: object) -> Decoded:
    """Every step from `HC1:` text to CWT claims; DecodeError names the step that failed."""
    cose = parse_cose(inflate(unbase45(unprefix(text))))
    claims = _cbor(cose.payload, "CWT payload", "schema")
    if isinstance(claims, cbor2.CBORTag):
        raise DecodeError("schema", f"CWT payload is a CBOR tag {claims.tag}, not a claims map")
    if not isinstance(claims, dict):
        raise DecodeError("schema", "CWT payload is not a claims map")
    return Decoded(cose, claims)


def check_signature(cose: CoseSign1, alg: int | None, key: SignerKey) -> str | None:
    """None when the signature verifies with `key`; otherwise why not."""
    public = key.public_key
    to_verify = _sig_structure(cose.protected_bytes, cose.payload)
    try:
        if alg == ALG_ES256:
            if not isinstance(public, ec.EllipticCurvePublicKey):
                return "ES256 signature but the signer's key is RSA"
            if len(cose.signature) != 64:
                return f"ES256 signature of {len(cose.signature)} bytes, expected 64"
            der = encode_dss_signature(
                int.from_bytes(cose.signature[:32], "big"), int.from_bytes(cose.signature[32:], "big")
            )
            public.verify(der, to_verify, ec.ECDSA(hashes.SHA256()))
        elif alg in (ALG_PS256, ALG_RS256):
            if not isinstance(public, rsa.RSAPublicKey):
                return f"{ALG_NAMES[alg]} signature but the signer's key is EC"
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                if alg == ALG_PS256
                else padding.PKCS1v15()
            )
            public.verify(cose.signature, to_verify, pad, hashes.SHA256())
        else:
            return f"unsupported algorithm {ALG_NAMES.get(alg or 0, alg)}"
    except InvalidSignature:
        return "signature does not verify"
    except ValueError as exc:
        return str(exc)
    return None
