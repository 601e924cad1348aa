"""WhatsApp rows of the outbox sent through the real twilio SDK to the Twilio stand-in, and the
conversation's WhatsApp budget (conversations.rendering)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conversations.model import Channel, Option, Reply
from conversations.outbound import make_renderer
from conversations.rendering import WHATSAPP_MAX_CHARS, fits, paginate
from db.base import make_async_engine, make_sessionmaker
from outbox.sealing import OutboxSeal
from outbox.store import SENT, OutboundMessage, Outbox
from outbox.tables import OutboxRow
from outbox.worker import OutboxWorker
from settings import Settings
from sms_gateway.sender import TwilioSender, WhatsAppSender
from sms_gateway.whatsapp import qr_link
from tests.fakes.twilio_api import TwilioStandIn

TO = "+84901234567"
WA_FROM = "+14155238886"


@pytest.fixture
async def setup(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[TwilioStandIn, Outbox, OutboxWorker]]:
    engine = make_async_engine(sqlite_url)
    with TwilioStandIn() as twilio:
        settings = Settings(
            data_dir=tmp_path,
            secret_key="sender-tests",
            public_base_url="https://vax.example.org",
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_from=twilio.from_number,
            twilio_api_base=twilio.base_url,
            twilio_whatsapp_from=WA_FROM,
        )
        assert settings.whatsapp_enabled and settings.whatsapp_sending
        outbox = Outbox(make_sessionmaker(engine), seal=OutboxSeal(settings.secret_keys.outbox_seal))
        worker = OutboxWorker(
            outbox,
            {"sms": TwilioSender(settings, timeout=2), "whatsapp": WhatsAppSender(settings, timeout=2)},
            make_renderer(strip_sms_diacritics=True, hotline="1900 9095"),
        )
        yield twilio, outbox, worker
    await engine.dispose()


async def _stored(outbox: Outbox, row_id: int | None) -> OutboxRow:
    async with outbox.sessions() as db:
        row = await db.get(OutboxRow, row_id)
        assert row is not None
        return row


async def test_a_reply_goes_from_the_whatsapp_number_with_its_diacritics(setup) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker = setup
    await outbox.put(OutboundMessage("whatsapp", TO, "reply", text="Mũi 1: AstraZeneca\n0 Menu chính"))
    assert await worker.run_once() == 1
    message = await twilio.wait_for_async(to=f"whatsapp:{TO}")
    assert message.from_ == f"whatsapp:{WA_FROM}" and message.body == "Mũi 1: AstraZeneca\n0 Menu chính"
    assert message.media_urls == [] and message.status_callback == "https://vax.example.org/sms/twilio/status"


async def test_the_certificate_is_an_image_message_whose_link_stays_sealed(setup) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker = setup
    url = qr_link("https://vax.example.org/c/tok.EN123?lang=en")
    assert url == "https://vax.example.org/c/tok.EN123/qr.png?lang=en"
    row_id = await outbox.put(
        OutboundMessage("whatsapp", TO, "certificate", text="Nguyễn Văn An, 14/03/1985", params={"url": url})
    )
    stored = await _stored(outbox, row_id)
    assert url not in str(stored.params) and stored.sealed  # the console never sees the link
    assert await worker.run_once() == 1
    message = await twilio.wait_for_async(to=f"whatsapp:{TO}")
    assert message.media_urls == [url] and message.body == "Nguyễn Văn An, 14/03/1985"
    done = await _stored(outbox, row_id)
    assert done.status == SENT and done.provider_id == message.sid and done.sealed is None


async def test_a_reply_row_never_carries_media(setup) -> None:  # type: ignore[no-untyped-def]
    """Only a certificate row names a MediaUrl: a `url` param on any other row is not sent as media."""
    twilio, outbox, worker = setup
    await outbox.put(OutboundMessage("whatsapp", TO, "reply", text="hi", params={"url": "http://10.0.0.1/x"}))
    await worker.run_once()
    assert (await twilio.wait_for_async(to=f"whatsapp:{TO}")).media_urls == []


async def test_sms_rows_still_go_from_the_sms_number(setup) -> None:  # type: ignore[no-untyped-def]
    twilio, outbox, worker = setup
    await outbox.put(OutboundMessage("sms", TO, "notification", text="Mũi đã ghi nhận"))
    await worker.run_once()
    message = await twilio.wait_for_async(to=TO)
    assert message.from_ == twilio.from_number and message.body == "Mui da ghi nhan"


def test_whatsapp_budget_keeps_diacritics_and_takes_a_long_answer_whole() -> None:
    options = tuple(Option(str(i), f"Lựa chọn {i}") for i in range(1, 11))  # ten numbered options
    long = Reply("Mũi tiêm " * 150, options)  # ~1350 characters: 9 SMS segments, one WhatsApp message
    assert fits(Channel.WHATSAPP, long, False, strip=False)
    assert not fits(Channel.SMS, long, False, strip=False)
    too_long = Reply("x" * WHATSAPP_MAX_CHARS, ())
    assert not fits(Channel.WHATSAPP, Reply(too_long.text, (Option("0", "Menu"),)), False, strip=False)
    more = Option("98", "Xem tiếp")
    pages = paginate(
        "Dòng " * 800, (Option("0", "Menu"),), more, lambda r: fits(Channel.WHATSAPP, r, False, strip=False)
    )
    assert len(pages) == 3 and all(len(p.text) <= WHATSAPP_MAX_CHARS for p in pages)
    assert pages[0].options == (more, Option("0", "Menu")) and pages[-1].options == (Option("0", "Menu"),)
