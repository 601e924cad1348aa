"""The gateways' webhooks (POST /ussd, /sms/twilio, /sms/twilio/status) skip FastAPI's routing and
dependency resolution, and answer exactly what the ordinary stack answers: the same status, body
and headers (security headers included) for good requests and for every kind of bad one; they
are counted in the request metrics under their route; the access log writes one line per
request, with nothing of the caller in it, and none when ACCESS_LOG is off."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import create_app
from settings import Settings
from web.request_errors import MAX_REQUEST_BYTES
from web.webhook_fast_path import WebhookFastPath

TOKEN = "fast-path-gateway-token"
PHONE = "+84901234567"


def settings_for(url: str, data: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=url, data_dir=data, run_workers=False, secret_key="fast-path-secret",
        ussd_gateway_token=TOKEN, public_base_url="http://testserver", **overrides,
    )  # fmt: skip


class Served:
    """The app on its fast path, and the same app's ordinary stack beside it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ordinary_calls = 0

    def fast_path(self) -> WebhookFastPath:
        stack = self.app.middleware_stack
        assert isinstance(stack, WebhookFastPath)
        return stack

    def client(self, *, ordinary: bool = False) -> httpx.AsyncClient:
        async def through_ordinary(scope: Any, receive: Any, send: Any) -> None:
            scope["app"] = self.app
            await self.fast_path().stack(scope, receive, send)

        app = through_ordinary if ordinary else self.app
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def served(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    app = create_app(settings_for(sqlite_url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            await c.get("/healthz")  # builds the middleware stack
        yield Served(app)


def ussd_form(session: str, text: str = "", phone: str = PHONE) -> dict[str, str]:
    return {
        "sessionId": session,
        "serviceCode": "*384*2021#",
        "phoneNumber": phone,
        "networkCode": "45204",
        "text": text,
    }


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/ussd", {"data": ussd_form("{s}"), "headers": {"X-Gateway-Token": TOKEN}}),
    ("/ussd?token=" + TOKEN, {"data": ussd_form("{s}")}),
    ("/ussd", {"data": ussd_form("{s}")}),  # no token
    ("/ussd", {"data": ussd_form("{s}"), "headers": {"X-Gateway-Token": "wrong"}}),
    ("/ussd", {"data": ussd_form("{s}", phone="not a phone"), "headers": {"X-Gateway-Token": TOKEN}}),
    (
        "/ussd",
        {
            "content": b"sessionId=\xff\xfe&text=1",
            "headers": {"X-Gateway-Token": TOKEN, "Content-Type": "application/x-www-form-urlencoded"},
        },
    ),  # fmt: skip
    ("/ussd", {"content": b"text=" + b"1" * 70_000, "headers": {"X-Gateway-Token": TOKEN}}),
    ("/ussd", {"content": b"x" * (MAX_REQUEST_BYTES + 1), "headers": {"X-Gateway-Token": TOKEN}}),
    ("/ussd", {"content": b"x" * (MAX_REQUEST_BYTES + 1)}),  # above the app's limit, no token
    ("/sms/twilio", {"content": b"x" * (MAX_REQUEST_BYTES + 1)}),
    ("/sms/twilio", {"data": {"From": PHONE, "Body": "MUI", "MessageSid": "SM{s}"}}),  # no token
    ("/sms/twilio", {"data": {"From": PHONE, "MessageSid": "SM{s}"}, "headers": {"X-Gateway-Token": "x"}}),
    ("/sms/twilio/status", {"data": {"MessageSid": "SM1"}, "headers": {"X-Gateway-Token": TOKEN}}),
    ("/sms/twilio/status", {"data": {}}),
]


def _fill(value: Any, n: int) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, n) for k, v in value.items()}
    return value.replace("{s}", f"ATUid_{n}") if isinstance(value, str) else value


@pytest.mark.parametrize("number", range(len(REQUESTS)))
async def test_the_fast_path_answers_what_the_ordinary_stack_answers(served: Served, number: int) -> None:
    path, request = REQUESTS[number]
    answers = []
    for n, ordinary in ((2 * number, True), (2 * number + 1, False)):
        async with served.client(ordinary=ordinary) as client:
            answer = await client.post(path, **_fill(request, n))
        answers.append((answer.status_code, answer.content, sorted(answer.headers.multi_items())))
    assert answers[0] == answers[1]
    assert answers[0][0] != 500


async def test_the_webhooks_skip_the_ordinary_stack_and_other_requests_take_it(served: Served) -> None:
    fast = served.fast_path()
    ordinary = fast.stack
    calls: list[str] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        calls.append(f"{scope['method']} {scope['path']}")
        await ordinary(scope, receive, send)

    fast.stack = counting
    try:
        async with served.client() as client:
            answer = await client.post("/ussd", data=ussd_form("ATUid_x"), headers={"X-Gateway-Token": TOKEN})
            assert answer.status_code == 200 and answer.text.startswith("CON Tiem chung COVID-19")
            assert (await client.get("/ussd")).status_code == 405  # another method: the ordinary stack
            assert (await client.post("/ussd/")).status_code != 500
            metrics = (await client.get("/metrics")).text
    finally:
        fast.stack = ordinary
    assert calls == ["GET /ussd", "POST /ussd/", "GET /metrics"]
    assert re.search(r'http_requests_total\{method="POST",route="/ussd",status="200"\} [1-9]', metrics)


async def test_one_access_line_per_request_with_nothing_of_the_caller(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    async with served.client() as client:
        await client.post("/ussd", data=ussd_form("ATUid_log"), headers={"X-Gateway-Token": TOKEN})
    lines = [line for line in capsys.readouterr().err.splitlines() if '"logger": "access"' in line]
    assert len(lines) == 1
    assert re.fullmatch(
        r'\{"ts": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", "level": "info", "logger": "access", '
        r'"msg": "POST /ussd 200 \d+\.\dms"\}',
        lines[0],
    ), lines[0]
    assert "0901234567" not in lines[0] and "234567" not in lines[0] and TOKEN not in lines[0]


async def test_access_log_off(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(settings_for(sqlite_url, tmp_path / "data", access_log=False))
    async with app.router.lifespan_context(app):
        capsys.readouterr()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            answer = await c.post("/ussd", data=ussd_form("ATUid_off"), headers={"X-Gateway-Token": TOKEN})
            assert answer.status_code == 200
            assert (await c.get("/healthz")).status_code == 200
    assert '"logger": "access"' not in capsys.readouterr().err


def test_fastapi_opentelemetry_only_when_the_operator_configures_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI looks up the global OpenTelemetry providers on every request unless told not to;
    the service turns that off unless OpenTelemetry is configured in the environment."""
    from web.observability import fastapi_telemetry

    off = {"tracing": False, "metrics": False, "logs": False}
    assert fastapi_telemetry({"PATH": "/usr/bin", "DATABASE_URL": "sqlite://"}) == off
    assert fastapi_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == {}
    assert fastapi_telemetry({"FASTAPI_OTEL_AUTO_CONFIGURE": "True"}) == {}
    for name in [n for n in os.environ if n.startswith(("OTEL_", "FASTAPI_OTEL"))]:
        monkeypatch.delenv(name)
    app = create_app(settings_for("sqlite://", Path("/nonexistent")))
    assert {key: app._telemetry[key] for key in off} == off  # what create_app gave FastAPI
