"""/verify photo uploads: the pixel budget is read from the header before anything is decoded.

The attack: a 170 KB PNG declaring 6300 × 6300 pixels, posted 24 times to `/verify`, took the
service process to 1.4 GB (each decode of the whole image is ~40 MB of grey pixels plus Pillow's
working copies, several at once). Now such a photo gets a clear 413 page without being decoded
and the process barely grows; decodes run a few at a time (busy → 503 + Retry-After); an honest
photo of a QR code is still read.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
import zxingcpp
from PIL import Image

from tests.certificates.conftest import CertApp, make_settings, start_app
from tests.security.running_service import running_service
from web import certificate_pages

MB = 1024 * 1024


def bomb_png(side: int = 6300) -> bytes:
    """A valid grey PNG of side × side pixels, all white: tiny on disk, huge once decoded."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" + b"\xff" * side) * side
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def qr_photo(text: str) -> bytes:
    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode)
    image = Image.fromarray(barcode.to_image(scale=8, add_quiet_zones=True))  # type: ignore[arg-type]
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_pixel_bomb_is_refused_before_decoding_and_memory_stays_flat(tmp_path: Path) -> None:
    bomb = bomb_png()
    assert len(bomb) < 200 * 1024 and Image.open(io.BytesIO(bomb)).size == (6300, 6300)
    with running_service(tmp_path, "--no-demo") as service:
        process = psutil.Process(service.pid)
        with httpx.Client(base_url=service.base, timeout=60) as client:
            warm = client.post("/verify", files={"photo": ("qr.png", qr_photo("HC1:warm-up"), "image/png")})
            assert warm.status_code == 200
        before = process.memory_info().rss

        def post(_: int) -> httpx.Response:
            with httpx.Client(base_url=service.base, timeout=60) as client:
                return client.post("/verify?lang=en", files={"photo": ("bomb.png", bomb, "image/png")})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(24)))
        after = process.memory_info().rss
        print(f"RSS before {before / MB:.0f} MB, after 24 bombs {after / MB:.0f} MB")
        assert {a.status_code for a in answers} == {413}
        assert "too many pixels" in answers[0].text and "Traceback" not in answers[0].text
        assert after - before < 60 * MB

        with httpx.Client(base_url=service.base, timeout=60) as client:  # the honest checkpoint
            honest = client.post(
                "/verify?lang=en", files={"photo": ("qr.png", qr_photo("HC1:NOT-A-REAL-ONE"), "image/png")}
            )
        assert honest.status_code == 200 and "No QR code found" not in honest.text
        assert "NOT VALID" in honest.text  # it was decoded and checked


@pytest.fixture
def cert_app(sqlite_url: str, tmp_path: Path) -> Iterator[CertApp]:
    yield from start_app(make_settings(sqlite_url, tmp_path / "data"))


@pytest.mark.parametrize("size", [(4001, 20), (20, 4001), (2100, 2000)])
def test_any_side_or_pixel_count_over_the_budget_gets_413(cert_app: CertApp, size: tuple[int, int]) -> None:
    out = io.BytesIO()
    Image.new("L", size, 255).save(out, "PNG")
    answer = cert_app.client.post("/verify", files={"photo": ("big.png", out.getvalue(), "image/png")})
    assert answer.status_code == 413 and "độ phân giải quá lớn" in answer.text


def test_not_an_image_is_a_400_page(cert_app: CertApp) -> None:
    answer = cert_app.client.post("/verify", files={"photo": ("x.png", b"%PDF-1.4 nope", "image/png")})
    assert answer.status_code == 400 and "không phải là ảnh" in answer.text


def test_when_every_decode_slot_is_busy_the_answer_is_503_with_retry_after(
    cert_app: CertApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certificate_pages, "DECODE_WAIT_SECONDS", 0.2)
    state = cert_app.client.app.state  # type: ignore[attr-defined]
    state.photo_decode_slots = asyncio.Semaphore(0)  # all slots held by other uploads
    photo = qr_photo("HC1:x")
    busy = cert_app.client.post("/verify?lang=en", files={"photo": ("qr.png", photo, "image/png")})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5" and "try again" in busy.text
    state.photo_decode_slots = asyncio.Semaphore(1)  # a slot frees up
    again = cert_app.client.post("/verify?lang=en", files={"photo": ("qr.png", photo, "image/png")})
    assert again.status_code == 200 and "No QR code found" not in again.text
