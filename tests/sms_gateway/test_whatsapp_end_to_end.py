"""WhatsApp end to end through the real service (`python main.py serve` in a subprocess):

- with the Twilio stand-in (TWILIO_WHATSAPP_FROM set): log in on WhatsApp with the code the
  stand-in got by SMS, see the doses, get the certificate as an image message whose MediaUrl (the
  signed qr.png link) decodes with zxing-cpp to an HC1 that /api/verify accepts;
- the quick start (no Twilio): `simulate whatsapp` talks to the server as it runs and shows the
  replies and the certificate image from the local outbox.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from settings import Settings
from sms_gateway.simulator import OutboxWatcher
from sms_gateway.whatsapp_simulator import WhatsAppInbox, WhatsAppPhone, whatsapp_loop
from tests.fakes.twilio_api import TwilioStandIn
from tests.sms_gateway.test_end_to_end import free_port

ROOT = Path(__file__).resolve().parents[2]
AN = "+84901234567"
WA_FROM = "+14155238886"


def _start(tmp_path: Path, demo_template: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    shutil.copy(demo_template, tmp_path / "vax.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'vax.db'}",
        "DATA_DIR": str(tmp_path / "data"),
        "PUBLIC_BASE_URL": base,
        "SECRET_KEY": "e2e-secret",
        "OUTBOX_POLL_SECONDS": "0.1",
        **extra,
    }
    for name in ("TELEGRAM_BOT_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"):
        if name not in extra:
            env.pop(name, None)
    if not extra:  # the quick start: the secret key and gateway token are generated into DATA_DIR
        env.pop("SECRET_KEY")
    process = subprocess.Popen(
        [sys.executable, "main.py", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            err = process.stderr.read().decode()[-3000:] if process.stderr else ""
            raise AssertionError(f"service did not start: {err}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def twilio_service(demo_template: Path, tmp_path: Path) -> Iterator[tuple[str, TwilioStandIn, Settings]]:
    with TwilioStandIn() as twilio:
        extra = {
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "TWILIO_WHATSAPP_FROM": WA_FROM,
        }
        process, base = _start(tmp_path, demo_template, extra)
        try:
            settings = Settings(
                database_url=f"sqlite:///{tmp_path / 'vax.db'}",
                data_dir=tmp_path / "data",
                public_base_url=base,
                twilio_account_sid=twilio.account_sid,
                twilio_auth_token=twilio.auth_token,
                twilio_from=twilio.from_number,
                twilio_whatsapp_from=WA_FROM,
            )
            yield base, twilio, settings
        finally:
            _stop(process)


def _verify(client: httpx.Client, base: str, png: bytes) -> dict[str, object]:
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert barcode.text.startswith("HC1:")
    verdict = client.post(f"{base}/api/verify", json={"hc1": barcode.text}).json()
    assert isinstance(verdict, dict)
    return verdict


def test_whatsapp_login_status_certificate_image_through_twilio(
    twilio_service: tuple[str, TwilioStandIn, Settings],
) -> None:
    base, twilio, settings = twilio_service
    to = f"whatsapp:{AN}"
    with httpx.Client(timeout=10) as client:
        chat = WhatsAppPhone(client, settings, base, AN)

        def say(text: str, expect: str) -> str:
            seen = len(twilio.messages)
            assert chat.send(text) is None
            return twilio.wait_for(to=to, contains=expect, timeout=10, after=seen).body

        say("1", "Nhập số CCCD")
        say("001085012345", "ngày sinh")
        say("14031985", "Mã 6 số đã gửi qua SMS")
        otp = twilio.wait_for(to=AN, contains="ma xac thuc", timeout=10)  # an SMS to the registered phone
        assert otp.from_ == twilio.from_number
        code = re.search(r"\b(\d{6})\b", otp.body)
        assert code is not None
        status = say(code[1], "Mũi 1: AstraZeneca, 02/08/2021")
        assert "Nguyễn Văn An" in status  # WhatsApp keeps the diacritics
        reply = twilio.wait_for(to=to, contains="Nguyễn Văn An", timeout=5)
        assert reply.from_ == f"whatsapp:{WA_FROM}" and reply.status_callback

        seen = len(twilio.messages)
        assert chat.send("QR") is None
        image = twilio.wait_for(to=to, timeout=10, after=seen)
        assert image.from_ == f"whatsapp:{WA_FROM}"
        [media_url] = image.media_urls
        assert re.fullmatch(rf"{re.escape(base)}/c/[^/?]+/qr\.png", media_url)
        assert "Nguyễn Văn An" in image.body and "14/03/1985" in image.body  # the caption
        png = client.get(media_url)  # what Twilio fetches to send the image
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        verdict = _verify(client, base, png.content)
        assert verdict["valid"] is True, verdict
        holder = verdict["holder"]
        assert isinstance(holder, dict) and holder["date_of_birth"] == "1985-03-14", verdict
        forged = client.get(media_url.replace("/c/", "/c/x"))
        assert forged.status_code in (404, 410)  # the link is signed


def test_simulate_whatsapp_against_the_quick_start_server(demo_template: Path, tmp_path: Path) -> None:
    process, base = _start(tmp_path, demo_template, {})
    try:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'vax.db'}", data_dir=tmp_path / "data", public_base_url=base
        )
        shown: list[str] = []
        sms = OutboxWatcher(settings, AN, show=shown.append)
        inbox = WhatsAppInbox(settings, AN)

        def code() -> str:
            for _ in range(50):
                sms.flush()
                found = [m for line in shown if (m := re.search(r"ma xac thuc.*?\b(\d{6})\b", line))]
                if found:
                    return found[-1][1]
                time.sleep(0.1)
            raise AssertionError(f"no code by SMS: {shown}")

        inputs = iter(["1", "001085012345", "14031985"])
        with httpx.Client(timeout=10) as client:
            chat = WhatsAppPhone(client, settings, base, AN)

            def read(prompt: str) -> str:
                try:
                    return next(inputs)
                except StopIteration:
                    return "q"

            whatsapp_loop(chat, inbox, read, shown.append)
            assert any("Mã 6 số đã gửi qua SMS" in line for line in shown), shown
            inputs = iter([code(), "QR", "/location"])
            whatsapp_loop(chat, inbox, read, shown.append)
            transcript = "\n".join(shown)
            assert "Mũi 1: AstraZeneca, 02/08/2021" in transcript
            assert "chưa đọc được loại tin nhắn này" in transcript  # the location
            image = re.search(r"\[image (http://\S+/qr\.png)\]", transcript)
            assert image is not None, transcript
            verdict = _verify(client, base, client.get(image[1]).content)
            assert verdict["valid"] is True, verdict
        inbox.close()
        sms.stop()

        # the command itself, as a newcomer types it, given only the server's DATABASE_URL and DATA_DIR
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SECRET_KEY"))},
            "DATABASE_URL": settings.database_url,
            "DATA_DIR": str(settings.data_dir),
            "PUBLIC_BASE_URL": base,
        }
        done = subprocess.run(
            [sys.executable, "main.py", "simulate", "whatsapp", "--phone", "+84987654321"],
            input="1\n048095006789\n30111995\nq\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "HTTP 403" not in done.stdout and "Mã 6 số đã gửi qua SMS" in done.stdout, done.stdout
        assert re.search(r"SMS to \+84987654321: .*ma xac thuc \d{6}", done.stdout), done.stdout
    finally:
        _stop(process)
