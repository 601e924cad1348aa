"""Issuing and verifying: QR round trip, reuse, reissue and revocation, key rotation, expiry, PS256."""

from __future__ import annotations

import base64
import io
import zlib
from datetime import date, timedelta
from pathlib import Path

import base45
import cbor2
import pytest
import zxingcpp
from PIL import Image

from certificates import uvci, valuesets
from certificates.names import dcc_name, icao_transliterate
from certificates.service import SUPERSEDED, NoDoses
from certificates.verification import EXPIRED, NOT_YET_VALID, REVOKED, VALID
from registry_client.models import DoseSource, NewDose
from registry_client.vaccines import lookup_product
from tests.certificates.conftest import AN, BINH, CUONG, CertApp, make_settings, start_app


def claims_of(hc1: str) -> dict:
    message = cbor2.loads(zlib.decompress(base45.b45decode(hc1[4:])))
    assert message.tag == 18
    protected, _unprotected, payload, _signature = message.value
    return {"protected": cbor2.loads(protected), "claims": cbor2.loads(payload)}


def test_round_trip_through_the_qr_image(cert_app: CertApp) -> None:
    people = cert_app.seed((AN,))
    person = people[AN.national_id]
    doses = cert_app.doses(person)
    issued = cert_app.call(cert_app.service.issue, person, doses)

    image = Image.open(io.BytesIO(issued.png))
    assert image.format == "PNG" and image.width >= 500
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1
    assert found[0].text == issued.hc1
    assert found[0].extra["ECLevel"] == "Q"
    assert int(found[0].extra["Version"]) in (17, 18)

    result = cert_app.call(cert_app.service.verify, found[0].text)
    assert result.valid and result.code == VALID, result.reason
    assert result.holder_name == "Nguyễn Văn An"
    assert result.date_of_birth == person.date_of_birth.isoformat()
    latest = doses[-1]
    [v] = result.vaccinations
    assert (v.dose_number, v.total_doses) == (3, 3)
    assert v.date == latest.administered_on.isoformat()
    assert v.product == latest.product == "EU/1/20/1528"
    assert v.country == "VN"
    assert v.certificate_id == issued.uvci
    assert [d.dose_number for d in issued.doses] == [1, 2, 3]


def test_payload_follows_the_dcc_schema_and_value_sets(cert_app: CertApp) -> None:
    person = cert_app.seed((BINH,))[BINH.national_id]
    issued = cert_app.call(cert_app.service.issue, person, cert_app.doses(person))
    decoded = claims_of(issued.hc1)
    assert decoded["protected"] == {1: -7, 4: base64.b64decode(issued.kid)}
    claims = decoded["claims"]
    assert claims[1] == "VN"
    assert claims[4] - claims[6] == 365 * 86400
    dcc = claims[-260][1]
    assert dcc["ver"] == "1.3.0"
    assert dcc["dob"] == "1990-07-21"
    assert dcc["nam"] == {"fn": "Trần", "fnt": "TRAN", "gn": "Thị Bình", "gnt": "THI<BINH"}
    [v] = dcc["v"]
    assert v["tg"] == "840539006"
    assert v["mp"] == "BBIBP-CorV" and v["ma"] == "ORG-100020693" and v["vp"] == valuesets.INACTIVATED
    assert (v["dn"], v["sd"]) == (1, 2)
    assert v["ci"] == issued.uvci and uvci.has_valid_checksum(issued.uvci)
    assert issued.uvci.startswith("URN:UVCI:01:VN:")


def test_icao_transliteration_of_vietnamese_names() -> None:
    assert dcc_name("Nguyễn Văn Ánh") == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn Ánh", "gnt": "VAN<ANH"}
    assert icao_transliterate("Đặng Thị Đào") == "DANG<THI<DAO"
    assert icao_transliterate("Phạm Minh Đức") == "PHAM<MINH<DUC"
    assert icao_transliterate("Huỳnh  Ngọc-Ẩn") == "HUYNH<NGOC<AN"
    assert icao_transliterate("Musterfrau-Gößinger") == "MUSTERFRAU<GOESSINGER"


def test_uvci_checksum_is_luhn_mod_38() -> None:
    # the reference implementation of the DCC schema repository gives 'Z' for this string
    assert uvci.check_character("URN:UVCI:01:NL:187/37512422923") == "Z"
    assert uvci.has_valid_checksum("URN:UVCI:01:NL:187/37512422923#Z")
    assert not uvci.has_valid_checksum("URN:UVCI:01:NL:187/37512422923#Y")
    assert not uvci.has_valid_checksum("URN:UVCI:01:NL:187/37512422932#Z")  # adjacent swap caught
    fresh = {uvci.new_uvci() for _ in range(200)}
    assert len(fresh) == 200 and all(uvci.has_valid_checksum(u) for u in fresh)


def test_registry_catalogue_takes_codes_from_the_value_sets() -> None:
    for name in (
        "AstraZeneca",
        "Pfizer",
        "Moderna",
        "Janssen",
        "Vero Cell",
        "Sputnik V",
        "Abdala",
        "Hayat-Vax",
    ):
        product = lookup_product(name)
        assert product is not None, name
        entry = valuesets.product(product.code)
        assert entry is not None, product.code
        assert (product.manufacturer, product.prophylaxis, product.series_doses) == (
            entry.manufacturer,
            entry.prophylaxis,
            entry.series_doses,
        )
        assert entry.manufacturer in valuesets.MANUFACTURERS
        assert entry.prophylaxis in valuesets.PROPHYLAXIS
    assert lookup_product("Sputnik V").manufacturer == "Gamaleya-Research-Institute"  # type: ignore[union-attr]
    assert lookup_product("CIGB-66").code == "Abdala"  # type: ignore[union-attr]
    assert lookup_product("interval?") is None


def test_same_data_reuses_the_certificate_and_a_correction_revokes_it(cert_app: CertApp) -> None:
    person = cert_app.seed((AN,))[AN.national_id]
    service = cert_app.service
    first = cert_app.call(service.issue, person, cert_app.doses(person))
    again = cert_app.call(service.issue, person, cert_app.doses(person))
    assert again.reused and again.uvci == first.uvci and again.hc1 == first.hc1

    corrected = NewDose(3, "Moderna", date(2022, 3, 11), "HN002", "MD-9", source=DoseSource.CORRECTION)
    cert_app.call(cert_app.registry.record_dose, person.id, corrected)
    second = cert_app.call(service.issue, person, cert_app.doses(person))
    assert not second.reused and second.uvci != first.uvci

    old = cert_app.call(service.verify, first.hc1)
    assert not old.valid and old.code == REVOKED
    assert old.reason == f"revoked: {SUPERSEDED}"
    assert old.holder_name == "Nguyễn Văn An"  # still readable
    new = cert_app.call(service.verify, second.hc1)
    assert new.valid and new.vaccinations[0].product == "EU/1/20/1507"

    current = cert_app.call(service.current_for_person, person.id)
    assert current.uvci == second.uvci and current.status(new.issued_at) == "valid"
    revoked = cert_app.call(service.find_by_uvci, first.uvci)
    assert revoked.status(new.issued_at + timedelta(seconds=1)) == "revoked"
    assert revoked.revoke_reason == SUPERSEDED
    assert cert_app.call(service.find_by_uvci, "URN:UVCI:01:VN:NOPE#A") is None

    response = cert_app.client.post("/api/verify", json={"hc1": first.hc1})
    assert response.status_code == 200
    assert response.json()["valid"] is False and response.json()["reason"].startswith("revoked")


def test_no_dose_means_no_certificate(cert_app: CertApp) -> None:
    person = cert_app.seed((CUONG,))[CUONG.national_id]
    try:
        cert_app.call(cert_app.service.issue, person, [])
    except NoDoses as exc:
        assert "no dose" in str(exc)
    else:
        raise AssertionError("NoDoses expected")


def test_expiry_and_not_yet_valid_at_other_instants(cert_app: CertApp) -> None:
    person = cert_app.seed((BINH,))[BINH.national_id]
    issued = cert_app.call(cert_app.service.issue, person, cert_app.doses(person))
    verify = cert_app.service.verify
    assert cert_app.call(verify, issued.hc1, issued.expires_at).valid  # the last valid second
    late = cert_app.call(verify, issued.hc1, issued.expires_at + timedelta(seconds=1))
    assert not late.valid and late.code == EXPIRED
    early = cert_app.call(verify, issued.hc1, issued.issued_at - timedelta(days=1))
    assert not early.valid and early.code == NOT_YET_VALID

    at = (issued.expires_at + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    body = cert_app.client.post("/api/verify", json={"hc1": issued.hc1, "at": at}).json()
    assert body["valid"] is False and body["reason"].startswith("expired")


def test_key_rotation_keeps_old_certificates_verifying(cert_app: CertApp) -> None:
    people = cert_app.seed((AN, BINH))
    service = cert_app.service
    an, binh = people[AN.national_id], people[BINH.national_id]
    before = cert_app.call(service.issue, an, cert_app.doses(an))
    old_kid = before.kid

    new_key = service.signers.rotate()
    after = cert_app.call(service.issue, binh, cert_app.doses(binh))
    assert after.kid == new_key.kid_b64 != old_kid
    assert claims_of(after.hc1)["protected"][4] == new_key.kid

    assert cert_app.call(service.verify, before.hc1).valid
    assert cert_app.call(service.verify, after.hc1).valid
    kids = [k["kid"] for k in cert_app.client.get("/api/certificates/keys").json()["keys"]]
    assert kids == [new_key.kid_b64, old_kid]  # newest first, the old one still published

    again = cert_app.call(service.issue, an, cert_app.doses(an))
    assert again.reused and again.kid == old_kid  # nothing changed: the old certificate stands


def test_ps256_signer(sqlite_url: str, tmp_path: Path) -> None:
    for app in start_app(make_settings(sqlite_url, tmp_path / "data", cert_signing_alg="PS256")):
        person = app.seed((BINH,))[BINH.national_id]
        issued = app.call(app.service.issue, person, app.doses(person))
        assert claims_of(issued.hc1)["protected"][1] == -37
        assert app.call(app.service.verify, issued.hc1).valid
        [key] = app.client.get("/api/certificates/keys").json()["keys"]
        assert key["kid"] == issued.kid and "BEGIN CERTIFICATE" in key["certificate_pem"]
        # HCERT §3.3.2 fixes RSA-PSS at 2048 bits (it was 3072, which dcc-utils cannot verify)
        assert app.service.signers.current().public_key.key_size == 2048  # type: ignore[union-attr]


def test_a_3072_bit_signer_keeps_verifying_after_rotation_to_2048(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certificates import keys

    monkeypatch.setattr(keys, "RSA_SIGNER_BITS", 3072)  # a key made before the change
    for app in start_app(make_settings(sqlite_url, tmp_path / "data", cert_signing_alg="PS256")):
        person = app.seed((BINH,))[BINH.national_id]
        old = app.call(app.service.issue, person, app.doses(person))
        assert app.service.signers.current().public_key.key_size == 3072  # type: ignore[union-attr]
        monkeypatch.setattr(keys, "RSA_SIGNER_BITS", 2048)
        assert app.service.signers.rotate().public_key.key_size == 2048  # type: ignore[union-attr]
        assert app.client.post("/api/verify", json={"hc1": old.hc1}).json()["valid"] is True
        assert len(app.client.get("/api/certificates/keys").json()["keys"]) == 2
