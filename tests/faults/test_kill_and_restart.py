"""The service (`python main.py serve`, a real uvicorn process) is killed with SIGKILL in the middle
of conversations and started again on the same database:

- a USSD login waiting for its code goes on in the same gateway session after the restart;
- Twilio re-delivering an SMS the dead process had already answered gets the same answer and is
  not processed again (no second code);
- a report half-way through, when the gateway had to open a new session, is offered for resumption
  and filed once.

Everything the process wrote to its standard error is checked for phone numbers, ID numbers and
codes in clear (its JSON logs mask them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.base import make_sync_engine
from db.secret_keys import SecretKeys
from outbox.sealing import OutboxSeal
from outbox.store import open_row
from outbox.tables import OutboxRow
from tests.faults.service import AN, BINH, REF, expected

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "kill-restart-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`python main.py serve` on a fixed port and database; start, SIGKILL, start again."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "PUBLIC_BASE_URL": self.base,
            "SECRET_KEY": SECRET_KEY,
            "OUTBOX_POLL_SECONDS": "0.2",
        }
        for name in (
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "TWILIO_FROM",
            "TELEGRAM_BOT_TOKEN",
            "REDIS_URL",
        ):
            self.env.pop(name, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr = b""
        self.outbox = make_sync_engine(database_url)

    def gateway_headers(self) -> dict[str, str]:
        """The gateway token the service generated into DATA_DIR at its first start (no setting)."""
        return {"X-Gateway-Token": (self.data_dir / "gateway_token").read_text().strip()}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"service did not start: {self.stderr.decode()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._reap()

    def _reap(self) -> None:
        if self.process is None:
            return
        self.process.wait(timeout=10)
        assert self.process.stderr is not None
        self.stderr += self.process.stderr.read()
        self.process.stderr.close()
        self.process = None

    def codes_to(self, phone: str) -> list[str]:
        """The codes the (local) outbox holds for `phone`, opened as the simulator opens them."""
        seal = OutboxSeal(SecretKeys.derive(SECRET_KEY).outbox_seal)
        with self.outbox.connect() as conn:
            rows = conn.execute(
                select(OutboxRow).where(
                    OutboxRow.channel == "sms", OutboxRow.address == phone, OutboxRow.kind == "otp"
                )
            ).all()
        return [str(open_row(seal, r).params["code"]) for r in rows]


@pytest.fixture
def service(demo_db: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(demo_db, tmp_path / "data")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        process.outbox.dispose()


class Ussd:
    def __init__(self, http: httpx.Client, service: ServiceProcess, phone: str) -> None:
        self.http, self.service, self.phone = http, service, phone
        self.session, self.inputs = "", []  # type: tuple[str, list[str]]

    def dial(self) -> str:
        self.session, self.inputs = "ATUid_" + uuid.uuid4().hex[:12], []
        return self._post()

    def send(self, *texts: str) -> str:
        screen = ""
        for text in texts:
            self.inputs.append(text)
            screen = self._post()
        return screen

    def _post(self) -> str:
        answer = self.http.post(
            f"{self.service.base}/ussd",
            data={
                "sessionId": self.session,
                "serviceCode": "*384*2021#",
                "phoneNumber": self.phone,
                "networkCode": "45204",
                "text": "*".join(self.inputs),
            },
            headers=self.service.gateway_headers(),
        )
        assert answer.status_code == 200, answer.text
        return " ".join(answer.text.split())


def sms(http: httpx.Client, service: ServiceProcess, phone: str, body: str, sid: str) -> str:
    form = {"From": phone, "To": "+15005550006", "Body": body, "MessageSid": sid, "NumMedia": "0"}
    answer = http.post(f"{service.base}/sms/twilio", data=form, headers=service.gateway_headers())
    assert answer.status_code == 200, answer.text
    return "\n".join(m.text or "" for m in ET.fromstring(answer.text).iter("Message"))


def test_killed_mid_conversation_and_restarted(service: ServiceProcess) -> None:
    with httpx.Client(timeout=15) as http:
        an = Ussd(http, service, AN[0])
        an.dial()
        assert an.send("1", AN[1], AN[2]).startswith("CON " + expected("login.code_sent"))
        login_sid = "SM" + uuid.uuid4().hex
        first_answer = sms(http, service, BINH[0], f"DK {BINH[1]} {BINH[2]}", login_sid)
        assert first_answer.startswith(expected("login.code_sent"))
        assert len(service.codes_to(BINH[0])) == 1

        service.kill()
        service.start()

        # the same gateway session: the code typed after the restart logs in and shows the doses
        (code,) = service.codes_to(AN[0])
        screen = an.send(code)
        assert screen.startswith("CON ") and "Nguyen Van An" in screen and "Mui 1: AstraZeneca" in screen, (
            screen
        )
        # Twilio re-delivers the message the dead process had answered: same answer, no new code
        assert sms(http, service, BINH[0], f"DK {BINH[1]} {BINH[2]}", login_sid) == first_answer
        (binh_code,) = service.codes_to(BINH[0])
        reply = sms(http, service, BINH[0], binh_code, "SM" + uuid.uuid4().hex)
        assert expected("login.success", name="Tran Thi Binh") in reply, reply

        # half-way through a report when the process dies
        an.dial()
        assert an.send("3", "1", "2").startswith("CON " + expected("report.ask_date"))
        service.kill()
        service.start()
        # the gateway lost its session: in a new one the caller is offered to go on
        assert an.dial().startswith("CON " + expected("resume.ask"))
        assert an.send("1").startswith("CON " + expected("report.ask_date"))
        assert an.send("9", "9", "9", "9", "1").startswith("CON Gui phan anh: Thieu mui tiem, Mui 2")
        done = an.send("1")
        assert done.startswith("END Da nhan phan anh") and REF.search(done), done

    service.stop()
    logs = service.stderr.decode(errors="replace")
    assert '"level"' in logs  # JSON lines were written
    for secret in (AN[0], AN[0][1:], "0" + AN[0][3:], AN[1], BINH[0], BINH[0][1:], BINH[1], code, binh_code):
        assert secret not in logs, f"{secret} in the service's log output"
