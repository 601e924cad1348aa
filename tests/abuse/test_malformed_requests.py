"""Every route of the app (walked from `app.routes`, so a new route is covered the day it is added)
gets oversized bodies, wrong content types, broken JSON and forms, bodies that are not UTF-8,
garbage path and query parameters — anonymously, with a console session (and its CSRF token),
and with an API bearer token. The answer is never a 5xx; a body over the service's limit is 413."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from tests.fakes.telegram_api import TelegramApiStandIn
from tests.faults.service import Service, base_settings, running
from web.request_errors import MAX_REQUEST_BYTES

PASSWORD = "correct horse battery 9"
TELEGRAM_TOKEN = "7000000001:AAHk3dVaxChannelTestTokenQ9xYz"

BODIES: dict[str, tuple[bytes, str | None]] = {
    "broken json": (b'{"hc1": "HC1:', "application/json"),
    "json of the wrong shape": (b'[1, "two", {"three": null}]', "application/json"),
    "deeply nested json": (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    "huge number json": (b'{"birth_year": 1' + b"0" * 5000 + b"}", "application/json"),
    "json, not utf-8": (b'{"username": "\xff\xfe", "password": "\xc3"}', "application/json"),
    "json as text/plain": (b'{"username": "a", "password": "b"}', "text/plain"),
    "form, not utf-8": (
        b"Body=\xff\xfe\xfd&From=%2B84901234567&text=\xc3",
        "application/x-www-form-urlencoded",
    ),
    "broken form": (b"a=%zz&&=&%%%=1&sessionId", "application/x-www-form-urlencoded"),
    "form of 10,000 fields": (
        b"&".join(b"f%d=1" % n for n in range(10_000)),
        "application/x-www-form-urlencoded",
    ),
    "multipart without boundary": (b"junk", "multipart/form-data"),
    "broken multipart": (
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1',
        "multipart/form-data; boundary=b",
    ),
    "binary": (bytes(range(256)) * 8, "application/octet-stream"),
    "xml": (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>', "application/xml"),
    "no content type": (b"\x00\x01garbage", None),
    "empty": (b"", None),
}
OVERSIZED = b"x" * (MAX_REQUEST_BYTES + 1)
GARBAGE_PARAM = "%ff%fe..%2f" + "y" * 3000
GARBAGE_QUERY = "?status=%ff&site=" + "z" * 5000 + "&q=%00&lang=xx&page=-1&since=notadate"


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    from argon2 import PasswordHasher

    from web.console.passwords import use_hasher

    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


@pytest.fixture
async def service(demo_db: str, tmp_path: Path) -> AsyncIterator[Service]:
    with TelegramApiStandIn() as telegram:
        settings = base_settings(
            demo_db, tmp_path / "data", telegram_bot_token=TELEGRAM_TOKEN, telegram_api_base=telegram.base_url
        )
        async with running(settings) as svc:
            await svc.state.console.users.create("admin1", "admin", None, PASSWORD, "tests")
            yield svc


async def console_session(service: Service) -> dict[str, str]:
    """Logs in through the login form; returns the CSRF header of the session (cookie kept by the client)."""
    page = await service.client.get("/agent/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    done = await service.client.post(
        "/agent/login", data={"username": "admin1", "password": PASSWORD, "csrf_token": token[1]}
    )
    assert done.status_code == 303, done.text
    page = await service.client.get("/agent/admin")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return {"X-CSRF-Token": csrf[1]}


async def bearer(service: Service) -> dict[str, str]:
    answer = await service.client.post("/api/agent/token", json={"username": "admin1", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def routes(service: Service) -> list[tuple[str, str]]:
    found = sorted(
        {
            (method, context.path)
            for context in iter_route_contexts(service.app.routes)
            for method in (getattr(context, "methods", None) or ())
            if method != "HEAD"
        }
    )
    assert len(found) > 40 and ("POST", "/ussd") in found and ("POST", "/telegram/webhook") in found
    return found


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


async def test_every_route_answers_malformed_requests_with_4xx(service: Service) -> None:
    session_headers = await console_session(service)  # the client keeps the session cookie from here on
    identities = {"anonymous": {}, "console session": session_headers, "bearer": await bearer(service)}
    server_errors = []
    for method, path in routes(service):
        if method == "GET":
            for who, headers in identities.items():
                for url in (fill(path, "x"), fill(path, GARBAGE_PARAM) + GARBAGE_QUERY):
                    answer = await service.client.get(url, headers=headers)
                    if answer.status_code >= 500:
                        server_errors.append((who, method, url[:60], answer.status_code))
            continue
        url = fill(path, "x")
        for who, headers in identities.items():
            for name, (body, content_type) in BODIES.items():
                sent = dict(headers)
                if content_type:
                    sent["Content-Type"] = content_type
                answer = await service.client.request(method, url, content=body, headers=sent)
                if answer.status_code >= 500:
                    server_errors.append((who, method, url, name, answer.status_code, answer.text[:80]))
        answer = await service.client.request(
            method, url, content=OVERSIZED, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        # a gateway webhook refuses a caller without the gateway token before reading any body (403);
        # the gateway's own oversized bodies get 413 (test_gateway_webhooks_refuse_bodies_far_above…)
        refused = answer.status_code == 403 and url in ("/ussd", "/sms/twilio", "/sms/twilio/status")
        if answer.status_code != 413 and not refused:
            server_errors.append(
                ("anonymous", method, url, "oversized", answer.status_code, answer.text[:80])
            )
    assert server_errors == []


@pytest.mark.parametrize("path", ["/ussd", "/sms/twilio", "/sms/twilio/status"])
async def test_gateway_webhooks_refuse_bodies_far_above_their_size(service: Service, path: str) -> None:
    body = b"text=" + b"1*" * 40_000
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await service.client.post(path, content=body, headers=form)
    assert answer.status_code == 403  # a stranger is refused before the body is read
    answer = await service.client.post(path, content=body, headers={**form, **service.gateway_headers()})
    assert answer.status_code == 413


async def test_validation_errors_do_not_echo_the_request(service: Service) -> None:
    """A 422 names the field and the problem; it does not send the body (a password) back."""
    answer = await service.client.post(
        "/api/agent/token", json={"username": ["admin1"], "password": "hunter2-secret"}
    )
    assert answer.status_code == 422
    assert "hunter2-secret" not in answer.text and answer.json()["detail"][0]["loc"] == ["body", "username"]
    answer = await service.client.post(
        "/api/agent/token",
        content=b"password=\xffsecret",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 422 and "secret" not in answer.text


def test_every_route_is_known_here(tmp_path: Path) -> None:
    """Routes are walked, not listed; this only pins that walking finds the ones of docs/http-api.md."""
    from app import create_app

    app = create_app(base_settings(f"sqlite:///{tmp_path}/x.db", tmp_path))
    paths: set[Any] = {context.path for context in iter_route_contexts(app.routes)}
    for path in (
        "/healthz",
        "/metrics",
        "/sms/twilio",
        "/sms/twilio/status",
        "/ussd",
        "/telegram/webhook",
        "/c/{token}",
        "/c/{token}/qr.png",
        "/api/certificates/keys",
        "/api/verify",
        "/verify",
        "/api/verify-code",
        "/api/agent/token",
        "/api/agent/send-link",
        "/api/corrections",
        "/api/corrections/{ref}/resolve",
    ):
        assert path in paths
