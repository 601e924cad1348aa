"""The outbox sender for channel "telegram": a notification reaches the chat through the Bot API
stand-in; 429 waits Telegram's retry_after, 5xx retries with backoff, 403 (blocked) stops for good
and marks the chat unreachable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from outbox.store import OutboundMessage, Outbox
from outbox.tables import OutboxRow
from outbox.worker import OutboxWorker
from registry_client.embedded.demo import DEMO_PEOPLE
from tests.bot.conftest import USER_ID, Service

CHAT = str(USER_ID)
AN = DEMO_PEOPLE[0]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _row(service: Service, row_id: int) -> OutboxRow:
    async with service.app.state.db_sessions() as session:
        row = await session.scalar(select(OutboxRow).where(OutboxRow.id == row_id))
        assert row is not None
        return row


def _worker(service: Service, clock: Clock) -> tuple[Outbox, OutboxWorker]:
    """The service's own telegram sender, in a worker whose clock the test moves."""
    outbox = Outbox(service.app.state.db_sessions, seal=service.app.state.outbox.seal, clock=clock)
    return outbox, OutboxWorker(outbox, {"telegram": service.app.state.telegram.sender})


async def _bound_person(service: Service) -> str:
    """An is logged in on this chat (a verified binding in the engine's store)."""
    person = await service.app.state.registry.find_person(AN.national_id, AN.date_of_birth)
    await service.app.state.conversations.bindings.bind("telegram", CHAT, person.id)
    return str(person.id)


async def _reachable(service: Service, person_id: str) -> bool:
    bindings = service.app.state.conversations.bindings
    return CHAT in await bindings.addresses_for_person(person_id, "telegram")


def _notification(text: str = "Phản ánh PA-7K3D-9Q đã được xử lý: mũi 3 đã được bổ sung.") -> OutboundMessage:
    return OutboundMessage(channel="telegram", address=CHAT, kind="notification", text=text)


async def test_notification_is_sent_to_the_chat(service: Service) -> None:
    clock = Clock()
    outbox, worker = _worker(service, clock)
    row_id = await outbox.put(_notification())
    assert await worker.run_once() == 1
    (call,) = service.api.calls_of("sendMessage")
    assert call.params == {"chat_id": CHAT, "text": _notification().text}
    row = await _row(service, row_id)
    assert row.status == "sent" and row.provider_id and int(row.provider_id) > 1000


async def test_429_waits_for_telegrams_retry_after_then_sends(service: Service) -> None:
    clock = Clock()
    outbox, worker = _worker(service, clock)
    row_id = await outbox.put(_notification())
    service.api.fail_next("sendMessage", "429", retry_after=37)
    await worker.run_once()
    row = await _row(service, row_id)
    assert (row.status, row.error_code) == ("pending", "429")
    assert row.next_attempt_at.replace(tzinfo=UTC) == clock.now + timedelta(seconds=37)
    clock.now += timedelta(seconds=36)
    assert await worker.run_once() == 0  # not before Telegram allows it
    clock.now += timedelta(seconds=1)
    assert await worker.run_once() == 1
    assert (await _row(service, row_id)).status == "sent"
    assert len(service.api.calls_of("sendMessage")) == 2


async def test_5xx_is_retried_with_backoff(service: Service) -> None:
    clock = Clock()
    outbox, worker = _worker(service, clock)
    person_id = await _bound_person(service)
    row_id = await outbox.put(_notification())
    service.api.fail_next("sendMessage", "500", times=2)
    await worker.run_once()
    first = await _row(service, row_id)
    assert (first.status, first.error_code, first.attempts) == ("pending", "network", 1)
    clock.now = first.next_attempt_at.replace(tzinfo=UTC)
    await worker.run_once()
    second = await _row(service, row_id)
    assert second.status == "pending" and second.attempts == 2
    assert (
        second.next_attempt_at.replace(tzinfo=UTC) - clock.now
        > first.next_attempt_at.replace(tzinfo=UTC) - Clock().now
    )  # the wait grows
    clock.now = second.next_attempt_at.replace(tzinfo=UTC)
    await worker.run_once()
    assert (await _row(service, row_id)).status == "sent"
    assert await _reachable(service, person_id)  # a server error says nothing about the chat


async def test_blocked_bot_marks_the_chat_unreachable_and_stops(service: Service) -> None:
    clock = Clock()
    outbox, worker = _worker(service, clock)
    person_id = await _bound_person(service)
    service.api.block_chat(CHAT)
    row_id = await outbox.put(_notification())
    await worker.run_once()
    row = await _row(service, row_id)
    assert (row.status, row.error_code) == ("unreachable", "403")
    assert "blocked" in (row.last_error or "")
    assert not await _reachable(service, person_id)  # the engine stops addressing this chat
    clock.now += timedelta(days=1)
    assert await worker.run_once() == 0  # never tried again
    assert len(service.api.calls_of("sendMessage")) == 1


async def test_long_notification_is_split_and_media_goes_as_photo(service: Service, tmp_path: Path) -> None:
    clock = Clock()
    outbox, worker = _worker(service, clock)
    await outbox.put(_notification("x" * 5000))
    png = tmp_path / "qr.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    await outbox.put(
        OutboundMessage(
            channel="telegram", address=CHAT, kind="certificate", text="Chứng nhận", media_path=str(png)
        )
    )
    await worker.run_once()
    assert [len(c.params["text"]) for c in service.api.calls_of("sendMessage")] == [4096, 904]
    (photo,) = service.api.calls_of("sendPhoto")
    assert photo.params["caption"] == "Chứng nhận" and photo.files["photo"].data == png.read_bytes()
