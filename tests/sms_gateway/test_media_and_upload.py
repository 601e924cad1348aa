"""Photos for a report: MMS media fetched from Twilio (with the account credentials), and the
upload page linked by SMS."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient

from conversations.upload_links import make_upload_link
from db.secret_keys import SecretKeys
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewCorrection
from tests.fakes.twilio_api import TwilioStandIn
from tests.sms_gateway.conftest import PUBLIC, payload

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000
CUONG = "+84987654321"


def _open_case(client: TestClient) -> str:
    registry = client.app.state.registry  # type: ignore[attr-defined]

    async def submit() -> str:
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
        return case.ref

    return asyncio.run(submit())


def _attachments(client: TestClient, ref: str) -> list[tuple[str, int, str]]:
    registry = client.app.state.registry  # type: ignore[attr-defined]
    case = asyncio.run(registry.get_correction(ref))
    return [(a.content_type, a.size, a.storage_path) for a in case.attachments]


def _bind(client: TestClient) -> None:
    bindings = client.app.state.conversations.bindings  # type: ignore[attr-defined]
    registry = client.app.state.registry  # type: ignore[attr-defined]

    async def bind() -> None:
        person = await registry.find_person("048095006789", date(1995, 11, 30))
        await bindings.bind("sms", CUONG, person.id)

    asyncio.run(bind())


def test_mms_photo_is_downloaded_with_credentials_and_attached(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    with TwilioStandIn() as twilio:
        client = make_client(
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from=twilio.from_number,
            twilio_api_base=twilio.base_url,
        )
        ref = _open_case(client)
        _bind(client)
        body = payload("twilio_inbound_mms.form", media_url=twilio.add_media(JPEG, "image/jpeg"))
        from tests.sms_gateway.test_twilio_webhook import sign

        response = client.post(
            "/sms/twilio", content=body, headers=sign("/sms/twilio", body, twilio.auth_token)
        )
        assert response.status_code == 200
        assert f"Da dinh kem anh vao phan anh {ref}" in response.text
        [(content_type, size, path)] = _attachments(client, ref)
        assert content_type == "image/jpeg" and size == len(JPEG)
        assert Path(path).read_bytes() == JPEG and str(tmp_path / "uploads") in path


def test_mms_that_is_not_a_photo_is_refused_with_a_reason(make_client: Callable[..., TestClient]) -> None:
    with TwilioStandIn() as twilio:
        client = make_client(twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token)
        ref = _open_case(client)
        _bind(client)
        body = payload(
            "twilio_inbound_mms.form",
            media_url=twilio.add_media(b"MZ\x90\x00 exe", "application/x-msdownload"),
        )
        from tests.sms_gateway.test_twilio_webhook import sign

        response = client.post(
            "/sms/twilio", content=body, headers=sign("/sms/twilio", body, twilio.auth_token)
        )
        assert response.status_code == 200 and "Khong nhan duoc tep" in response.text
        assert _attachments(client, ref) == []


def test_upload_page_takes_a_photo_for_the_report(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    ref = _open_case(client)
    link = make_upload_link(PUBLIC, SecretKeys.derive("test-secret-key").upload_links, ref)
    path = link.removeprefix(PUBLIC)
    page = client.get(path)
    assert page.status_code == 200 and ref in page.text and 'type="file"' in page.text
    refused = client.post(path, files={"file": ("x.txt", b"hello", "text/plain")})
    assert refused.status_code == 415
    done = client.post(path, files={"file": ("card.jpg", JPEG, "image/jpeg")})
    assert done.status_code == 200 and f"phản ánh {ref}" in done.text
    assert [a[0] for a in _attachments(client, ref)] == ["image/jpeg"]


def test_upload_link_forged_or_expired(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/upload/not-a-token").status_code == 404
    forged = make_upload_link(PUBLIC, b"another-key", "PA-7K3D-9Q").removeprefix(PUBLIC)
    assert client.get(forged).status_code == 404
    raw_secret = make_upload_link(PUBLIC, b"test-secret-key", "PA-7K3D-9Q").removeprefix(PUBLIC)
    assert client.get(raw_secret).status_code == 404  # signed with SECRET_KEY itself: not a link of ours
    assert re.search(r"/upload/[\w.-]+$", make_upload_link(PUBLIC, b"k", "PA-7K3D-9Q"))
