"""No secret in the log: the real service (`python main.py serve` in a subprocess, its whole output
captured) goes through a full session on every channel — USSD with the gateway token in `?token=`
(so it is in the access log's request line), SMS signed like Twilio, Telegram against the local
Bot API stand-in (every Bot API URL holds the bot token) including a failing Bot API call — and
the whole log is searched for every configured secret: none is there.

The issue: "The Telegram bot token is logged on every Bot API call (the HTTP client's request log);
a gateway token given as `?token=` is written to the access log". Also here: the start banner says
how each channel authenticates its callers, never with the secret itself.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bot.simulated_updates import SimulatedUser
from settings import Settings
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.fakes.telegram_api import TelegramApiStandIn
from tests.fakes.twilio_api import TwilioStandIn
from tests.faults.service import AN, BINH, CUONG
from web.structured_logs import configure_logging

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "https://vax.example.org"  # https: the service registers its webhook (and secret) with Telegram
BOT_TOKEN = "7000000001:AAHk3dLogsMustNeverShowThisBotToken42"
METRICS_TOKEN = "metrics-token-for-the-log-test"
REGISTRY_BEARER = "registry-bearer-token-for-the-log-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`python main.py serve` with stdout and stderr in one file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log_path = env, log
        self.base = f"http://127.0.0.1:{env['PORT']}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "main.py", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the service did not start:\n" + self.log()[-3000:])
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def stand_ins() -> Iterator[tuple[TelegramApiStandIn, TwilioStandIn]]:
    with TelegramApiStandIn() as telegram, TwilioStandIn() as twilio:
        yield telegram, twilio


@pytest.fixture
def service(
    demo_template: Path,  # noqa: F811
    tmp_path: Path,
    stand_ins: tuple[TelegramApiStandIn, TwilioStandIn],
) -> Iterator[Serve]:
    telegram, twilio = stand_ins
    shutil.copy(demo_template, tmp_path / "vax.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TWILIO_", "USSD_"))}
    env.pop("SECRET_KEY", None)  # generated into DATA_DIR, like every channel secret here
    env.pop("REDIS_URL", None)
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        DATABASE_URL=f"sqlite:///{tmp_path / 'vax.db'}",
        DATA_DIR=str(tmp_path / "data"),
        PUBLIC_BASE_URL=PUBLIC,
        TWILIO_ACCOUNT_SID=twilio.account_sid,
        TWILIO_AUTH_TOKEN=twilio.auth_token,
        TWILIO_FROM=twilio.from_number,
        TWILIO_API_BASE=twilio.base_url,
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_API_BASE=telegram.base_url,
        TELEGRAM_MODE="webhook",
        METRICS_TOKEN=METRICS_TOKEN,
        REGISTRY_AUTH=f"bearer:{REGISTRY_BEARER}",
        OUTBOX_POLL_SECONDS="0.1",
    )
    serve = Serve(env, tmp_path / "serve.log")
    try:
        yield serve
    finally:
        serve.stop()


def code_in(body: str) -> str:
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found[1]


def ussd_session(http: httpx.Client, base: str, token: str, twilio: TwilioStandIn) -> None:
    """An over USSD: login with the code from the SMS, dose status, certificate link by SMS."""
    session, inputs = "ATUid_logs", []  # type: str, list[str]

    def send(text: str | None) -> str:
        if text is not None:
            inputs.append(text)
        form = {
            "sessionId": session,
            "serviceCode": "*384*2021#",
            "phoneNumber": AN[0],
            "text": "*".join(inputs),
        }
        answer = http.post(f"{base}/ussd?token={token}", data=form)  # the token in the request line
        assert answer.status_code == 200, answer.text
        return answer.text

    send(None)
    for text in ("1", AN[1], AN[2]):
        screen = send(text)
    assert "CON" in screen
    screen = send(code_in(twilio.wait_for(to=AN[0], contains="ma xac thuc", timeout=15).body))
    assert "Nguyen Van An" in screen, screen
    send("0")
    send("2")
    twilio.wait_for(to=AN[0], contains="/c/", timeout=15)


def sms_session(http: httpx.Client, base: str, twilio: TwilioStandIn) -> None:
    """Binh by SMS, signed like Twilio: login, the code, status."""
    validator = RequestValidator(twilio.auth_token)

    def send(body: str, n: int) -> str:
        form = {
            "MessageSid": f"SM{n:032d}",
            "AccountSid": twilio.account_sid,
            "From": BINH[0],
            "To": twilio.from_number,
            "Body": body,
            "NumMedia": "0",
        }
        signature = validator.compute_signature(PUBLIC + "/sms/twilio", form)
        answer = http.post(f"{base}/sms/twilio", data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200, answer.text
        return answer.text

    send(f"DK {BINH[1]} {BINH[2]}", 1)
    assert "Tran Thi Binh" in send(
        code_in(twilio.wait_for(to=BINH[0], contains="ma xac thuc", timeout=15).body), 2
    )
    send("MUI", 3)


def telegram_session(
    http: httpx.Client, base: str, secret: str, telegram: TelegramApiStandIn, twilio: TwilioStandIn
) -> None:
    """Cuong in Telegram: /start, share the phone, the code from the SMS, /status; one Bot API
    call fails (500) on the way, so the failure path logs too."""
    user = SimulatedUser(CUONG[0])
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}

    def post(update: dict[str, Any]) -> None:
        answer = http.post(f"{base}/telegram/webhook", json=update, headers=headers)
        assert answer.status_code in (200, 503), answer.text

    post(user.text("/start"))
    post(user.contact())
    code = code_in(twilio.wait_for(to=CUONG[0], contains="ma xac thuc", timeout=15).body)
    post(user.text(code))
    post(user.text("/status"))
    telegram.fail_next("sendMessage", "500")
    post(user.text("/help"))
    assert any("Lê Văn Cường" in str(c.params.get("text")) for c in telegram.calls_of("sendMessage"))


def forms_of(secret: str) -> set[str]:
    """The ways a secret could be written: as is, URL-encoded, the part after a bot token's colon,
    inside a basic-auth header."""
    forms = {secret, quote(secret, safe="")}
    if ":" in secret:
        forms.add(secret.split(":", 1)[1])
    return forms


def test_no_secret_in_the_log_of_a_session_on_every_channel(
    service: Serve, stand_ins: tuple[TelegramApiStandIn, TwilioStandIn], tmp_path: Path
) -> None:
    telegram, twilio = stand_ins
    data = tmp_path / "data"
    gateway_token = (data / "gateway_token").read_text().strip()
    webhook_secret = telegram.calls_of("setWebhook")[-1].params["secret_token"]
    assert webhook_secret == (data / "telegram_webhook_secret").read_text().strip()
    secret_key = (data / "secret_key").read_text().strip()

    with httpx.Client(timeout=30) as http:
        ussd_session(http, service.base, gateway_token, twilio)
        sms_session(http, service.base, twilio)
        telegram_session(http, service.base, webhook_secret, telegram, twilio)
        metrics = http.get(f"{service.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert metrics.status_code == 200
        http.get(f"{service.base}/metrics?token={METRICS_TOKEN}")  # a token where it does not belong
    service.stop()
    log = service.log()

    # the log is the real thing: requests, the Telegram start, the banner
    assert "/ussd?token=[redacted]" in log and "POST /telegram/webhook" in log, log[-3000:]
    assert "Telegram bot @vaxchannel_bot ready" in log
    secrets = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "gateway token": gateway_token,
        "Telegram webhook secret": webhook_secret,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "SECRET_KEY": secret_key,
        "METRICS_TOKEN": METRICS_TOKEN,
        "REGISTRY_AUTH": REGISTRY_BEARER,
        "Twilio basic auth": base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode(),
    }
    for name, secret in secrets.items():
        for form in forms_of(secret):
            assert form not in log, f"{name} is in the log"

    # the banner: one line per channel saying how its callers are authenticated
    assert re.search(r"USSD +: gateway token from DATA_DIR/gateway_token", log)
    assert re.search(r"SMS +: Twilio signature", log)
    assert re.search(r"Telegram +: webhook with secret from DATA_DIR/telegram_webhook_secret", log)
    assert re.search(r"metrics, docs : Bearer METRICS_TOKEN", log)


def test_the_http_clients_request_line_is_redacted(
    stand_ins: tuple[TelegramApiStandIn, TwilioStandIn], tmp_path: Path
) -> None:
    """Even at INFO (the service keeps httpx at WARNING), httpx's request line — which holds the
    bot token in `/bot<token>/getMe` — reaches the log redacted, as does an exception around it."""
    telegram, _ = stand_ins
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    stream = io.StringIO()
    try:
        settings = Settings(data_dir=tmp_path, telegram_bot_token=BOT_TOKEN, secret_key="s" * 32)
        configure_logging(settings)
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("httpx").setLevel(logging.INFO)
        assert httpx.get(f"{telegram.base_url}/bot{BOT_TOKEN}/getMe").status_code == 200
        try:
            httpx.get(f"http://127.0.0.1:9/bot{BOT_TOKEN}/getMe", timeout=2)
        except httpx.HTTPError:
            logging.getLogger("bot").exception("Bot API at %s unreachable", f"127.0.0.1:9/bot{BOT_TOKEN}")
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("httpx").setLevel(saved[2])
    output = stream.getvalue()
    assert "HTTP Request: GET" in output and "/bot[redacted]/getMe" in output, output
    assert "unreachable" in output
    for form in forms_of(BOT_TOKEN):
        assert form not in output


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ('127.0.0.1:5 - "POST /ussd?token=abc123XYZ HTTP/1.1" 200', "abc123XYZ"),
        ('127.0.0.1:5 - "POST /ussd?a=1&token=abc%2B123 HTTP/1.1" 403', "abc%2B123"),
        ("GET https://api.telegram.org/bot123456789:AAbbCCddEEffGGhhIIjjKKllMMnn/sendMessage", "AAbbCC"),
    ],
)
def test_secrets_nobody_configured_are_masked_by_their_shape(line: str, hidden: str) -> None:
    from web.log_redaction import RedactSecrets

    assert hidden not in RedactSecrets().redact(line)
