"""The webhook and the adapter: recorded Update payloads posted to /telegram/webhook of the real
service (real engine, embedded registry with the demo identities), assertions on the Bot API calls
that the stand-in recorded and on what the engine stored."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from conversations.i18n import t
from conversations.model import Certificate, Option, Reply, Turn
from registry_client.embedded.demo import DEMO_PEOPLE
from tests.bot.conftest import SECRET, USER_ID, Service, bot_settings, payload, running_service
from tests.fakes.telegram_api import Call, TelegramApiStandIn

PHOTO_LARGE = "AgACAgUAAxkBAAIBOWdEm1_large_JvYQACo74xG1n9IVZ7x2o9AQADAgADeQADNgQ"
PNG_DOC = "BQACAgUAAxkBAAIBPGdEnA7png_LQ2YEvPhq9Wl0z0k2AAJ8FAACWf0hVj9gU2h1S2LhNgQ"
CHAT = str(USER_ID)
AN = DEMO_PEOPLE[0]  # his phone +84901234567 is the one in contact_own.json


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def conversation(service: Service) -> list[Call]:
    """The Bot API calls after start-up (getMe, setMyCommands)."""
    return [c for c in service.api.calls if c.method not in ("getMe", "setMyCommands")]


def sent_texts(service: Service) -> list[str]:
    return [c.params["text"] for c in service.api.calls_of("sendMessage")]


def buttons(call: Call) -> list[str]:
    return [b["callback_data"] for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


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


async def test_start_command_gets_the_welcome_and_the_menu_as_inline_buttons(service: Service) -> None:
    response = await service.post(payload("command_start"))
    assert response.status_code == 200 and response.json()["ok"] is True
    welcome, menu = service.api.calls_of("sendMessage")
    assert welcome.params == {"chat_id": CHAT, "text": t("vi", "welcome")}
    assert buttons(menu) == ["1", "2", "3", "4", "5", "6", "0"]
    first = menu.params["reply_markup"]["inline_keyboard"][0][0]
    assert first == {"text": t("vi", "menu.status"), "callback_data": "1"}


async def test_commands_with_bot_name_and_argument_and_unknown_commands(service: Service) -> None:
    await service.post(payload("command_check"))  # "/check@vaxchannel_bot PA-7K3D-95"
    assert sent_texts(service)[-1] == t("vi", "check.not_found", ref="PA-7K3D-95")
    entity = [{"offset": 0, "length": 9, "type": "bot_command"}]
    await service.post(payload("command_start", update_id=1, text="/whatever", entities=entity))
    assert "/status" in sent_texts(service)[-1] and "/logout" in sent_texts(service)[-1]  # the help


async def test_own_contact_logs_in_with_a_code_to_the_registrys_phone(service: Service) -> None:
    await service.post(payload("contact_own"))
    assert sent_texts(service) == [t("vi", "login.phone_code_sent")]
    (otp,) = await service.app.state.outbox.messages_to("sms", AN.phone)
    assert otp.kind == "otp" and len(otp.params["code"]) == 6


async def test_someone_elses_contact_is_refused_and_no_code_is_sent(service: Service) -> None:
    await service.post(payload("contact_foreign"))
    (call,) = service.api.calls_of("sendMessage")
    assert "chỉ nhận số điện thoại của chính bạn" in call.params["text"]
    assert call.params["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    assert await service.app.state.outbox.messages_to("sms", "+84912345678") == []


async def test_photo_is_downloaded_checked_and_stored(service: Service) -> None:
    jpeg = image_bytes()
    service.api.add_file(jpeg, file_id=PHOTO_LARGE)
    await service.post(payload("photo"))
    (get_file,) = service.api.calls_of("getFile")
    assert get_file.params["file_id"] == PHOTO_LARGE  # the largest size
    (stored,) = (service.settings.data_dir / "uploads").rglob("*.jpg")
    assert stored.read_bytes() == jpeg
    # no open report yet: the engine says so (the end-to-end test attaches one)
    assert sent_texts(service) == [t("vi", "attach.none")]


async def test_png_document_is_accepted_and_a_pdf_is_refused_without_download(service: Service) -> None:
    service.api.add_file(image_bytes("PNG"), file_id=PNG_DOC, suffix="png")
    await service.post(payload("document_png"))
    assert len(list((service.settings.data_dir / "uploads").rglob("*.png"))) == 1
    await service.post(payload("document_pdf"))
    assert sent_texts(service)[-1] == t("vi", "attach.rejected_photo", reason="application/pdf")
    assert len(service.api.calls_of("getFile")) == 1  # the PDF was never downloaded


async def test_a_file_that_lies_about_being_an_image_or_is_too_big_is_refused(service: Service) -> None:
    service.api.add_file(b"%PDF-1.7 not an image", file_id=PNG_DOC, suffix="png")
    await service.post(payload("document_png"))
    big = payload("photo", update_id=2)
    big["message"]["photo"][-1]["file_size"] = 12 * 1024 * 1024
    await service.post(big)
    liar, too_big = sent_texts(service)
    assert "không phải JPEG/PNG" in liar and "12.0 MB > 10 MB" in too_big
    assert not list((service.settings.data_dir / "uploads").rglob("*.*"))


async def test_button_press_is_acknowledged_its_message_edited_and_the_choice_followed(
    service: Service,
) -> None:
    await service.post(payload("callback_query"))  # "1" = my doses, not logged in yet
    assert [c.method for c in conversation(service)] == [
        "answerCallbackQuery",
        "editMessageText",
        "sendMessage",
        "sendMessage",  # the "share my phone number" keyboard that follows the inline buttons
    ]
    (answer,) = service.api.calls_of("answerCallbackQuery")
    assert answer.params["callback_query_id"] == "2354437612489512345"
    (edit,) = service.api.calls_of("editMessageText")
    assert edit.params["message_id"] == "1003" and edit.params["chat_id"] == CHAT
    assert edit.params["text"].endswith("✔ Đã chọn: Xem mũi tiêm") and "reply_markup" not in edit.params
    asked, contact = service.api.calls_of("sendMessage")
    assert asked.params["text"] == t("vi", "login.ask_id")  # log in first
    assert contact.params["reply_markup"]["keyboard"][0][0]["request_contact"] is True


@pytest.mark.parametrize("name", ["edited_message", "unknown_update_type", "group_text"])
async def test_updates_that_are_not_conversation_input_are_ignored(service: Service, name: str) -> None:
    response = await service.post(payload(name))
    assert response.status_code == 200
    assert conversation(service) == []


async def test_sticker_gets_a_polite_answer(service: Service) -> None:
    assert (await service.post(payload("sticker"))).status_code == 200
    assert sent_texts(service) == ["Tôi chỉ đọc được tin nhắn chữ, nút bấm và ảnh. Gõ /help để xem các lệnh."]


async def test_english_speaking_user_gets_english_adapter_texts(service: Service) -> None:
    sticker = payload("sticker")
    sticker["message"]["from"]["language_code"] = "en"
    await service.post(sticker)
    assert sent_texts(service) == [
        "I can read text, buttons and photos only. Send /help to see the commands."
    ]


async def test_after_choosing_english_a_sticker_is_answered_in_english(service: Service) -> None:
    """The adapter's own words follow the language chosen with /language, not the client's ("vi")."""
    sticker = payload("sticker")
    assert sticker["message"]["from"]["language_code"] == "vi"
    await service.post(payload("command_start", text="/language", entities=[_command("/language")]))
    language_menu = service.api.calls_of("sendMessage")[-1]
    english = [b for row in language_menu.params["reply_markup"]["inline_keyboard"] for b in row][1]
    assert english["text"] == "English"
    press = payload("callback_query")
    press["update_id"] = 824513900
    press["callback_query"]["data"] = english["callback_data"]
    press["callback_query"]["message"]["chat"]["id"] = sticker["message"]["chat"]["id"]
    assert (await service.post(press)).status_code == 200
    service.api.clear()
    await service.post(sticker)
    assert sent_texts(service) == [
        "I can read text, buttons and photos only. Send /help to see the commands."
    ]


def _command(text: str) -> dict[str, object]:
    return {"offset": 0, "length": len(text), "type": "bot_command"}


async def test_a_command_in_a_group_is_answered_with_an_invitation_to_a_private_chat(
    service: Service,
) -> None:
    await service.post(payload("group_message"))
    (call,) = service.api.calls_of("sendMessage")
    assert call.params["chat_id"] == "-1001849215534" and "nhắn riêng" in call.params["text"]


async def test_a_user_blocking_the_bot_marks_the_chat_unreachable(service: Service) -> None:
    bindings = service.app.state.conversations.bindings
    person = await service.app.state.registry.find_person(AN.national_id, AN.date_of_birth)
    await bindings.bind("telegram", CHAT, person.id)
    assert await bindings.addresses_for_person(person.id, "telegram") == [CHAT]
    await service.post(payload("my_chat_member_blocked"))
    assert await bindings.addresses_for_person(person.id, "telegram") == []
    assert conversation(service) == []


async def test_wrong_or_missing_secret_is_403(service: Service) -> None:
    assert (await service.post(payload("text_message"), secret="wrong")).status_code == 403
    assert (await service.post(payload("text_message"), secret=None)).status_code == 403
    assert conversation(service) == []
    assert (await service.post(payload("text_message"), secret=SECRET)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'{"message": {}}',
        b'{"update_id": "x"}',
        b'{"update_id": 1, "message": "x"}',
        b'{"update_id": 1, "message": {"chat": {}}}',
        b'{"update_id": 1, "message": {"message_id": 1, "date": "x", "chat": {"id": 1, "type": "private"}}}',
    ],
)
async def test_malformed_body_is_400(service: Service, body: bytes) -> None:
    response = await service.post(body)
    assert response.status_code == 400 and response.json()["ok"] is False
    assert conversation(service) == []


async def test_a_redelivered_update_is_processed_once(service: Service) -> None:
    first = await service.post(payload("contact_own"))
    again = await service.post(payload("contact_own"))
    assert first.json()["description"] == "processed" and again.json()["description"] == "duplicate"
    assert again.status_code == 200  # Telegram must stop redelivering
    assert len(service.api.calls_of("sendMessage")) == 1
    assert len(await service.app.state.outbox.messages_to("sms", AN.phone)) == 1  # one code


async def test_an_answer_that_cannot_reach_telegram_asks_for_a_redelivery(service: Service) -> None:
    service.api.fail_next("sendMessage", "500")
    first = await service.post(payload("contact_own"))
    assert first.status_code == 503  # Telegram redelivers on a non-2xx answer
    again = await service.post(payload("contact_own"))
    assert again.status_code == 200 and again.json()["description"] == "processed"
    texts = sent_texts(service)
    assert texts == [t("vi", "login.phone_code_sent")] * 2
    # the engine answered the redelivery from its receipt: still one code, not two
    assert len(await service.app.state.outbox.messages_to("sms", AN.phone)) == 1


async def test_a_failure_inside_the_service_gets_a_friendly_answer_not_a_500(service: Service) -> None:
    async with service.app.state.db_engine.begin() as conn:  # break the engine's storage for real
        await conn.execute(text("DROP TABLE conversation_sessions"))
    response = await service.post(payload("text_message"))
    assert response.status_code == 200
    assert sent_texts(service) == ["Xin lỗi, hệ thống đang gặp sự cố. Vui lòng thử lại sau ít phút."]


@pytest.mark.postgres
async def test_concurrent_redeliveries_are_processed_once_on_postgresql(
    pg_url: str, tmp_path: Path, telegram_api: TelegramApiStandIn
) -> None:
    async for pg_service in running_service(bot_settings(pg_url, tmp_path, telegram_api), telegram_api):
        answers = await asyncio.gather(*(pg_service.post(payload("command_start")) for _ in range(5)))
        assert sorted(a.json()["description"] for a in answers) == ["duplicate"] * 4 + ["processed"]
        assert len(telegram_api.calls_of("sendMessage")) == 2  # one welcome, one menu
        assert await pg_service.app.state.telegram.prune() == 0  # fresh ids are kept


# -- rendering of Turn values the engine may produce -----------------------------------------------
async def test_long_answers_are_split_under_4096_characters(service: Service) -> None:
    from bot.render import render_turn

    line = "Mũi {n}: Vắc xin AstraZeneca, ngày 02/08/2021, Trạm Y tế Phường Dịch Vọng, lô AZ-NV4211\n"
    long_text = "".join(line.format(n=n) for n in range(120))
    await render_turn(
        service.app.state.telegram.bot, CHAT, Turn([Reply(long_text, (Option("0", "Quay lại"),))])
    )
    calls = service.api.calls_of("sendMessage")
    assert len(calls) >= 3
    assert all(len(c.params["text"]) <= 4096 for c in calls)
    assert "".join(c.params["text"] + "\n" for c in calls) == long_text  # cut between lines, nothing lost
    assert [("reply_markup" in c.params) for c in calls] == [False] * (len(calls) - 1) + [True]


async def test_ask_contact_gives_a_request_contact_button(service: Service) -> None:
    from bot.render import render_turn

    bot = service.app.state.telegram.bot
    await render_turn(bot, CHAT, Turn([Reply("Chia sẻ số điện thoại hoặc nhập CCCD", ask_contact=True)]))
    markup = service.api.calls_of("sendMessage")[-1].params["reply_markup"]
    assert markup["keyboard"] == [[{"text": "📱 Chia sẻ số điện thoại của tôi", "request_contact": True}]]
    assert markup["one_time_keyboard"] is True and markup["resize_keyboard"] is True
    # with options too: the options stay inline buttons, the contact button follows
    turn = Turn([Reply("Nhập CCCD", (Option("0", "Quay lại"),), ask_contact=True)], language="en")
    await render_turn(bot, CHAT, turn)
    options, contact = service.api.calls_of("sendMessage")[-2:]
    assert buttons(options) == ["0"] and contact.params["reply_markup"]["keyboard"][0][0]["request_contact"]
    assert contact.params["text"] == "Or press the button below to share your phone number."


async def test_certificate_goes_as_photo_with_caption_and_as_an_untouched_document(service: Service) -> None:
    from bot.render import render_turn

    png = image_bytes("PNG", (300, 300))
    caption = "Nguyễn Văn An · 3 mũi · hiệu lực đến 25/11/2026"
    cert = Certificate(png=png, hc1="HC1:XYZ", link="https://example.vn/c/abc", caption=caption)
    turn = Turn([Reply(caption, (Option("0", "Menu chính"),), certificate=cert)])
    await render_turn(service.app.state.telegram.bot, CHAT, turn)
    (photo,) = service.api.calls_of("sendPhoto")
    (document,) = service.api.calls_of("sendDocument")
    assert photo.params["caption"] == caption and photo.files["photo"].data == png
    assert document.files["document"].data == png and document.files["document"].filename.endswith(".png")
    assert document.params["disable_content_type_detection"] in ("true", True)
    assert buttons(document) == ["0"]
    assert service.api.calls_of("sendMessage") == []  # the caption already says it
