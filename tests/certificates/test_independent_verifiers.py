"""Every certificate the service issues, ES256 and PS256, is checked by two verifiers that share
no code with the project, fed only GET /api/certificates/keys:

- `@pathcheck/dcc-sdk` (npm; tests/dcc_verifier/verify.mjs, installed by `npm ci --prefix
  tests/dcc_verifier`),
- `dcc-utils` (PyPI, with its own COSE library; tests/dcc_verifier/dcc_utils_verify.py, installed
  apart by .ci/run because it pins old dependencies) — the verifier that crashed with
  `OverflowError: int too big to convert` on the RSA-3072 keys of issue 13,

and the payload validates against the EU DCC JSON schema (ehn-dcc-schema 1.3.3, combined file in
tests/certificates/data). The dose histories cover a single dose, a complete series, a booster
after a one-dose product (2/1) and a gap (1 + "3")."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import date as D
from pathlib import Path

import base45
import cbor2
import jsonschema_rs
import pytest

from certificates import hcert
from registry_client.embedded.demo import DemoPerson
from registry_client.models import Sex
from tests.certificates.conftest import CertApp, make_settings, start_app

HERE = Path(__file__).resolve().parent
VERIFIERS = HERE.parent / "dcc_verifier"
SCHEMA = json.loads((HERE / "data" / "DCC.combined-schema.json").read_text())
PFIZER, JANSSEN = "EU/1/20/1528", "EU/1/20/1525"

PEOPLE = (
    DemoPerson(
        "history",
        "210000101",
        D(1990, 1, 2),
        "Đỗ Thị Một",
        Sex.FEMALE,
        "+84912000101",
        ((1, PFIZER, D(2021, 7, 1), "HN001", "L1"),),
    ),
    DemoPerson(
        "history",
        "210000102",
        D(1991, 2, 3),
        "Đỗ Văn Hai",
        Sex.MALE,
        "+84912000102",
        ((1, PFIZER, D(2021, 7, 1), "HN001", "L1"), (2, PFIZER, D(2021, 7, 29), "HN001", "L2")),
    ),
    DemoPerson(
        "history",
        "210000103",
        D(1992, 3, 4),
        "Đỗ Thị Ba",
        Sex.FEMALE,
        "+84912000103",
        ((1, JANSSEN, D(2021, 8, 1), "HN001", "J1"), (2, PFIZER, D(2022, 1, 10), "HN001", "L3")),
    ),
    DemoPerson(
        "history",
        "210000104",
        D(1993, 4, 5),
        "Lê Văn Bốn",
        Sex.MALE,
        "+84912000104",
        ((1, PFIZER, D(2021, 8, 2), "HN001", "L1"), (3, PFIZER, D(2022, 3, 1), "HN001", "L4")),
    ),
)
EXPECTED_DN_SD = {"210000101": (1, 2), "210000102": (2, 2), "210000103": (2, 1), "210000104": (2, 2)}


def _need(path: Path, how: str) -> None:
    if not path.exists():
        pytest.fail(f"the independent verifier is not installed ({path}): {how}")


def pathcheck(hc1: str, keys: dict) -> dict:
    _need(VERIFIERS / "node_modules" / "@pathcheck" / "dcc-sdk", "npm ci --prefix tests/dcc_verifier")
    done = subprocess.run(
        ["node", "--experimental-detect-module", "--import", "./register.mjs", "verify.mjs"],
        cwd=VERIFIERS,
        input=json.dumps({"hc1": hc1, "keys": keys["keys"]}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def dcc_utils(hc1: str, certificate_pem: str) -> dict:
    _need(
        VERIFIERS / "site" / "dcc_utils", "see tests/dcc_verifier/dcc_utils_verify.py (.ci/run installs it)"
    )
    done = subprocess.run(
        [sys.executable, str(VERIFIERS / "dcc_utils_verify.py")],
        input=json.dumps({"hc1": hc1, "certificate_pem": certificate_pem}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["ES256", "PS256"])
def signing_app(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path) -> Iterator[CertApp]:
    yield from start_app(make_settings(sqlite_url, tmp_path / "data", cert_signing_alg=request.param))


def test_two_independent_verifiers_and_the_schema_accept_every_certificate(signing_app: CertApp) -> None:
    people = signing_app.seed(PEOPLE)
    keys = signing_app.client.get("/api/certificates/keys").json()
    [published] = keys["keys"]
    validator = jsonschema_rs.validator_for(SCHEMA)
    for national_id, person in people.items():
        issued = signing_app.call(signing_app.service.issue, person, signing_app.doses(person))
        payload = cbor2.loads(hcert.decode_hc1(issued.hc1).cose.payload)[-260][1]
        errors = [e.message for e in validator.iter_errors(payload)]
        assert errors == [], (national_id, errors)
        entry = payload["v"][0]
        assert (entry["dn"], entry["sd"]) == EXPECTED_DN_SD[national_id]

        by_pathcheck = pathcheck(issued.hc1, keys)
        assert by_pathcheck["status"] == "verified", by_pathcheck
        assert by_pathcheck["dcc"]["v"][0]["ci"] == issued.uvci
        assert (by_pathcheck["dcc"]["v"][0]["dn"], by_pathcheck["dcc"]["v"][0]["sd"]) == EXPECTED_DN_SD[
            national_id
        ]

        by_dcc_utils = dcc_utils(issued.hc1, published["certificate_pem"])
        assert by_dcc_utils.get("signature_valid") is True, by_dcc_utils
        assert by_dcc_utils["dcc"]["v"][0]["ci"] == issued.uvci


def test_a_tampered_certificate_is_refused_by_both(signing_app: CertApp) -> None:
    """The verifiers can say no: one flipped bit in the signature fails both."""
    [person] = signing_app.seed(PEOPLE[:1]).values()
    issued = signing_app.call(signing_app.service.issue, person, signing_app.doses(person))
    keys = signing_app.client.get("/api/certificates/keys").json()
    cose = bytearray(zlib.decompress(base45.b45decode(issued.hc1[4:])))
    cose[-1] ^= 0x01  # the last byte of the signature
    forged = "HC1:" + base45.b45encode(zlib.compress(bytes(cose))).decode()
    assert pathcheck(issued.hc1, keys)["status"] == "verified"
    assert pathcheck(forged, keys)["status"] != "verified"
    assert dcc_utils(forged, keys["keys"][0]["certificate_pem"]).get("signature_valid") is not True
