"""Bot API `Update` JSON as Telegram sends it, for one simulated user in a private chat."""

from __future__ import annotations

import itertools
import time
from typing import Any


class SimulatedUser:
    def __init__(self, phone: str, first_name: str = "Người dùng", last_name: str = "Mô phỏng") -> None:
        digits = "".join(ch for ch in phone if ch.isdigit())[-9:] or "0"
        self.user_id = 5_000_000_000 + int(digits)  # stable per phone number
        self.phone = phone
        self.first_name, self.last_name = first_name, last_name
        self.language_code = "vi"
        # Update ids grow across runs, so the service's processed-update table never sees one twice.
        self._update_ids = itertools.count(int(time.time() * 1000) % 2**40)
        self._message_ids = itertools.count(1)

    @property
    def user(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "is_bot": False,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "language_code": self.language_code,
        }

    @property
    def chat(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "type": "private",
        }

    def _message(self, **content: Any) -> dict[str, Any]:
        message = {"message_id": next(self._message_ids), "from": self.user, "chat": self.chat}
        message["date"] = int(time.time())
        message.update(content)
        return {"update_id": next(self._update_ids), "message": message}

    def text(self, text: str) -> dict[str, Any]:
        if text.startswith("/"):
            command = text.split(" ", 1)[0]
            entity = {"offset": 0, "length": len(command), "type": "bot_command"}
            return self._message(text=text, entities=[entity])
        return self._message(text=text)

    def contact(self, phone: str | None = None, user_id: int | None = None) -> dict[str, Any]:
        """The user's own contact by default; another phone and user id to share someone else's."""
        own = phone is None
        contact = {
            "phone_number": (self.phone if own else phone or "").lstrip("+"),
            "first_name": self.first_name if own else "Người quen",
            "user_id": self.user_id if own else (user_id or self.user_id + 1),
        }
        return self._message(contact=contact)

    def photo(
        self, file_id: str, file_unique_id: str, size: int, caption: str | None = None
    ) -> dict[str, Any]:
        sizes = [
            {
                "file_id": file_id,
                "file_unique_id": file_unique_id,
                "file_size": size,
                "width": 1280,
                "height": 960,
            }
        ]
        return self._message(photo=sizes, **({"caption": caption} if caption else {}))

    def document(self, file_id: str, file_unique_id: str, size: int, name: str, mime: str) -> dict[str, Any]:
        document = {
            "file_name": name,
            "mime_type": mime,
            "file_id": file_id,
            "file_unique_id": file_unique_id,
        }
        return self._message(document={**document, "file_size": size})

    def sticker(self) -> dict[str, Any]:
        sticker = {
            "width": 512,
            "height": 512,
            "emoji": "👍",
            "is_animated": False,
            "is_video": False,
            "type": "regular",
            "file_id": "CAACAgIAAxkBAAIBPWdEnFYdZZkk2WDQAAo0BAAJWnb0KnBVmYk2A8hc2BA",
            "file_unique_id": "AgADjQEAAladvQo",
            "file_size": 32544,
        }
        return self._message(sticker=sticker)

    def press(self, message: dict[str, Any], data: str) -> dict[str, Any]:
        """A tap on an inline button of `message` (a message the bot sent)."""
        query = {
            "id": str(next(self._update_ids)),
            "from": self.user,
            "message": message,
            "chat_instance": str(-self.user_id),
            "data": data,
        }
        return {"update_id": next(self._update_ids), "callback_query": query}
