"""Turn → Bot API calls.

Numbered options become inline-keyboard buttons whose callback data is the option key; a reply
that asks for the phone number gets a reply keyboard with a `request_contact` button; a pressed
button is acknowledged (answerCallbackQuery) and its message edited to show the choice and drop
the stale keyboard; text longer than Telegram's 4096 characters is split on line boundaries;
a certificate goes as a photo with caption plus the same PNG as a document (not recompressed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from telegram.error import BadRequest

from bot import texts
from conversations.model import Option, Reply, Turn

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096  # counted in UTF-16 code units, as Telegram does
CAPTION_LIMIT = 1024

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, cut at a paragraph, line or word boundary when possible."""
    text = text.strip()
    pieces: list[str] = []
    while _units(text) > limit:
        cut = limit
        while _units(text[:cut]) > limit:
            cut -= 1
        head = text[:cut]
        for sep in ("\n\n", "\n", " "):
            at = head.rfind(sep)
            if at > cut // 2:
                cut = at
                break
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


def option_keyboard(options: Sequence[Option]) -> InlineKeyboardMarkup:
    """Short labels two per row, longer ones one per row; callback data is the option key."""
    rows: list[list[InlineKeyboardButton]] = []
    for option in options:
        button = InlineKeyboardButton(option.label[:64], callback_data=option.key[:64])
        if rows and len(rows[-1]) == 1 and len(option.label) <= 14 and len(rows[-1][0].text) <= 14:
            rows[-1].append(button)
        else:
            rows.append([button])
    return InlineKeyboardMarkup(rows)


def contact_keyboard(language: str) -> ReplyKeyboardMarkup:
    button = KeyboardButton(texts.text("contact_button", language), request_contact=True)
    return ReplyKeyboardMarkup([[button]], resize_keyboard=True, one_time_keyboard=True)


async def send_text(bot: Bot, chat_id: int | str, text: str, markup: Markup = None) -> list[int]:
    """Sends `text` in as many messages as needed; the markup goes with the last one."""
    ids = []
    pieces = split_text(text) or ["…"]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        message = await bot.send_message(chat_id, piece, reply_markup=markup if last else None)
        ids.append(message.message_id)
    return ids


async def send_certificate(
    bot: Bot, chat_id: int | str, png: bytes, caption: str, markup: Markup = None
) -> None:
    """The QR as a photo (shown inline, recompressed by Telegram) and as a document (kept byte for byte)."""
    caption = caption if _units(caption) <= CAPTION_LIMIT else split_text(caption, CAPTION_LIMIT)[0]
    await bot.send_photo(chat_id, InputFile(png, filename="certificate.png"), caption=caption)
    await bot.send_document(
        chat_id,
        InputFile(png, filename="vaccination-certificate-qr.png"),
        disable_content_type_detection=True,
        reply_markup=markup,
    )


async def acknowledge(query: CallbackQuery, language: str) -> None:
    """Stops the button's spinner and marks the choice on the message that carried the buttons."""
    try:
        await query.answer()
    except BadRequest as exc:  # "query is too old": the user pressed a button long ago
        log.info("callback query not answered: %s", exc)
    message = query.message
    keyboard = getattr(message, "reply_markup", None)
    original = getattr(message, "text", None)
    if message is None or keyboard is None or not original:
        return
    label = next(
        (b.text for row in keyboard.inline_keyboard for b in row if b.callback_data == query.data),
        None,
    )
    if label is None:
        return
    edited = f"{original}\n\n✔ {texts.text('chosen', language)}: {label}"
    try:
        await query.edit_message_text(edited if _units(edited) <= MESSAGE_LIMIT else original)
    except BadRequest as exc:  # message too old or unchanged: the choice still counts
        log.info("button message not edited: %s", exc)


async def send_reply(
    bot: Bot, chat_id: int | str, reply: Reply, language: str, clear_keyboard: bool = False
) -> None:
    if reply.certificate is not None:
        if reply.text.strip() and reply.text.strip() != reply.certificate.caption.strip():
            await send_text(bot, chat_id, reply.text)
        keyboard = option_keyboard(reply.options) if reply.options else None
        await send_certificate(bot, chat_id, reply.certificate.png, reply.certificate.caption, keyboard)
        return
    markup: Markup = None
    if reply.options:
        markup = option_keyboard(reply.options)
    elif reply.ask_contact:
        markup = contact_keyboard(language)
    elif clear_keyboard:
        markup = ReplyKeyboardRemove()
    await send_text(bot, chat_id, reply.text, markup)
    if reply.options and reply.ask_contact:  # one message holds one keyboard: the contact button follows
        await send_text(bot, chat_id, texts.text("contact_hint", language), contact_keyboard(language))


async def render_turn(
    bot: Bot,
    chat_id: int | str,
    turn: Turn,
    *,
    query: CallbackQuery | None = None,
    clear_keyboard: bool = False,
) -> None:
    """Sends what the engine answered. `clear_keyboard` removes a contact keyboard that served."""
    if query is not None:
        await acknowledge(query, turn.language)
    for reply in turn.replies:
        await send_reply(bot, chat_id, reply, turn.language, clear_keyboard)
        clear_keyboard = False
