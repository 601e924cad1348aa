"""The Bot API stand-in for tests: `bot.local_bot_api.LocalBotApi` (the simulator uses the same one).

    with TelegramApiStandIn() as telegram:
        settings = Settings(telegram_bot_token=TOKEN, telegram_api_base=telegram.base_url, ...)
        telegram.fail_next("sendMessage", "429", retry_after=3)   # or "500", "403"
        telegram.block_chat(chat_id)                              # 403 "bot was blocked by the user"
        telegram.add_file(jpeg_bytes, file_id="AgACAgI…")         # a photo a user sent
        calls = telegram.calls_of("sendPhoto")                    # Call(method, params, files, …)

It answers getMe, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands, sendMessage, sendPhoto,
sendDocument, answerCallbackQuery, editMessageText, getFile, getUpdates and the file download
`/file/bot{token}/{file_path}`, with JSON, form-encoded or multipart parameters.
"""

from __future__ import annotations

from bot.local_bot_api import BOT_USER, Call, LocalBotApi, UploadedFile

TelegramApiStandIn = LocalBotApi

__all__ = ["BOT_USER", "Call", "LocalBotApi", "TelegramApiStandIn", "UploadedFile"]
