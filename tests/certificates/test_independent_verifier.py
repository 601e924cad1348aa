"""An outside verifier: only /api/certificates/keys, pycose, cryptography, zlib, base45, cbor2.

Nothing from the project is used on the verifying side, so this checks the wire format and the
published keys, not our own decoder.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.headers import KID
from pycose.keys import CoseKey
from pycose.messages import Sign1Message

from tests.certificates.conftest import AN, BINH, CertApp, make_settings, start_app


def verify_like_a_checkpoint(hc1: str, keys_json: dict) -> dict:
    """Returns the DCC payload when the signature verifies with a published key; raises otherwise."""
    assert hc1.startswith("HC1:")
    cose = zlib.decompress(base45.b45decode(hc1[4:]))
    message = Sign1Message.decode(cose)
    kid = message.phdr[KID]
    published = {base64.b64decode(k["kid"]): k["certificate_pem"] for k in keys_json["keys"]}
    pem = published[kid]
    certificate = x509.load_pem_x509_certificate(pem.encode())
    # the kid is the first 8 bytes of SHA-256 over the DER certificate (HCERT spec)
    assert hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()[:8] == kid
    public_pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    message.key = CoseKey.from_pem_public_key(public_pem.decode())
    assert message.verify_signature()
    claims = cbor2.loads(message.payload)
    return claims[-260][1]


def test_pycose_verifies_with_only_the_published_keys(cert_app: CertApp) -> None:
    people = cert_app.seed((AN, BINH))
    issued = [
        cert_app.call(cert_app.service.issue, p, cert_app.doses(p))
        for p in (people[AN.national_id], people[BINH.national_id])
    ]
    cert_app.service.signers.rotate()  # an older key must stay published and usable
    keys_json = cert_app.client.get("/api/certificates/keys").json()
    assert len(keys_json["keys"]) == 2
    for cert in issued:
        dcc = verify_like_a_checkpoint(cert.hc1, keys_json)
        assert dcc["v"][0]["ci"] == cert.uvci
    assert verify_like_a_checkpoint(issued[1].hc1, keys_json)["nam"]["fnt"] == "TRAN"

    tampered = bytearray(zlib.decompress(base45.b45decode(issued[0].hc1[4:])))
    tampered[-1] ^= 0x01  # last byte of the signature
    forged = "HC1:" + base45.b45encode(zlib.compress(bytes(tampered))).decode()
    message = Sign1Message.decode(bytes(tampered))
    message.key = CoseKey.from_pem_public_key(
        x509.load_pem_x509_certificate(keys_json["keys"][1]["certificate_pem"].encode())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert not message.verify_signature()
    assert (
        cert_app.client.post("/api/verify", json={"hc1": forged}).json()["reason"].startswith("bad signature")
    )


def test_pycose_verifies_ps256(sqlite_url: str, tmp_path: Path) -> None:
    for app in start_app(make_settings(sqlite_url, tmp_path / "data", cert_signing_alg="PS256")):
        person = app.seed((BINH,))[BINH.national_id]
        issued = app.call(app.service.issue, person, app.doses(person))
        dcc = verify_like_a_checkpoint(issued.hc1, app.client.get("/api/certificates/keys").json())
        assert dcc["v"][0]["mp"] == "BBIBP-CorV"
