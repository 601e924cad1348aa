"""MMS media (`MediaUrl0` of a signed Twilio webhook) is fetched from Twilio only.

The attack: any sender names any URL in `MediaUrl0`; the service fetched it (following
redirects) and echoed the target's status and content type in the reply — a server-side
request forgery and a port scanner. Here a second local server plays the attacker's target: it
must never receive a request, whether named directly, reached by a redirect from the Twilio
host, or hidden behind tricks on the Twilio host's name. The honest photo still arrives.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from sms_gateway import media
from tests.conversations.conftest import demo_template, demo_url  # noqa: F401 (fixtures)
from tests.fakes.twilio_api import TwilioStandIn
from tests.sms_gateway.conftest import PUBLIC, make_client, payload  # noqa: F401 (fixture)

CUONG = "+84987654321"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000


class EvilServer:
    """An internal service the attacker would like to reach; it counts every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.path)
                body = b"root:x:0:0:secret"
                self.send_response(418)
                self.send_header("Content-Type", "text/x-internal-secret")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> EvilServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def evil() -> Iterator[EvilServer]:
    with EvilServer() as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def client(make_client: Callable[..., TestClient], twilio: TwilioStandIn) -> TestClient:  # noqa: F811
    client = make_client(
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.from_number,
        twilio_api_base=twilio.base_url,
    )
    registry = client.app.state.registry  # type: ignore[attr-defined]
    bindings = client.app.state.conversations.bindings  # type: ignore[attr-defined]

    async def open_case() -> str:
        person = await registry.find_person("048095006789", date(1995, 11, 30))
        case = await registry.submit_correction(
            NewCorrection(
                kind=CaseKind.MISSING_DOSE,
                doses_concerned=DosesConcerned.FIRST,
                claimed=ClaimedDose(),
                channel="sms",
                channel_address=CUONG,
                person_id=person.id,
            )
        )
        await bindings.bind("sms", CUONG, person.id)
        return case.ref

    client.case_ref = asyncio.run(open_case())  # type: ignore[attr-defined]
    return client


def send_mms(client: TestClient, twilio: TwilioStandIn, media_url: str) -> str:
    """Posts a signed inbound MMS naming `media_url`; returns the TwiML reply."""
    params = dict(
        parse_qsl(payload("twilio_inbound_mms.form", media_url="x").decode(), keep_blank_values=True)
    )
    sid = "MM" + uuid.uuid4().hex
    params.update(MediaUrl0=media_url, MessageSid=sid, SmsSid=sid, SmsMessageSid=sid)
    body = urlencode(params).encode()
    signature = RequestValidator(twilio.auth_token).compute_signature(PUBLIC + "/sms/twilio", params)
    response = client.post(
        "/sms/twilio",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert response.status_code == 200
    return response.text


def attachments(client: TestClient) -> list[Path]:
    registry = client.app.state.registry  # type: ignore[attr-defined]

    async def read() -> list[Path]:
        case = await registry.get_correction(client.case_ref)  # type: ignore[attr-defined]
        return [Path(a.storage_path) for a in case.attachments]

    return asyncio.run(read())


def test_a_url_off_the_twilio_host_is_never_requested_and_not_echoed(
    client: TestClient, twilio: TwilioStandIn, evil: EvilServer
) -> None:
    for url in (
        f"{evil.url}/admin",
        f"{evil.url}/2010-04-01/Accounts/{twilio.account_sid}/Messages/MM1/Media/ME1",  # Twilio's path
        f"{twilio.base_url}@{evil.url.removeprefix('http://')}/x",  # user-info trick
        f"{twilio.base_url}/../../admin",
    ):
        reply = send_mms(client, twilio, url)
        assert "418" not in reply and "x-internal-secret" not in reply and "root:" not in reply
    assert evil.requests == []
    assert attachments(client) == []


def test_a_redirect_from_the_twilio_host_to_an_internal_address_is_not_followed(
    client: TestClient, twilio: TwilioStandIn, evil: EvilServer
) -> None:
    for location in (
        f"{evil.url}/latest/meta-data/",
        "https://127.0.0.1/x",
        "https://media.twiliocdn.com.evil.test/",
    ):
        reply = send_mms(client, twilio, twilio.add_media_redirect(location))
        assert "418" not in reply and "307" not in reply
    assert evil.requests == []
    assert attachments(client) == []


def test_a_non_image_from_twilio_is_refused_without_echoing_its_type(
    client: TestClient, twilio: TwilioStandIn
) -> None:
    reply = send_mms(client, twilio, twilio.add_media(b"<html>internal</html>", "text/x-internal-secret"))
    assert "x-internal-secret" not in reply and "internal" not in reply
    assert attachments(client) == []


def test_the_honest_photo_arrives_with_the_account_credentials(
    client: TestClient, twilio: TwilioStandIn
) -> None:
    # the stand-in answers 401 to a media GET without the account's basic auth
    send_mms(client, twilio, twilio.add_media(JPEG, "image/jpeg"))
    [path] = attachments(client)
    assert path.read_bytes() == JPEG
    assert media.is_twilio_media_url(
        "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages/MM456/Media/ME789",
        "https://api.twilio.com",
    )
    assert not media.is_twilio_media_url(
        "https://api.twilio.com.evil.test/2010-04-01/Accounts/AC1/Messages/MM4/Media/ME7",
        "https://api.twilio.com",
    )


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("https://127.0.0.1/x", False),
        ("https://169.254.169.254/latest/meta-data/", False),
        ("http://media.twiliocdn.com/x", False),  # not https
        ("https://evil.test/x", False),
        ("https://user@media.twiliocdn.com/x", False),
        ("https://s3-external-1.amazonaws.com/someone-elses-bucket/x", False),  # Twilio's bucket only
    ],
)
def test_redirect_targets_off_the_allow_list_are_refused(target: str, allowed: bool) -> None:
    assert asyncio.run(media._redirect_allowed(target)) is allowed


@pytest.mark.parametrize(
    ("target", "resolved", "allowed"),
    [
        ("https://mms.twiliocdn.com/AC1/abc", "54.172.60.1", True),
        ("https://s3-external-1.amazonaws.com/media.twiliocdn.com/AC1/abc", "52.216.0.1", True),
        ("https://mms.twiliocdn.com/AC1/abc", "10.1.2.3", False),  # a Twilio name pointing inside
        ("https://media.twiliocdn.com/x", "169.254.169.254", False),
    ],
)
def test_twilio_cdn_redirects_are_followed_only_to_public_addresses(
    monkeypatch: pytest.MonkeyPatch, target: str, resolved: str, allowed: bool
) -> None:
    async def fake_getaddrinfo(host: str, port: object, **kw: object) -> list[tuple[Any, ...]]:
        return [(2, 1, 6, "", (resolved, 443))]

    async def check() -> bool:
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
        return await media._redirect_allowed(target)

    assert asyncio.run(check()) is allowed
