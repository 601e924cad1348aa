"""`python main.py certificate|keys|trust` through main(), with real files and a real database."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from certificates.keys import DocumentSignerStore
from db.base import make_async_engine
from main import main
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from tests.certificates.conftest import AN, CUONG
from tests.shared_data import CONFORMANCE

SHARED = CONFORMANCE


@pytest.fixture
def environment(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DATA_DIR", str(data))

    async def seed() -> None:
        engine = make_async_engine(sqlite_url)
        await load_demo(EmbeddedRegistry(engine), ordinary=0)
        await engine.dispose()

    asyncio.run(seed())
    return data


def test_certificate_command(environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "an.png"
    assert main(["certificate", AN.national_id, AN.date_of_birth.isoformat(), "--png", str(png)]) == 0
    out, err = capsys.readouterr()
    hc1 = out.strip()
    assert hc1.startswith("HC1:") and "\n" not in hc1
    assert "URN:UVCI:01:VN:" in err
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.read_bytes())))
    assert barcode.text == hc1

    assert main(["certificate", AN.national_id, AN.date_of_birth.isoformat()]) == 0
    assert capsys.readouterr().out.strip() == hc1  # same data, same certificate


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((CUONG.national_id, CUONG.date_of_birth.isoformat()), "no dose on record"),
        ((AN.national_id, "1985-03-15"), "No person with national ID 001******345"),
        (("123", "1985-03-14"), "is not a national ID"),
        ((AN.national_id, "14/03/1985"), "YYYY-MM-DD"),
    ],
    ids=["no dose", "no such person", "bad id", "bad date"],
)
def test_certificate_command_failures(
    environment: Path, args: tuple[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certificate", *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_keys_rotate_and_list(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 0
    first = capsys.readouterr().out
    assert main(["keys", "rotate"]) == 0
    rotated = capsys.readouterr().out
    assert "signs new certificates" in rotated
    store = DocumentSignerStore(environment, "ES256", 365)
    live = store.live()
    assert len(live) == 2 and store.current().kid == live[0].kid
    assert live[1].kid_b64 in first and live[0].kid_b64 in rotated
    key_files = sorted((environment / "certificates" / "signers").glob("*.key.pem"))
    assert len(key_files) == 2 and all(f.stat().st_mode & 0o077 == 0 for f in key_files)


def test_trust_add_and_list(environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trust", "list"]) == 0
    assert "empty" in capsys.readouterr().out

    vector = json.loads((SHARED / "dgc-testdata" / "common" / "2DCode" / "raw" / "CO1.json").read_text())
    der = base64.b64decode(vector["TESTCTX"]["CERTIFICATE"])
    pem = tmp_path / "foreign.pem"
    body = base64.encodebytes(der).decode()
    pem.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    assert main(["trust", "add", str(pem)]) == 0
    added = capsys.readouterr().out
    assert "Trusted:" in added and "RSA 2048" in added
    assert main(["trust", "list"]) == 0
    listed = capsys.readouterr().out
    assert "(1)" in listed and "RSA 2048" in listed

    not_a_cert = tmp_path / "junk.pem"
    not_a_cert.write_text("hello")
    assert main(["trust", "add", str(not_a_cert)]) == 1
    assert "not an X.509 certificate" in capsys.readouterr().err
    assert main(["trust", "add", str(tmp_path / "missing.pem")]) == 1
    assert "Cannot read" in capsys.readouterr().err


def test_a_running_service_notices_keys_rotated_by_another_process(tmp_path: Path) -> None:
    running = DocumentSignerStore(tmp_path, "ES256", 365, refresh_seconds=0)
    before = running.current()
    other_process = DocumentSignerStore(tmp_path, "ES256", 365)
    assert other_process.current().kid == before.kid  # the same key file, not a second key
    rotated = other_process.rotate()
    assert running.current().kid == rotated.kid != before.kid
    assert [k.kid for k in running.live()] == [rotated.kid, before.kid]
    assert running.by_kid(before.kid) and running.by_kid(rotated.kid)


def test_certificate_command_takes_ddmmyyyy_like_every_channel(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certificate", AN.national_id, AN.date_of_birth.isoformat()]) == 0
    iso = capsys.readouterr().out.strip()
    assert main(["certificate", AN.national_id, AN.date_of_birth.strftime("%d%m%Y")]) == 0
    assert capsys.readouterr().out.strip() == iso
    assert main(["certificate", AN.national_id, "31021985"]) == 1  # no such day
    assert "DDMMYYYY" in capsys.readouterr().err


def test_certificate_command_says_when_the_stored_certificate_has_an_old_key(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certificate", AN.national_id, AN.date_of_birth.isoformat()]) == 0
    first, err = capsys.readouterr()
    assert "no longer signs" not in err
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["certificate", AN.national_id, AN.date_of_birth.isoformat()]) == 0
    again, err = capsys.readouterr()
    assert again == first and "no longer signs new certificates" in err


def test_trust_add_refuses_our_own_signer(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = DocumentSignerStore(environment, "ES256", 365).current()
    pem = environment / "own.pem"
    pem.write_text(own.certificate_pem)
    assert main(["trust", "add", str(pem)]) == 1
    err = capsys.readouterr().err
    assert "own document-signer certificate" in err and own.kid_b64 in err
    assert main(["trust", "list"]) == 0
    assert "empty" in capsys.readouterr().out
