"""Update → neutral `Inbound` (or a reason to answer without the engine, or nothing).

Only private chats reach the engine. Commands map to neutral names; a shared contact counts
only when it is the sender's own; photos and image documents are downloaded through the Bot
API's file endpoint, checked (JPEG/PNG, at most 10 MB) and stored under DATA_DIR/uploads.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from telegram import Bot, Message, Update
from telegram.constants import ChatType, MessageEntityType
from telegram.error import TelegramError

from conversations.model import Channel, Inbound, InboundMedia
from db.private_files import write_private_file
from registry_client.identity import normalize_phone

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
COMMANDS = {
    "start": "start",
    "help": "help",
    "status": "status",
    "certificate": "certificate",
    "report": "report",
    "check": "check",
    "language": "language",
    "logout": "logout",
}
# Why a file was refused (Inbound.rejected_media): a short, language-neutral fact that the engine
# quotes in its reply, e.g. "Không nhận được tệp (application/pdf)".
NOT_AN_IMAGE = "không phải JPEG/PNG · not JPEG/PNG"
DOWNLOAD_FAILED = "lỗi tải tệp · download failed"


def too_big(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB > {MAX_UPLOAD_BYTES // 1024 // 1024} MB"


@dataclass(frozen=True)
class Notice:
    """Something the adapter answers itself (the engine is not asked)."""

    chat_id: int
    kind: str  # a key of bot.texts: foreign_contact | unusable_phone | unsupported | private_only
    language: str


def user_language(update: Update) -> str:
    user = update.effective_user
    code = (user.language_code or "") if user else ""
    return "en" if code.lower().startswith("en") else "vi"


def parse_command(message: Message) -> tuple[str, str | None] | None:
    """("check", "PA-7K3D-95") for "/check PA-7K3D-95" or "/check@vaxchannel_bot PA-…"; None when the
    text is no command. An unknown command is "help" (it must not be taken as an answer to a step)."""
    text = message.text or ""
    entities = message.entities or ()
    if not text.startswith("/") or not any(
        e.type == MessageEntityType.BOT_COMMAND and e.offset == 0 for e in entities
    ):
        return None
    head, _, rest = text.partition(" ")
    name = head[1:].split("@", 1)[0].lower()
    if name not in COMMANDS:
        return "help", None
    return COMMANDS[name], (rest.strip() or None)


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


async def _download(bot: Bot, file_id: str, filename: str, uploads: Path) -> InboundMedia | str:
    """The stored media, or the reason it was refused."""
    try:
        tg_file = await bot.get_file(file_id)
        if tg_file.file_size and tg_file.file_size > MAX_UPLOAD_BYTES:
            return too_big(tg_file.file_size)
        data = bytes(await tg_file.download_as_bytearray())
    except TelegramError as exc:
        log.warning("telegram file download failed: %s", exc)
        return DOWNLOAD_FAILED
    if len(data) > MAX_UPLOAD_BYTES:
        return too_big(len(data))
    content_type = _sniff(data)
    if content_type is None:
        return NOT_AN_IMAGE
    month = datetime.now(UTC).strftime("%Y%m")
    folder = uploads / "telegram" / month
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    suffix = ".png" if content_type == "image/png" else ".jpg"
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    write_private_file(path, data)  # 0600 from creation
    return InboundMedia(str(path), content_type, len(data), filename)


async def _media(bot: Bot, message: Message, uploads: Path) -> InboundMedia | str | None:
    if message.photo:
        best = max(message.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
        if best.file_size and best.file_size > MAX_UPLOAD_BYTES:
            return too_big(best.file_size)
        return await _download(bot, best.file_id, f"photo_{best.file_unique_id}.jpg", uploads)
    if message.document:
        doc = message.document
        if (doc.mime_type or "").lower() not in ("image/jpeg", "image/png", "image/jpg"):
            return doc.mime_type or NOT_AN_IMAGE
        if doc.file_size and doc.file_size > MAX_UPLOAD_BYTES:
            return too_big(doc.file_size)
        return await _download(bot, doc.file_id, doc.file_name or "document", uploads)
    for kind in ("video", "animation", "voice", "audio", "video_note"):
        if getattr(message, kind) is not None:
            return getattr(getattr(message, kind), "mime_type", None) or kind
    return None


async def to_inbound(update: Update, bot: Bot, uploads: Path) -> Inbound | Notice | None:
    """What the engine should hear about this update; a Notice to answer locally; None to ignore."""
    chat = update.effective_chat
    if chat is None or update.effective_user is None:
        return None
    language = user_language(update)
    if chat.type != ChatType.PRIVATE:
        message = update.message
        if message is not None and parse_command(message) is not None:
            return Notice(chat.id, "private_only", language)
        return None
    user = update.effective_user

    def inbound(**fields: object) -> Inbound:
        return Inbound(Channel.TELEGRAM, str(chat.id), user_name=user.full_name, **fields)  # type: ignore[arg-type]

    if update.callback_query is not None:
        data = update.callback_query.data
        if not data:
            return None
        return inbound(choice=data)

    message = update.message  # edited messages, channel posts, etc. are not conversation input
    if message is None:
        return None
    command = parse_command(message)
    if command is not None:
        name, argument = command
        return inbound(command=name, argument=argument)
    if message.contact is not None:
        if message.contact.user_id != user.id:
            return Notice(chat.id, "foreign_contact", language)
        raw = message.contact.phone_number or ""
        phone = normalize_phone(raw if raw.startswith("+") else "+" + raw)
        if phone is None:
            return Notice(chat.id, "unusable_phone", language)
        return inbound(shared_phone=phone)
    media = await _media(bot, message, uploads)
    if isinstance(media, InboundMedia):
        return inbound(text=message.caption or "", media=(media,))
    if isinstance(media, str):
        return inbound(text=message.caption or "", rejected_media=media)
    if message.text:
        return inbound(text=message.text)
    return Notice(chat.id, "unsupported", language)  # stickers, locations, polls, ...
