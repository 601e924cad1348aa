"""End to end through the real service: the FastAPI app with the real engine, registry (demo data),
certificates and outbox worker; Telegram and Twilio are local stand-ins speaking their wire formats.

/start → share my contact → the one-time code goes by SMS to the phone the registry holds (read
from the Twilio stand-in) → the code → /status → /certificate (the QR photo decodes with zxing-cpp
to an HC1 string that /api/verify accepts) → /report with a photo → the site resolves it → the user
is told in Telegram through the outbox.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from conversations.i18n import t
from outbox.store import OutboundMessage
from registry_client.embedded.demo import DEMO_PEOPLE
from tests.bot.conftest import Service, bot_settings, running_service
from tests.fakes.telegram_api import Call, TelegramApiStandIn
from tests.fakes.twilio_api import TwilioStandIn

AN = DEMO_PEOPLE[0]  # Nguyễn Văn An, three doses, phone +84901234567
USER = {"id": 6100200300, "is_bot": False, "first_name": "An", "last_name": "Nguyễn", "language_code": "vi"}
CHAT = {"id": 6100200300, "first_name": "An", "last_name": "Nguyễn", "type": "private"}


class Phone:
    """A Telegram user in a private chat with the bot, posting real Update JSON to the webhook."""

    def __init__(self, service: Service) -> None:
        self.service, self.api = service, service.api
        self.update_id, self.message_id = 990000000, 100
        self.seen = 0

    def _update(self, **message: Any) -> dict[str, Any]:
        self.update_id += 1
        self.message_id += 1
        body = {"message_id": self.message_id, "from": USER, "chat": CHAT, "date": 1764061200, **message}
        return {"update_id": self.update_id, "message": body}

    async def _post(self, update: dict[str, Any]) -> list[Call]:
        response = await self.service.post(update)
        assert response.status_code == 200, response.text
        calls = [c for c in self.api.calls_of() if c.method not in ("getMe", "setMyCommands")]
        new, self.seen = calls[self.seen :], len(calls)
        return new

    async def say(self, text: str) -> list[Call]:
        if text.startswith("/"):
            entity = {"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}
            return await self._post(self._update(text=text, entities=[entity]))
        return await self._post(self._update(text=text))

    async def share_contact(self, phone: str) -> list[Call]:
        contact = {"phone_number": phone.lstrip("+"), "first_name": "An", "user_id": USER["id"]}
        return await self._post(self._update(contact=contact))

    async def send_photo(self, data: bytes) -> list[Call]:
        stored = self.api.add_file(data)
        size = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(data)}
        return await self._post(self._update(photo=[{**size, "width": 640, "height": 480}]))

    async def press(self, key: str) -> list[Call]:
        """Taps the button `key` on the newest message that has inline buttons."""
        with_buttons = [
            c
            for c in self.api.calls_of("sendMessage", "sendDocument")
            if "inline_keyboard" in c.params.get("reply_markup", {})
        ]
        assert with_buttons, "no message with buttons"
        sent = with_buttons[-1]
        keys = [b["callback_data"] for row in sent.params["reply_markup"]["inline_keyboard"] for b in row]
        assert key in keys, f"no button {key} in {keys}"
        self.update_id += 1
        message = {
            "message_id": 5000 + self.update_id % 1000,
            "from": {"id": 7000000001, "is_bot": True, "first_name": "VaxChannel"},
            "chat": CHAT,
            "date": 1764061200,
            "text": sent.params.get("text", ""),
            "reply_markup": sent.params["reply_markup"],
        }
        query = {
            "id": f"q{self.update_id}",
            "from": USER,
            "message": message,
            "chat_instance": "-1",
            "data": key,
        }
        return await self._post({"update_id": self.update_id, "callback_query": query})


def texts(calls: list[Call]) -> str:
    return "\n".join(str(c.params.get("text") or c.params.get("caption") or "") for c in calls)


@pytest.fixture
async def e2e(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[Service, TwilioStandIn]]:
    with TelegramApiStandIn() as telegram, TwilioStandIn() as twilio:
        settings = bot_settings(
            sqlite_url,
            tmp_path,
            telegram,
            twilio_api_base=twilio.base_url,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from=twilio.from_number,
            run_workers=True,
            outbox_poll_seconds=0.1,
        )
        async for service in running_service(settings, telegram):
            yield service, twilio


async def log_in(phone: Phone, twilio: TwilioStandIn) -> str:
    """Share my contact, read the code from the SMS to the registry's phone, type it."""
    calls = await phone.share_contact(AN.phone)
    assert t("vi", "login.phone_code_sent") in texts(calls)
    sms = await twilio.wait_for_async(to=AN.phone, timeout=10)  # the registry's phone for An
    found = re.search(r"\b(\d{6})\b", sms.body)
    assert found, sms.body
    calls = await phone.say(found.group(1))
    assert "Đã xác thực" in texts(calls)
    return found.group(1)


def decode_qr(png: bytes) -> str:
    (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return barcode.text


async def outbox_row(service: Service, channel: str, address: str) -> Any:
    rows = await service.app.state.outbox.messages_to(channel, address)
    assert rows, f"no outbox row to {channel}:{address}"
    return rows[-1]


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_start_login_status_certificate_report_resolved(e2e: tuple[Service, TwilioStandIn]) -> None:
    service, twilio = e2e
    api = service.api
    phone = Phone(service)

    # /start: a welcome and the main menu as buttons
    calls = await phone.say("/start")
    assert t("vi", "welcome") in texts(calls)
    menu = calls[-1].params["reply_markup"]["inline_keyboard"]
    assert [b["callback_data"] for row in menu for b in row][:4] == ["1", "2", "3", "4"]

    # sharing my own contact logs me in with a code sent by SMS to the registry's phone
    await log_in(phone, twilio)

    # /status lists the three doses
    calls = await phone.say("/status")
    status = texts(calls)
    assert "Mũi 1: AstraZeneca, 02/08/2021" in status and "Mũi 3 (nhắc lại): Pfizer, 10/03/2022" in status

    # /certificate: a photo with a caption and the same PNG as a document; the QR verifies
    calls = await phone.say("/certificate")
    photo, document = (c for c in calls if c.method in ("sendPhoto", "sendDocument"))
    assert photo.method == "sendPhoto" and document.method == "sendDocument"
    assert "Nguyễn Văn An" in photo.params["caption"] and "Pfizer" in photo.params["caption"]
    png = photo.files["photo"].data
    assert document.files["document"].data == png
    hc1 = decode_qr(png)
    assert hc1.startswith("HC1:") and decode_qr(document.files["document"].data) == hc1
    verdict = (await service.client.post("/api/verify", json={"hc1": hc1})).json()
    assert verdict["valid"] is True, verdict
    assert verdict["holder"]["date_of_birth"] == "1985-03-14"

    # /report: a missing booster, through buttons and typed answers, then a photo of the paper card
    await phone.say("/report")
    await phone.press("1")  # missing dose
    await phone.press("4")  # the booster
    await phone.say("15062023")
    await phone.say("HN002")
    await phone.press("2")  # Pfizer
    await phone.press("9")  # workplace: skip
    await phone.press("1")  # contact: my registered phone
    calls = await phone.press("1")  # send
    found = re.search(r"PA-[0-9A-Z]{4}-[0-9A-Z]{2}", texts(calls))
    assert found, texts(calls)
    ref = found.group(0)
    assert "Bệnh viện Bạch Mai" in texts(calls)
    jpeg = io.BytesIO()
    Image.new("RGB", (640, 480), (230, 230, 210)).save(jpeg, "JPEG")
    calls = await phone.send_photo(jpeg.getvalue())
    assert t("vi", "attach.ok", ref=ref) in texts(calls)
    case = await service.app.state.registry.get_correction(ref)
    (attachment,) = case.attachments
    assert Path(attachment.storage_path).read_bytes() == jpeg.getvalue()

    # the site resolves it through the console's API; the first notification attempt hits 429
    await service.app.state.console.users.create("bachmai", "site", "HN002", "Bach-Mai-2025-site!", "test")
    token = (
        await service.client.post(
            "/api/agent/token", json={"username": "bachmai", "password": "Bach-Mai-2025-site!"}
        )
    ).json()["token"]
    api.fail_next("sendMessage", "429", retry_after=1)
    resolved = await service.client.post(
        f"/api/corrections/{ref}/resolve",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "decision": "approved",
            "note": "Đã đối chiếu sổ tiêm",
            "dose": {
                "dose_number": 4,
                "vaccine": "Pfizer",
                "lot": "FP1234",
                "administered_on": "2023-06-15",
                "site_code": "HN002",
            },
        },
    )
    assert resolved.status_code == 200, resolved.text
    chat = str(CHAT["id"])

    async def told() -> bool:
        return (await outbox_row(service, "telegram", chat)).status == "sent"

    await wait_until(told)
    row = await outbox_row(service, "telegram", chat)
    assert row.attempts == 2 and row.error_code == "429"  # waited Telegram's retry_after, then sent
    attempts = [
        c
        for c in api.calls_of("sendMessage")
        if "đã được duyệt" in c.params["text"] and c.params["chat_id"] == chat
    ]
    assert len(attempts) == 2  # the refused one and the delivered one
    assert ref in attempts[-1].params["text"] and attempts[0].params == attempts[1].params
    assert (await service.app.state.registry.list_doses(case.person_id))[-1].dose_number == 4


async def test_blocked_bot_is_not_retried_and_logout_removes_the_binding(
    e2e: tuple[Service, TwilioStandIn],
) -> None:
    service, twilio = e2e
    phone = Phone(service)
    await phone.say("/start")
    await log_in(phone, twilio)
    chat = str(CHAT["id"])
    bindings = service.app.state.conversations.bindings
    person = await service.app.state.registry.find_person(AN.national_id, AN.date_of_birth)
    assert await bindings.addresses_for_person(person.id, "telegram") == [chat]

    service.api.block_chat(chat)
    await service.app.state.outbox.put(
        OutboundMessage(channel="telegram", address=chat, kind="notification", text="Thông báo thử")
    )

    async def unreachable() -> bool:
        return (await outbox_row(service, "telegram", chat)).status == "unreachable"

    await wait_until(unreachable)
    assert await bindings.addresses_for_person(person.id, "telegram") == []  # no more notifications
    await asyncio.sleep(0.3)
    assert len([c for c in service.api.calls_of("sendMessage") if c.params["text"] == "Thông báo thử"]) == 1

    # the user unblocks the bot and logs out: the binding is gone
    service.api.unblock_chat(chat)
    calls = await phone.say("/logout")
    assert calls and calls[0].method == "sendMessage"
    assert await bindings.persons_for("telegram", chat) == []
    calls = await phone.say("/status")
    assert "CCCD" in texts(calls)  # asked to log in again
