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
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certificates.keys import KeyFileError
from certificates.verification import (
    BAD_BASE45,
    BAD_SIGNATURE,
    BAD_ZLIB,
    EXPIRED,
    NOT_COSE,
    NOT_HC1,
    NOT_YET_VALID,
    SCHEMA,
    UNKNOWN_SIGNER,
    WRONG_TAG,
    VerificationResult,
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


@pytest.fixture(scope="module")
def trusting_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertApp]:
    """One app for the whole module, its trust list holding every vector's signer certificate."""
    base = tmp_path_factory.mktemp("conformance")
    database = base / "vaxchannel.db"
    database.write_bytes(sqlite_template.read_bytes())
    for app in start_app(make_settings(f"sqlite:///{database}", base / "data")):
        for _name, vector in VECTORS:
            try:
                app.service.trust.add(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
            except KeyFileError:
                pass  # e.g. a P-384 signer: not an accepted document-signer key
        yield app


def test_the_data_set_is_there() -> None:
    assert len(VECTORS) == 581, "../shared/conformance/dgc-testdata is missing or incomplete"
    by_name = dict(VECTORS)
    assert "EXPECTEDVERIFY" not in by_name["ES/2DCode/raw/401.json"]["EXPECTEDRESULTS"]  # a known issue
    assert "EXPECTEDVERIFY" in by_name["ES/2DCode/raw/1101.json"]["EXPECTEDRESULTS"]


@pytest.mark.parametrize(("name", "vector"), VECTORS, ids=[n for n, _ in VECTORS])
def test_vector(trusting_app: CertApp, name: str, vector: dict) -> None:
    expected = vector["EXPECTEDRESULTS"]
    result: VerificationResult = trusting_app.call(
        trusting_app.service.verify, vector["PREFIX"], validation_clock(vector)
    )
    why = f"{name}: {result.reason} ({vector['TESTCTX'].get('DESCRIPTION')})"
    if expected.get("EXPECTEDVERIFY") is True:
        assert result.signature_valid is True, why
    if expected.get("EXPECTEDVERIFY") is False:
        assert not result.valid, why
        assert result.code in (BAD_SIGNATURE, UNKNOWN_SIGNER, NOT_COSE, "signer not allowed"), why
    if expected.get("EXPECTEDUNPREFIX") is False:
        assert not result.valid and result.code == NOT_HC1, why
    if expected.get("EXPECTEDB45DECODE") is False:
        assert not result.valid and result.code == BAD_BASE45, why
    if expected.get("EXPECTEDCOMPRESSION") is False:
        assert not result.valid and result.code == BAD_ZLIB, why
    if expected.get("EXPECTEDDECODE") is False:
        assert not result.valid and result.code in (NOT_COSE, WRONG_TAG, SCHEMA), why
    if expected.get("EXPECTEDEXPIRATIONCHECK") is False:
        assert not result.valid and result.code in (EXPIRED, NOT_YET_VALID), why
    if expected.get("EXPECTEDEXPIRATIONCHECK") is True:
        assert result.code not in (EXPIRED, NOT_YET_VALID), why
        if (
            expected.get("EXPECTEDVERIFY") is True
            and expected.get("EXPECTEDKEYUSAGE") is not False
            and "EXPECTEDSCHEMAVALIDATION" not in vector["DISOWNED"]
        ):
            assert result.valid, why
            assert result.holder_name and result.date_of_birth is not None, why


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
