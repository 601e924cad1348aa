"""The webhook and the adapter: recorded Update payloads posted to /telegram/webhook, assertions on
the Bot API calls the stand-in recorded.

The engine here is a throwaway double that returns canned Turns (the real engine is another
team's work in progress); the end-to-end test in test_end_to_end.py uses the real one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conversations.model import Certificate, Inbound, Option, Reply, Turn
from tests.bot.conftest import SECRET, USER_ID, Service, payload

PHOTO_LARGE = "AgACAgUAAxkBAAIBOWdEm1_large_JvYQACo74xG1n9IVZ7x2o9AQADAgADeQADNgQ"
PNG_DOC = "BQACAgUAAxkBAAIBPGdEnA7png_LQ2YEvPhq9Wl0z0k2AAJ8FAACWf0hVj9gU2h1S2LhNgQ"


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


class CannedBindings:
    def __init__(self) -> None:
        self.unreachable: list[tuple[str, str]] = []

    async def mark_unreachable(self, channel: str, address: str) -> None:
        self.unreachable.append((channel, address))


class CannedEngine:
    """Returns `answer(inbound)` (default: an echo with two options) and records every Inbound."""

    def __init__(self, answer: Callable[[Inbound], Turn] | None = None) -> None:
        self.inbounds: list[Inbound] = []
        self.bindings = CannedBindings()
        self.answer = answer or (
            lambda i: Turn(
                [
                    Reply(
                        f"echo {i.command or i.choice or i.text}",
                        (Option("1", "Mũi tiêm"), Option("2", "QR")),
                    )
                ]
            )
        )

    async def handle(self, inbound: Inbound) -> Turn:
        self.inbounds.append(inbound)
        return self.answer(inbound)


@pytest.fixture
def engine(service: Service) -> CannedEngine:
    canned = CannedEngine()
    service.app.state.conversations = canned
    return canned


def sent_texts(service: Service) -> list[str]:
    return [c.params["text"] for c in service.api.calls_of("sendMessage")]


async def test_startup_registers_commands_in_both_languages(service: Service) -> None:
    calls = service.api.calls_of("setMyCommands")
    assert len(calls) == 2
    vi, en = calls
    assert "language_code" not in vi.params and en.params["language_code"] == "en"
    names = [c["command"] for c in vi.params["commands"]]
    assert names == ["start", "status", "certificate", "report", "check", "language", "help", "logout"]
    assert [c["command"] for c in en.params["commands"]] == names
    assert "Xem các mũi tiêm" in vi.params["commands"][1]["description"]
    assert service.api.calls_of("getMe") and not service.api.calls_of("setWebhook")  # http base: no webhook


async def test_text_message_goes_to_the_engine_and_options_become_inline_buttons(
    service: Service, engine: CannedEngine
) -> None:
    response = await service.post(payload("text_message"))
    assert response.status_code == 200 and response.json()["ok"] is True
    (inbound,) = engine.inbounds
    assert (inbound.channel, inbound.address, inbound.text) == ("telegram", str(USER_ID), "Xin chào")
    assert inbound.user_name == "An Nguyễn"
    (call,) = service.api.calls_of("sendMessage")
    assert call.params["chat_id"] == str(USER_ID) and call.params["text"] == "echo Xin chào"
    keyboard = call.params["reply_markup"]["inline_keyboard"]
    assert keyboard == [[{"text": "Mũi tiêm", "callback_data": "1"}, {"text": "QR", "callback_data": "2"}]]


async def test_commands_map_to_neutral_names(service: Service, engine: CannedEngine) -> None:
    await service.post(payload("command_start"))
    await service.post(payload("command_check"))
    start, check = engine.inbounds
    assert (start.command, start.argument) == ("start", None)
    assert (check.command, check.argument) == ("check", "PA-7K3D-9Q")
    entity = [{"offset": 0, "length": 9, "type": "bot_command"}]
    await service.post(payload("command_start", update_id=1, text="/whatever", entities=entity))
    assert engine.inbounds[-1].command is None and engine.inbounds[-1].text == "/whatever"


async def test_ask_contact_gives_a_request_contact_button_and_own_contact_becomes_shared_phone(
    service: Service, engine: CannedEngine
) -> None:
    engine.answer = lambda i: Turn(
        [Reply("Chia sẻ số điện thoại hoặc nhập CCCD", ask_contact=True)]
        if i.command
        else [Reply("Mã đã gửi qua SMS")]
    )
    await service.post(payload("command_start"))
    markup = service.api.calls_of("sendMessage")[-1].params["reply_markup"]
    assert markup["keyboard"] == [[{"text": "📱 Chia sẻ số điện thoại của tôi", "request_contact": True}]]
    assert markup["one_time_keyboard"] is True and markup["resize_keyboard"] is True

    await service.post(payload("contact_own"))
    assert engine.inbounds[-1].shared_phone == "+84901234567"
    last = service.api.calls_of("sendMessage")[-1].params
    assert last["text"] == "Mã đã gửi qua SMS" and last["reply_markup"] == {"remove_keyboard": True}


async def test_someone_elses_contact_is_refused_without_asking_the_engine(
    service: Service, engine: CannedEngine
) -> None:
    await service.post(payload("contact_foreign"))
    assert engine.inbounds == []
    (call,) = service.api.calls_of("sendMessage")
    assert "chỉ nhận số điện thoại của chính bạn" in call.params["text"]
    assert call.params["reply_markup"]["keyboard"][0][0]["request_contact"] is True


async def test_photo_is_downloaded_checked_and_stored(service: Service, engine: CannedEngine) -> None:
    jpeg = image_bytes()
    service.api.add_file(jpeg, file_id=PHOTO_LARGE)
    await service.post(payload("photo"))
    (get_file,) = service.api.calls_of("getFile")
    assert get_file.params["file_id"] == PHOTO_LARGE  # the largest size
    (inbound,) = engine.inbounds
    assert inbound.text == "Giấy xác nhận mũi 3" and inbound.rejected_media is None
    (media,) = inbound.media
    stored = Path(media.storage_path)
    assert stored.read_bytes() == jpeg and media.content_type == "image/jpeg" and media.size == len(jpeg)
    assert stored.is_relative_to(service.settings.data_dir / "uploads")


async def test_png_document_is_accepted_and_a_pdf_is_refused(service: Service, engine: CannedEngine) -> None:
    png = image_bytes("PNG")
    service.api.add_file(png, file_id=PNG_DOC, suffix="png")
    await service.post(payload("document_png"))
    await service.post(payload("document_pdf"))
    png_in, pdf_in = engine.inbounds
    assert png_in.media[0].content_type == "image/png" and png_in.media[0].filename == "scan_the_tiem.png"
    assert Path(png_in.media[0].storage_path).read_bytes() == png
    assert pdf_in.media == () and pdf_in.rejected_media == "application/pdf"
    assert len(service.api.calls_of("getFile")) == 1  # the PDF was never downloaded


async def test_a_file_that_lies_about_being_an_image_or_is_too_big_is_refused(
    service: Service, engine: CannedEngine
) -> None:
    service.api.add_file(b"%PDF-1.7 not an image", file_id=PNG_DOC, suffix="png")
    await service.post(payload("document_png"))
    big = payload("photo", update_id=2)
    big["message"]["photo"][-1]["file_size"] = 12 * 1024 * 1024
    await service.post(big)
    liar, too_big = engine.inbounds
    assert liar.rejected_media == "không phải JPEG/PNG · not JPEG/PNG"
    assert too_big.rejected_media == "12.0 MB > 10 MB"
    assert not list((service.settings.data_dir / "uploads").rglob("*.*"))


async def test_button_press_is_acknowledged_and_its_message_edited(
    service: Service, engine: CannedEngine
) -> None:
    await service.post(payload("callback_query"))
    assert engine.inbounds[0].choice == "1"
    methods = [c.method for c in service.api.calls if c.method != "getMe" and c.method != "setMyCommands"]
    assert methods == ["answerCallbackQuery", "editMessageText", "sendMessage"]
    (answer,) = service.api.calls_of("answerCallbackQuery")
    assert answer.params["callback_query_id"] == "2354437612489512345"
    (edit,) = service.api.calls_of("editMessageText")
    assert edit.params["message_id"] == "1003" and edit.params["chat_id"] == str(USER_ID)
    assert edit.params["text"].endswith("✔ Đã chọn: Xem mũi tiêm") and "reply_markup" not in edit.params


@pytest.mark.parametrize("name", ["edited_message", "unknown_update_type", "group_text"])
async def test_updates_that_are_not_conversation_input_are_ignored(
    service: Service, engine: CannedEngine, name: str
) -> None:
    response = await service.post(payload(name))
    assert response.status_code == 200
    assert engine.inbounds == [] and sent_texts(service) == []


async def test_sticker_gets_a_polite_answer(service: Service, engine: CannedEngine) -> None:
    assert (await service.post(payload("sticker"))).status_code == 200
    assert engine.inbounds == []
    assert sent_texts(service) == ["Tôi chỉ đọc được tin nhắn chữ, nút bấm và ảnh. Gõ /help để xem các lệnh."]


async def test_a_command_in_a_group_is_answered_with_an_invitation_to_a_private_chat(
    service: Service, engine: CannedEngine
) -> None:
    await service.post(payload("group_message"))
    assert engine.inbounds == []
    (call,) = service.api.calls_of("sendMessage")
    assert call.params["chat_id"] == "-1001849215534" and "nhắn riêng" in call.params["text"]


async def test_a_user_blocking_the_bot_marks_the_chat_unreachable(
    service: Service, engine: CannedEngine
) -> None:
    await service.post(payload("my_chat_member_blocked"))
    assert engine.bindings.unreachable == [("telegram", str(USER_ID))]


async def test_wrong_or_missing_secret_is_403(service: Service, engine: CannedEngine) -> None:
    assert (await service.post(payload("text_message"), secret="wrong")).status_code == 403
    assert (await service.post(payload("text_message"), secret=None)).status_code == 403
    assert engine.inbounds == []
    assert (await service.post(payload("text_message"), secret=SECRET)).status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'{"message": {}}', b'{"update_id": "x"}'])
async def test_malformed_body_is_400(service: Service, engine: CannedEngine, body: bytes) -> None:
    response = await service.post(body)
    assert response.status_code == 400 and response.json()["ok"] is False
    assert engine.inbounds == []


async def test_a_redelivered_update_is_processed_once(service: Service, engine: CannedEngine) -> None:
    first = await service.post(payload("text_message"))
    again = await service.post(payload("text_message"))
    assert first.json()["description"] == "processed" and again.json()["description"] == "duplicate"
    assert again.status_code == 200  # Telegram must stop redelivering
    assert len(engine.inbounds) == 1 and len(service.api.calls_of("sendMessage")) == 1


async def test_long_answers_are_split_under_4096_characters(service: Service, engine: CannedEngine) -> None:
    line = "Mũi {n}: Vắc xin AstraZeneca, ngày 02/08/2021, Trạm Y tế Phường Dịch Vọng, lô AZ-NV4211\n"
    long_text = "".join(line.format(n=n) for n in range(120))
    engine.answer = lambda i: Turn([Reply(long_text, (Option("0", "Quay lại"),))])
    await service.post(payload("text_message"))
    calls = service.api.calls_of("sendMessage")
    assert len(calls) >= 3
    assert all(len(c.params["text"]) <= 4096 for c in calls)
    assert "".join(c.params["text"] + "\n" for c in calls) == long_text  # cut between lines, nothing lost
    assert [("reply_markup" in c.params) for c in calls] == [False] * (len(calls) - 1) + [True]


async def test_certificate_goes_as_photo_with_caption_and_as_an_untouched_document(
    service: Service, engine: CannedEngine
) -> None:
    png = image_bytes("PNG", (300, 300))
    caption = "Nguyễn Văn An · 3 mũi · hiệu lực đến 25/11/2026"
    cert = Certificate(png=png, hc1="HC1:XYZ", link="https://example.vn/c/abc", caption=caption)
    engine.answer = lambda i: Turn([Reply(caption, certificate=cert)])
    await service.post(payload("command_start"))
    (photo,) = service.api.calls_of("sendPhoto")
    (document,) = service.api.calls_of("sendDocument")
    assert photo.params["caption"] == caption and photo.files["photo"].data == png
    assert document.files["document"].data == png
    assert document.files["document"].filename.endswith(".png")
    assert document.params["disable_content_type_detection"] in ("true", True)
    assert service.api.calls_of("sendMessage") == []  # the caption already says it


async def test_an_engine_failure_gets_a_friendly_answer_not_a_500(
    service: Service, engine: CannedEngine
) -> None:
    def broken(inbound: Inbound) -> Turn:
        raise RuntimeError("database exploded")

    engine.answer = broken
    response = await service.post(payload("text_message"))
    assert response.status_code == 200
    assert sent_texts(service) == ["Xin lỗi, hệ thống đang gặp sự cố. Vui lòng thử lại sau ít phút."]


async def test_english_speaking_user_gets_english_adapter_texts(
    service: Service, engine: CannedEngine
) -> None:
    sticker: dict[str, Any] = payload("sticker")
    sticker["message"]["from"]["language_code"] = "en"
    await service.post(sticker)
    assert sent_texts(service) == [
        "I can read text, buttons and photos only. Send /help to see the commands."
    ]


async def test_an_answer_that_cannot_reach_telegram_asks_for_a_redelivery(
    service: Service, engine: CannedEngine
) -> None:
    service.api.fail_next("sendMessage", "500")
    first = await service.post(payload("text_message"))
    assert first.status_code == 503  # Telegram redelivers on a non-2xx answer
    again = await service.post(payload("text_message"))
    assert again.status_code == 200 and again.json()["description"] == "processed"
    # the engine recognises the redelivery by its dedup key (and answers from its receipt)
    assert [i.dedup_key for i in engine.inbounds] == ["telegram:824513001"] * 2
    assert [c.params["text"] for c in service.api.calls_of("sendMessage")] == ["echo Xin chào"] * 2
