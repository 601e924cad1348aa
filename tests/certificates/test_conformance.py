"""EU DCC public test vectors (dgc-testdata) and Viet Nam's production sample, read from ../shared.

Every vector's signer certificate (TESTCTX.CERTIFICATE) goes into the trust list of one running
app; each vector is verified at its validation clock. The data set's own `tests/known_issues.csv`
names (test, country, test set) triples known to be wrong; an empty test set means every vector
of that country. A listed vector is not held to the expectations of the listed test (data-driven:
the check is left out, nothing is skipped).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, UnidentifiedImageError

from certificates.keys import KeyFileError, SignerKey, check_signer_key, kid_of, load_certificate
from certificates.verification import (
    BAD_BASE45,
    BAD_SIGNATURE,
    BAD_ZLIB,
    EXPIRED,
    NOT_COSE,
    NOT_HC1,
    NOT_YET_VALID,
    SCHEMA,
    SIGNER_NOT_ALLOWED,
    UNKNOWN_SIGNER,
    VALID,
    WRONG_TAG,
    VerificationResult,
    Verifier,
)
from tests.certificates.conftest import CertApp, make_settings, start_app
from tests.shared_data import CONFORMANCE

SHARED = CONFORMANCE
DGC = SHARED / "dgc-testdata"
VN_SAMPLE = SHARED / "vn-sample" / "VAC_VN.hc1.txt"


# known_issues.csv test name -> the expectations it is about
KNOWN_ISSUE_CHECKS = {
    "test_verification_check": {"EXPECTEDVERIFY"},
    "test_expiration_check": {"EXPECTEDEXPIRATIONCHECK"},
    "test_expected_key_usage": {"EXPECTEDKEYUSAGE"},
    "test_cose_schema": {"EXPECTEDSCHEMAVALIDATION"},
    "test_cose_json": {"EXPECTEDDECODE", "EXPECTEDVALIDJSON"},
    "test_cbor_json": {"EXPECTEDDECODE", "EXPECTEDVALIDJSON"},
}


def _known_issues() -> list[tuple[str, str, str]]:
    with open(DGC / "tests" / "known_issues.csv", newline="", encoding="utf-8") as handle:
        return [
            (r["test_name"].strip(), r["country"].strip(), r["test_set"].strip())
            for r in csv.DictReader(handle)
        ]


def _vectors() -> list[tuple[str, dict]]:
    """Every vector, its EXPECTEDRESULTS minus the expectations known_issues.csv disowns."""
    known = _known_issues()
    vectors = []
    for path in sorted(DGC.rglob("*.json")):
        if path.parent.name.lower() != "raw" or path.parent.parent.name.lower() != "2dcode":
            continue
        rel = path.relative_to(DGC)
        country, test_set = rel.parts[0], path.stem
        vector = json.loads(path.read_text(encoding="utf-8"))
        disowned = set().union(
            *(
                KNOWN_ISSUE_CHECKS.get(test, {test})
                for test, c, s in known
                if c == country and s in ("", test_set)
            )
        )
        vector["EXPECTEDRESULTS"] = {k: v for k, v in vector["EXPECTEDRESULTS"].items() if k not in disowned}
        vector["DISOWNED"] = sorted(disowned)
        vectors.append((str(rel), vector))
    return vectors


VECTORS = _vectors()


def validation_clock(vector: dict) -> datetime:
    context = vector["TESTCTX"]
    raw = context.get("VALIDATIONCLOCK") or context.get("validationClockInstant")
    at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# The stages of a verification, in order: the answers that contradict "this stage passed", and
# the answers that show "this stage failed" (a DCC that does not decode is reported as a schema
# problem; a CWT that is not a COSE_Sign1 cannot be verified).
STAGES: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("EXPECTEDUNPREFIX", frozenset({NOT_HC1}), frozenset({NOT_HC1})),
    ("EXPECTEDB45DECODE", frozenset({BAD_BASE45}), frozenset({BAD_BASE45})),
    ("EXPECTEDCOMPRESSION", frozenset({BAD_ZLIB}), frozenset({BAD_ZLIB})),
    ("EXPECTEDDECODE", frozenset({NOT_COSE, WRONG_TAG}), frozenset({NOT_COSE, WRONG_TAG, SCHEMA})),
    ("EXPECTEDVALIDOBJECT", frozenset({NOT_COSE, WRONG_TAG}), frozenset({NOT_COSE, WRONG_TAG, SCHEMA})),
    (
        "EXPECTEDVERIFY",
        frozenset({BAD_SIGNATURE, UNKNOWN_SIGNER}),
        frozenset({BAD_SIGNATURE, UNKNOWN_SIGNER, NOT_COSE}),
    ),
    ("EXPECTEDSCHEMAVALIDATION", frozenset({SCHEMA}), frozenset({SCHEMA})),
    ("EXPECTEDKEYUSAGE", frozenset({SIGNER_NOT_ALLOWED}), frozenset({SIGNER_NOT_ALLOWED})),
    ("EXPECTEDEXPIRATIONCHECK", frozenset({EXPIRED, NOT_YET_VALID}), frozenset({EXPIRED, NOT_YET_VALID})),
)
PASS_CONTRADICTED = {key: codes for key, codes, _ in STAGES}
FAILED_AS = {key: codes for key, _, codes in STAGES}
DECODED = frozenset(
    {BAD_SIGNATURE, UNKNOWN_SIGNER, SCHEMA, SIGNER_NOT_ALLOWED, EXPIRED, NOT_YET_VALID, VALID}
)
# Keys some vectors carry under another spelling (the data set's own runner ignores them).
ALIASES = {"EXPTECTEDEXPIRED": "EXPECTEDEXPIRATIONCHECK"}
# Signers the service refuses to trust, by contract (document signers are EC P-256 or RSA).
REFUSED_SIGNERS = {
    "ES/2DCode/raw/401.json": "secp384r1",
    "ES/2DCode/raw/402.json": "secp384r1",
    "ES/2DCode/raw/403.json": "secp384r1",
}
# Vectors that carry a picture expectation but no picture (2DCODE absent or empty): a defect of
# the data, counted per country in test_the_data_set_is_there so that the list cannot grow unseen.
NO_PICTURE = {
    name for name, v in VECTORS if not v.get("2DCODE") and "EXPECTEDPICTUREDECODE" in v["EXPECTEDRESULTS"]
}
NO_PICTURE_PER_COUNTRY = {"FR": 21, "IE": 4, "LV": 3, "common": 1}
_VALUE_SETS = "value sets (test device, country, manufacturer) are not checked; structure is"
# Expectations this verifier does not meet, each with the reason. The test demands that exactly
# these fail: meeting one of them (or failing another) fails the test until this table is updated.
KNOWN_GAPS: dict[str, dict[str, str]] = {
    **{
        f"PL/{version}/2DCode/raw/{n}.json": {"EXPECTEDSCHEMAVALIDATION": _VALUE_SETS}
        for version in ("1.0.0", "1.2.1", "1.3.0")
        for n in (7, 8, 9)
    },
    "PL/1.3.0/2DCode/raw/1.json": {
        "EXPECTEDVALIDJSON": "a defect of the vector: its JSON is another person's (Akdi Omar, 1974) than its "
        "payload (Rogaliński-Król, 1958)"
    },
    "IS/2DCode/raw/3.json": {
        "EXPECTEDKEYUSAGE": "a signer without extended key usage may sign every type (HCERT 5.1.1); "
        "the vector itself says the certificate is valid"
    },
}


@pytest.fixture(scope="module")
def trusting_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertApp]:
    """One app for the whole module, its trust list holding every vector's signer certificate.
    A signer that cannot be loaded fails here, unless the contract refuses it (REFUSED_SIGNERS)."""
    base = tmp_path_factory.mktemp("conformance")
    database = base / "vaxchannel.db"
    database.write_bytes(sqlite_template.read_bytes())
    for app in start_app(make_settings(f"sqlite:///{database}", base / "data")):
        refused: dict[str, str] = {}
        for name, vector in VECTORS:
            try:
                app.service.trust.add(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
            except KeyFileError as exc:
                refused[name] = str(exc)
        assert set(refused) == set(REFUSED_SIGNERS), refused
        for name, why in REFUSED_SIGNERS.items():
            assert why in refused[name], refused[name]
        yield app


def test_the_data_set_is_there() -> None:
    assert len(VECTORS) == 581, "../shared/conformance/dgc-testdata is missing or incomplete"
    by_name = dict(VECTORS)
    assert "EXPECTEDVERIFY" not in by_name["ES/2DCode/raw/401.json"]["EXPECTEDRESULTS"]  # a known issue
    assert "EXPECTEDVERIFY" in by_name["ES/2DCode/raw/1101.json"]["EXPECTEDRESULTS"]
    assert Counter(name.split("/")[0] for name in NO_PICTURE) == NO_PICTURE_PER_COUNTRY
    carried = {ALIASES.get(k, k) for _, v in VECTORS for k in v["EXPECTEDRESULTS"]}
    assert carried <= set(FAILED_AS) | {
        "EXPECTEDPICTUREDECODE",
        "EXPECTEDVALIDJSON",
        "EXPECTEDENCODE",
        "EXPECTEDRESULTS",
    }, carried  # every expectation the data carries has a check below


class OwnSignerOnly:
    """A key ring holding the vector's own signer certificate (none when the contract refuses it)."""

    def __init__(self, vector: dict) -> None:
        self.keys: list[SignerKey] = []
        try:
            cert = load_certificate(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
            check_signer_key(cert)
        except KeyFileError:
            return
        self.keys.append(SignerKey(kid_of(cert), cert, None, "trusted"))

    def by_kid(self, kid: bytes) -> list[SignerKey]:
        return [key for key in self.keys if key.kid == kid]


def picture_text(vector: dict) -> str | None:
    """What a QR reader finds in the vector's PNG (None: no code found)."""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(vector["2DCODE"])))
    except UnidentifiedImageError:  # not a picture at all: nothing can be read from it
        return None
    found = zxingcpp.read_barcodes(image)
    return found[0].text if found else None


def decoded_as_given(vector: dict, result: VerificationResult) -> bool:
    """The holder and certificate identifier we decoded are those of the vector's JSON."""
    given = vector.get("JSON")
    if not isinstance(given, dict) or result.code not in DECODED:
        return False
    entries = [e for k in ("v", "t", "r") for e in given.get(k) or []]
    ids = tuple(e["ci"] for e in given.get("v") or [] if e.get("ci"))
    return result.date_of_birth == given.get("dob") and bool(entries) and result.certificate_ids == ids


def failed_expectations(name: str, vector: dict, result: VerificationResult) -> dict[str, str]:
    """Every expectation the vector carries, checked; the ones not met, with what happened."""
    expected = {ALIASES.get(k, k): v for k, v in vector["EXPECTEDRESULTS"].items()}
    failed: dict[str, str] = {}
    first_failing = next((key for key, _, _ in STAGES if expected.get(key) is False), None)
    for key, value in expected.items():
        if key in FAILED_AS:
            if value is True and result.code in PASS_CONTRADICTED[key]:
                failed[key] = f"expected to pass, got {result.reason}"
            if value is False and result.valid:
                failed[key] = "expected to fail, got valid"
            elif value is False and key == first_failing and result.code not in FAILED_AS[key]:
                failed[key] = f"expected {sorted(FAILED_AS[key])}, got {result.reason}"
        elif key == "EXPECTEDPICTUREDECODE":
            if name in NO_PICTURE:
                continue  # nothing to read; listed and asserted in test_the_data_set_is_there
            if (picture_text(vector) == vector["PREFIX"]) is not value:
                failed[key] = f"QR picture decodes to the HC1 string: expected {value}"
        elif key in ("EXPECTEDVALIDJSON", "EXPECTEDENCODE"):
            if decoded_as_given(vector, result) is not value:
                failed[key] = f"decoded holder/ids match the JSON: expected {value}, got {result.reason}"
        elif key == "EXPECTEDRESULTS":
            if result.valid is not value:
                failed[key] = f"expected valid={value}, got {result.reason}"
        else:
            failed[key] = "no check for this expectation"
    return failed


@pytest.mark.parametrize(("name", "vector"), VECTORS, ids=[n for n, _ in VECTORS])
def test_vector(name: str, vector: dict) -> None:
    """The vector verified by the service's Verifier trusting its own signer (TESTCTX.CERTIFICATE)
    and nothing else: vectors like PL 6 are about a certificate signed by another signer."""
    result = Verifier(OwnSignerOnly(vector)).check(vector["PREFIX"], validation_clock(vector))  # type: ignore[arg-type]
    why = f"{name}: {result.reason} ({vector['TESTCTX'].get('DESCRIPTION')})"
    if name in REFUSED_SIGNERS:
        assert result.code == UNKNOWN_SIGNER, why
    failed = failed_expectations(name, vector, result)
    assert set(failed) == set(KNOWN_GAPS.get(name, {})), (why, failed)
    if result.valid:
        assert result.holder_name and result.date_of_birth, why


def test_a_few_vectors_over_http(trusting_app: CertApp) -> None:
    by_name = dict(VECTORS)
    for name, valid, reason in (
        ("common/2DCode/raw/CO1.json", True, "valid"),  # RSA 2048 (PS256)
        ("common/2DCode/raw/CO3.json", True, "valid"),  # EC P-256
        ("common/2DCode/raw/CO28.json", True, "valid"),  # CWT tag 61 around COSE_Sign1
        ("common/2DCode/raw/CO5.json", False, "bad signature"),
        ("common/2DCode/raw/H2.json", False, "not HC1"),
        ("common/2DCode/raw/Z2.json", False, "bad zlib"),
    ):
        vector = by_name[name]
        at = validation_clock(vector).isoformat()
        response = trusting_app.client.post("/api/verify", json={"hc1": vector["PREFIX"], "at": at})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"valid", "reason", "holder", "vaccinations"}
        assert body["valid"] is valid and body["reason"].startswith(reason), (name, body["reason"])


def test_viet_nam_production_sample_decodes_with_unknown_signer(trusting_app: CertApp) -> None:
    hc1 = VN_SAMPLE.read_text(encoding="utf-8").strip()
    body = trusting_app.client.post("/api/verify", json={"hc1": hc1}).json()
    assert body["valid"] is False
    assert body["reason"] == "unknown signer"
    assert body["holder"] == {"name": "Nguyễn Bảo Duy", "date_of_birth": "1983-10-10"}
    [v] = body["vaccinations"]
    assert v == {
        "dose_number": 2,
        "total_doses": 2,
        "date": "2021-03-18",
        "product": "EU/1/21/1529",
        "country": "VN",
        "certificate_id": "URN:UVCI:01:VN:FFFE3D31FABD035899134A9D3BAE9BCF",
    }
