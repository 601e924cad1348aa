"""The real service (`python main.py`, uvicorn in a subprocess) with the local Twilio stand-in:
log in over USSD with the code that reached the stand-in, get the doses and the certificate link
(and open it), file a report, check it by SMS; the terminal simulator's phones and outbox view."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from twilio.request_validator import RequestValidator

from outbox.tables import OutboxRow
from settings import Settings
from sms_gateway.simulator import OutboxWatcher, SmsPhone, UssdPhone, _sms_loop, _ussd_loop
from tests.fakes.twilio_api import TwilioStandIn

ROOT = Path(__file__).resolve().parents[2]
AN_PHONE = "+84901234567"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(demo_template: Path, tmp_path: Path) -> Iterator[tuple[str, TwilioStandIn, Settings]]:
    shutil.copy(demo_template, tmp_path / "vax.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with TwilioStandIn() as twilio:
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'vax.db'}",
            "DATA_DIR": str(tmp_path / "data"),
            "PUBLIC_BASE_URL": base,
            "SECRET_KEY": "e2e-secret",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "OUTBOX_POLL_SECONDS": "0.1",
        }
        env.pop("TELEGRAM_BOT_TOKEN", None)
        process = subprocess.Popen(
            [sys.executable, "main.py", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"service did not start: {process.stderr.read().decode()[-3000:] if process.stderr else ''}"
                    )
                time.sleep(0.1)
            settings = Settings(
                database_url=env["DATABASE_URL"],
                data_dir=tmp_path / "data",
                public_base_url=base,
                twilio_auth_token=twilio.auth_token,
                twilio_account_sid=twilio.account_sid,
                twilio_from=twilio.from_number,
            )
            yield base, twilio, settings
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_login_status_certificate_report_over_the_real_service(
    service: tuple[str, TwilioStandIn, Settings],
) -> None:
    base, twilio, settings = service
    with httpx.Client(timeout=10) as client:
        phone = UssdPhone(client, base, AN_PHONE, settings.resolved_gateway_token)
        assert phone.dial().startswith("CON Tiem chung COVID-19")
        assert phone.send("1").startswith("CON Nhap so CCCD")
        phone.send("001085012345")
        assert "Ma 6 so da gui" in phone.send("14031985")
        otp = twilio.wait_for(to=AN_PHONE, contains="ma xac thuc", timeout=10)
        code = re.search(r"\b(\d{6})\b", otp.body)
        assert code is not None
        screen = phone.send(code[1])
        assert "Da xac thuc: Nguyen Van An" in screen and "Mui 1: AstraZeneca, 02/08/2021" in screen
        assert len(screen) <= 182

        # the certificate link, by SMS to the registered phone; the page opens
        assert phone.send("0").startswith("CON Tiem chung")
        assert phone.send("2") == (  # then offers the certificate code (issue 9)
            "CON Link chung nhan da gui qua SMS toi 09******67.\n1 Nhan ma chung nhan qua SMS\n0 Menu chinh"
        )
        sms = twilio.wait_for(to=AN_PHONE, contains="chung nhan tiem chung", timeout=10)
        link = re.search(r"(http://\S+/c/\S+)", sms.body)
        assert link is not None
        page = client.get(link[1])
        assert page.status_code == 200 and "Nguyễn Văn An" in page.text

        # Twilio reports delivery: the outbox row says so
        assert twilio.fire_status(sms.sid, "delivered") == 204
        engine = create_engine(settings.database_url)
        with engine.connect() as conn:
            row = conn.execute(select(OutboxRow).where(OutboxRow.provider_id == sms.sid)).one()
        engine.dispose()
        assert row.status == "delivered"

        # a report, in a new USSD session
        phone.dial()
        for answer in ("3", "1", "2", "9", "9", "9", "9", "1"):
            screen = phone.send(answer)
        assert screen.startswith("CON Gui phan anh: Thieu mui tiem, Mui 2")
        done = phone.send("1")
        ref = re.search(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}", done)
        assert done.startswith("END Da nhan phan anh") and ref is not None
        upload = twilio.wait_for(to=AN_PHONE, contains=ref[0], timeout=10)
        upload_link = re.search(r"(http://\S+/upload/\S+)", upload.body)
        assert upload_link is not None and client.get(upload_link[1]).status_code == 200

        # checked by SMS (signed like Twilio signs it)
        answers = SmsPhone(client, settings, base, AN_PHONE).send(f"kq {ref[0].lower()}")
        # no site named: routed to the site of the latest dose (docs/http-api.md, Corrections)
        assert answers == [f"{ref[0]}: dang xu ly tai Benh vien Bach Mai, hen tra loi " + answers[0][-11:]]
        assert re.fullmatch(r"\d\d/\d\d/\d{4}\.", answers[0][-11:])

        # an unsigned request is refused
        assert (
            client.post(
                f"{base}/sms/twilio", data={"From": AN_PHONE, "Body": "HD", "MessageSid": "SMx"}
            ).status_code
            == 403
        )
        signature = RequestValidator("wrong").compute_signature(f"{base}/sms/twilio", {"From": AN_PHONE})
        assert (
            client.post(
                f"{base}/sms/twilio", data={"From": AN_PHONE}, headers={"X-Twilio-Signature": signature}
            ).status_code
            == 403
        )

    # the simulator's outbox view shows what the service sent to that phone
    watcher = OutboxWatcher(settings, AN_PHONE)
    watcher.last_id = 0
    shown = watcher.poll()
    watcher.stop()
    assert any("ma xac thuc" in text for text in shown) and any(ref[0] in text for text in shown)


def test_simulator_loops_drive_the_service(service: tuple[str, TwilioStandIn, Settings]) -> None:
    """The interactive simulator, with scripted keyboard input."""
    base, _, settings = service
    shown: list[str] = []

    def keyboard(lines: list[str]):  # type: ignore[no-untyped-def]
        return lambda prompt: lines.pop(0)

    with httpx.Client(timeout=10) as client:
        ussd = UssdPhone(client, base, "+84912345678", settings.resolved_gateway_token)
        _ussd_loop(ussd, keyboard(["", "0", "q"]), shown.append)
        _sms_loop(SmsPhone(client, settings, base, "+84912345678"), keyboard(["HD", "q"]), shown.append)
    text = "\n".join(shown)
    assert "Tiem chung COVID-19\n1 Mui da tiem" in text
    assert "Tong dai ho tro tiem chung: 1900 9095.\n(session ended)" in text
    assert "  ← MUI: mui da tiem. QR: link chung nhan." in text
