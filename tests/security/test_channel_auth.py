"""No channel route trusts an unauthenticated caller, in the default configuration too.

The attack: with USSD_GATEWAY_TOKEN unset, anyone who could reach /ussd sent `phoneNumber=<victim>`
and `text=1` and got the victim's name, masked ID and doses (a phone that logged in once stays
bound to the person); /sms/twilio was open the same way without TWILIO_AUTH_TOKEN; the Telegram
webhook took forged updates when no secret was set, and a forged update id made the genuine update
with that id be dropped as a duplicate.

Each test sends the attack's request to the running app (real routes, lifespan, database) with no
channel secret configured, sees it refused with a 403 that names nobody and changes nothing, and
then sends the very same request the way the honest gateway does — which is answered, showing
what the attack would have obtained.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from bot.simulated_updates import SimulatedUser
from bot.tables import TelegramUpdateRow
from conversations.tables import ConversationSessionRow, InboundReceiptRow
from settings import Settings
from tests.conversations.conftest import demo_template  # noqa: F401 - shared session fixture
from tests.fakes.telegram_api import TelegramApiStandIn
from tests.faults.conftest import demo_db  # noqa: F401 - shared fixture
from tests.faults.service import AN, Service, base_settings, running

ROOT = Path(__file__).resolve().parents[2]
AN_NAME = "Nguyen Van An"
PUBLIC = "https://vax.example.org"
BOT_TOKEN = "7000000001:AAHk3dVaxChannelSecurityTokenQ9xYz"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def default_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """No gateway token, no Twilio auth token, no Telegram secret: what a fresh install runs with."""
    values: dict[str, Any] = {"ussd_gateway_token": None, "twilio_auth_token": None, **overrides}
    return base_settings(database_url, data_dir, **values)


def assert_names_nobody(body: str) -> None:
    """A refusal says nothing about any person: a fixed sentence, no name, phone, ID or dose."""
    assert body in ('{"detail":"missing or wrong gateway token"}', '{"detail":"invalid Twilio signature"}')
    for personal in (AN_NAME, "Nguyễn", AN[0], AN[0][3:], AN[1], AN[1][:3], "AstraZeneca", "Mui"):
        assert personal not in body


async def session_row(service: Service, phone: str) -> tuple[Any, ...] | None:
    async with service.state.db_sessions() as db:
        row = await db.scalar(
            select(ConversationSessionRow).where(
                ConversationSessionRow.channel == "ussd", ConversationSessionRow.address == phone
            )
        )
        return (
            None if row is None else (row.session_key, row.updated_at, json.dumps(row.state, sort_keys=True))
        )


async def receipt(service: Service, key: str) -> InboundReceiptRow | None:
    async with service.state.db_sessions() as db:
        return await db.get(InboundReceiptRow, key)


@pytest.fixture
async def service(demo_db: str, tmp_path: Path) -> AsyncIterator[Service]:  # noqa: F811
    async with running(default_settings(demo_db, tmp_path / "data")) as svc:
        yield svc


async def bind_an_over_ussd(service: Service) -> None:
    """The victim logs in once over USSD, through the honest gateway: the phone is now bound."""
    an = service.ussd(AN[0])
    await an.dial()
    await an.answers("1", AN[1], AN[2])
    screen = await an.send(await service.last_code(AN[0]))
    assert AN_NAME in screen, screen


# -- USSD -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"X-Gateway-Token": ""}, ""),
        ({"X-Gateway-Token": "guess"}, ""),
        ({}, "?token="),
        ({}, "?token=guess"),
        ({"X-Gateway-Token": "TOKEN[:-1]"}, ""),
    ],
    ids=["none", "empty header", "wrong header", "empty query", "wrong query", "one character short"],
)
async def test_ussd_status_of_a_bound_phone_needs_the_gateway_token(
    service: Service, headers: dict[str, str], query: str
) -> None:
    await bind_an_over_ussd(service)
    token = service.settings.resolved_gateway_token
    headers = {k: token[:-1] if v == "TOKEN[:-1]" else v for k, v in headers.items()}
    attack = {
        "sessionId": "ATUid_attacker_" + uuid.uuid4().hex[:8],
        "serviceCode": "*384*2021#",
        "phoneNumber": AN[0],  # the victim's number
        "networkCode": "45204",
        "text": "1",  # dose status
    }
    before = await session_row(service, AN[0])
    for _ in range(3):
        answer = await service.client.post("/ussd" + query, data=attack, headers={**FORM, **headers})
        assert answer.status_code == 403
        assert_names_nobody(answer.text)
    assert await session_row(service, AN[0]) == before  # not processed: the victim's session untouched

    # The same request from the gateway: this is what the attacker used to get.
    honest = await service.client.post(f"/ussd?token={token}", data=attack, headers=FORM)
    assert honest.status_code == 200 and AN_NAME in honest.text and "Mui 1" in honest.text
    assert (await session_row(service, AN[0]))[0] == attack["sessionId"]  # type: ignore[index]


async def test_the_generated_gateway_token_is_private_and_stable(demo_db: str, tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "data"
    async with running(default_settings(demo_db, data)) as first:
        token = first.settings.resolved_gateway_token
    path = data / "gateway_token"
    assert path.read_text().strip() == token and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    async with running(default_settings(demo_db, data)) as again:  # a restart (or another worker)
        assert again.settings.resolved_gateway_token == token
        assert (await again.ussd(AN[0]).dial()).startswith("CON ")
    configured = default_settings(demo_db, data, ussd_gateway_token="from-the-environment-1")
    async with running(configured) as svc:  # USSD_GATEWAY_TOKEN wins over the file
        answer = await svc.client.post(
            "/ussd",
            data={"sessionId": "s", "phoneNumber": AN[0], "text": ""},
            headers={"X-Gateway-Token": token},
        )
        assert answer.status_code == 403
        assert (await svc.ussd(AN[0]).dial()).startswith("CON ")


# -- SMS ------------------------------------------------------------------------------------------
def sms_form(body: str, sid: str, phone: str = AN[0]) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def twiml_text(body: str) -> str:
    return "\n".join(m.text or "" for m in ET.fromstring(body).iter("Message"))


async def test_sms_status_of_a_bound_phone_needs_the_gateway_token_without_twilio(service: Service) -> None:
    an = service.sms(AN[0])  # the victim logs in once by SMS (honest gateway)
    await an.send(f"DK {AN[1]} {AN[2]}")
    assert AN_NAME in await an.send(await service.last_code(AN[0]))

    sid = "SM" + uuid.uuid4().hex
    attack = sms_form("MUI", sid)
    for headers in ({}, {"X-Gateway-Token": "guess"}, {"X-Twilio-Signature": "AAAA"}):
        answer = await service.client.post("/sms/twilio", data=attack, headers=headers)
        assert answer.status_code == 403
        assert_names_nobody(answer.text)
    answer = await service.client.post("/sms/twilio?token=guess", data=attack)
    assert answer.status_code == 403
    assert await receipt(service, f"twilio:{sid}") is None  # not processed, its MessageSid not taken

    # The same message from the gateway: processed (not answered as a duplicate), the doses.
    honest = await service.client.post("/sms/twilio", data=attack, headers=service.gateway_headers())
    assert honest.status_code == 200 and AN_NAME in twiml_text(honest.text)
    assert await receipt(service, f"twilio:{sid}") is not None


async def test_sms_delivery_status_needs_the_gateway_token_without_twilio(service: Service) -> None:
    status = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "failed", "ErrorCode": "30006"}
    for headers in ({}, {"X-Gateway-Token": "guess"}):
        answer = await service.client.post("/sms/twilio/status", data=status, headers=headers)
        assert answer.status_code == 403
    honest = await service.client.post("/sms/twilio/status", data=status, headers=service.gateway_headers())
    assert honest.status_code == 204


async def test_with_twilio_auth_token_only_the_signature_counts(demo_db: str, tmp_path: Path) -> None:  # noqa: F811
    settings = default_settings(demo_db, tmp_path / "data", twilio_auth_token="twilio-auth-token-1")
    async with running(settings) as svc:
        sid = "SM" + uuid.uuid4().hex
        form = sms_form("HD", sid)
        gateway_only = await svc.client.post("/sms/twilio", data=form, headers=svc.gateway_headers())
        assert gateway_only.status_code == 403  # the gateway token is no Twilio signature
        assert_names_nobody(gateway_only.text)
        url = "http://testserver/sms/twilio"
        signature = RequestValidator("twilio-auth-token-1").compute_signature(url, form)
        signed = await svc.client.post("/sms/twilio", data=form, headers={"X-Twilio-Signature": signature})
        assert signed.status_code == 200 and twiml_text(signed.text)


# -- Telegram -------------------------------------------------------------------------------------
@pytest.fixture
def telegram() -> Any:
    with TelegramApiStandIn() as api:
        yield api


async def test_a_forged_update_neither_answers_nor_takes_the_genuine_updates_id(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
    telegram: TelegramApiStandIn,
) -> None:
    settings = default_settings(
        demo_db,
        tmp_path / "data",
        public_base_url=PUBLIC,
        telegram_bot_token=BOT_TOKEN,
        telegram_api_base=telegram.base_url,
        telegram_webhook_secret=None,
    )
    async with running(settings) as svc:
        # The secret generated into DATA_DIR is the one Telegram was given by setWebhook.
        secret = (tmp_path / "data" / "telegram_webhook_secret").read_text().strip()
        assert telegram.calls_of("setWebhook")[-1].params["secret_token"] == secret
        update = SimulatedUser(AN[0]).text("/status")
        update_id = update["update_id"]
        for headers in (
            {},
            {"X-Telegram-Bot-Api-Secret-Token": ""},
            {"X-Telegram-Bot-Api-Secret-Token": "guess"},
        ):
            forged = await svc.client.post("/telegram/webhook", json=update, headers=headers)
            assert forged.status_code == 403
            assert AN_NAME not in forged.text and AN[0] not in forged.text
        async with svc.state.db_sessions() as db:
            assert await db.get(TelegramUpdateRow, update_id) is None  # its id was not recorded
        assert telegram.calls_of("sendMessage") == []  # and nothing was answered

        genuine = await svc.client.post(
            "/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        )
        assert genuine.status_code == 200 and genuine.json()["description"] == "processed"
        assert telegram.calls_of("sendMessage")  # answered


async def test_in_polling_mode_there_is_no_webhook(
    demo_db: str,  # noqa: F811
    tmp_path: Path,
    telegram: TelegramApiStandIn,
) -> None:
    settings = default_settings(
        demo_db,
        tmp_path / "data",
        telegram_bot_token=BOT_TOKEN,
        telegram_api_base=telegram.base_url,
        telegram_mode="polling",
        telegram_webhook_secret="polling-mode-secret",
    )
    async with running(settings) as svc:
        update = SimulatedUser(AN[0]).text("/start")
        headers = {"X-Telegram-Bot-Api-Secret-Token": "polling-mode-secret"}
        answer = await svc.client.post("/telegram/webhook", json=update, headers=headers)
        assert answer.status_code == 404
        assert telegram.calls_of("sendMessage") == []


def test_a_webhook_secret_telegram_would_refuse_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
        Settings(data_dir=tmp_path, telegram_webhook_secret="has spaces and ümlauts")


# -- operator pages -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
async def test_metrics_token_guards_the_operator_pages(demo_db: str, tmp_path: Path, path: str) -> None:  # noqa: F811
    async with running(default_settings(demo_db, tmp_path / "open")) as svc:
        assert (await svc.client.get(path)).status_code == 200  # METRICS_TOKEN unset: open
    settings = default_settings(demo_db, tmp_path / "closed", metrics_token="metrics-token-1")
    async with running(settings) as svc:
        missing = await svc.client.get(path)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        for wrong in ("Bearer metrics-token-2", "Bearer ", "metrics-token-1", "Basic bWV0cmljcy10b2tlbi0x"):
            assert (await svc.client.get(path, headers={"Authorization": wrong})).status_code == 403
        granted = await svc.client.get(path, headers={"Authorization": "Bearer metrics-token-1"})
        assert granted.status_code == 200
        assert (await svc.client.get("/healthz")).status_code == 200  # health stays open


async def test_metrics_carry_no_personal_data(service: Service) -> None:
    await bind_an_over_ussd(service)
    await service.sms(AN[0]).send(f"DK {AN[1]} {AN[2]}")
    # a client may put anything where the method goes: it must not become a label value
    weird = httpx.Request(f"X{AN[1]}", "http://testserver/healthz")
    assert (await service.client.send(weird)).status_code in (400, 405)
    await service.client.get(f"/c/{'x' * 40}{AN[1]}")  # a path holding an ID
    metrics = (await service.client.get("/metrics")).text
    assert "http_requests_total" in metrics and 'route="/ussd"' in metrics
    for personal in (AN[0], AN[0][3:], AN[1], AN[2], AN_NAME, service.settings.resolved_gateway_token):
        assert personal not in metrics


# -- the quick start: `python main.py`, then the simulators, with no setting at all ----------------
def quick_start_env(tmp_path: Path, demo: Path) -> dict[str, str]:
    """What a fresh checkout runs with: nothing configured but where the files go (and a free port)."""
    shutil.copy(demo, tmp_path / "vax.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "TWILIO_", "USSD_", "METRICS_", "PUBLIC_", "REDIS_"))
    }
    env.pop("SECRET_KEY", None)
    env.update(
        PORT=str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'vax.db'}", DATA_DIR=str(tmp_path / "var")
    )
    return env


def simulate(env: dict[str, str], *args: str, typed: str) -> str:
    done = subprocess.run(
        [sys.executable, "main.py", "simulate", *args],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_quick_start_simulators_use_the_generated_token(tmp_path: Path, demo_template: Path) -> None:  # noqa: F811
    env = quick_start_env(tmp_path, demo_template)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "main.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{env['PORT']}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        banner = log.read_text()
        token = (tmp_path / "var" / "gateway_token").read_text().strip()
        assert token not in banner
        assert re.search(r"USSD +: gateway token from DATA_DIR/gateway_token", banner), banner
        assert re.search(r"SMS +: gateway token, as for USSD \(TWILIO_AUTH_TOKEN unset\)", banner)
        # no bot token: Telegram runs against the service's own Bot API stand-in, behind the secret
        assert re.search(r"Telegram +: .*webhook with secret from DATA_DIR/telegram_webhook_secret", banner)

        # a stranger is refused ...
        stranger = httpx.post(
            f"http://127.0.0.1:{env['PORT']}/ussd", data={"sessionId": "x", "phoneNumber": AN[0], "text": ""}
        )
        assert stranger.status_code == 403
        # ... the simulators, given nothing, find the token the way the service did
        out = simulate(env, "ussd", "--phone", "+84901234567", typed=f"\n1\n{AN[1]}\n{AN[2]}\nq\n")
        assert "HTTP 403" not in out and "Tiem chung COVID-19" in out and "Ma 6 so da gui" in out, out
        assert re.search(r"SMS to \+84901234567: .*ma xac thuc \d{6}", out), out
        out = simulate(env, "sms", "--phone", "+84912345678", typed="HD\nq\n")
        assert "HTTP 403" not in out and "  ← " in out and "MUI" in out, out
        out = simulate(env, "telegram", "--phone", "+84912345678", typed="/start\n!quit\n")
        assert "🤖 Chào bạn!" in out, out
    finally:
        server.terminate()
        server.wait(timeout=15)
    whole_log = log.read_text()
    for name in ("gateway_token", "telegram_webhook_secret", "telegram_local_bot_token", "secret_key"):
        secret_file = tmp_path / "var" / name
        if secret_file.exists():
            secret = secret_file.read_text().strip()
            assert secret not in whole_log and secret.split(":")[-1] not in whole_log, f"{name} logged"


def test_quick_start_telegram_simulator_uses_the_generated_secret(
    tmp_path: Path,
    demo_template: Path,  # noqa: F811
) -> None:
    env = quick_start_env(tmp_path, demo_template)
    out = simulate(env, "telegram", "--phone", "0901234567", typed="/start\n!quit\n")
    assert "🤖 Chào bạn!" in out, out
    secret = (tmp_path / "var" / "telegram_webhook_secret").read_text().strip()
    assert stat.S_IMODE((tmp_path / "var" / "telegram_webhook_secret").stat().st_mode) == 0o600
    service_log = (tmp_path / "var" / "simulator" / "telegram-service.log").read_text()
    assert secret not in service_log + out
    assert re.search(r"Telegram +: .*webhook with secret from DATA_DIR/telegram_webhook_secret", service_log)
