"""Telegram without a bot token: the service runs a Bot API stand-in of its own, and the simulator
(`python main.py simulate telegram`) watches it.

When TELEGRAM_BOT_TOKEN is unset, a single-process service (`python main.py`) starts
`LocalBotApi` on 127.0.0.1 (a free port) and points its Telegram channel at it. Every route of the
stand-in demands a token generated once into DATA_DIR/telegram_local_bot_token (0600); its address
is written at each start into DATA_DIR/telegram_local_bot_api. The simulator reads both files (it
shares the service's DATA_DIR), posts the user's updates to /telegram/webhook with the webhook
secret like Telegram does, and reads what the bot sent from the stand-in. A real
TELEGRAM_BOT_TOKEN disables all of this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.local_bot_api import BOT_USER, Call, LocalBotApi, call_from_json
from db import private_files
from settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "telegram_local_bot_token"
ADDRESS_FILE = "telegram_local_bot_api"
KEPT_CALLS = 2000  # what the stand-in remembers for simulators that attach later


def _token_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / TOKEN_FILE


def _address_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / ADDRESS_FILE


def start_local_bot_api(settings: Settings) -> tuple[LocalBotApi, Settings]:
    """Starts the service's stand-in; returns it and the settings the Telegram channel uses."""
    token = private_files.read_or_create_secret(
        _token_file(settings), lambda: f"{BOT_USER['id']}:{private_files.new_secret()}"
    )
    api = LocalBotApi(token=token, max_calls=KEPT_CALLS).start()
    private_files.write_secret_file(_address_file(settings), api.base_url)
    log.info("Telegram: no TELEGRAM_BOT_TOKEN, local Bot API stand-in on %s", api.base_url)
    channel_settings = settings.model_copy(
        update={"telegram_bot_token": token, "telegram_api_base": api.base_url, "telegram_mode": "webhook"}
    )
    return api, channel_settings


class LocalBotApiWatch:
    """The simulator's view of the service's stand-in: the calls the bot makes to one chat, as
    they happen, and files the simulated user sends. `attach()` is None when the service runs no
    stand-in (a real TELEGRAM_BOT_TOKEN, several workers, or another DATA_DIR)."""

    def __init__(self, base_url: str, token: str, chat_id: int) -> None:
        self.base_url, self.token, self.chat_id = base_url.rstrip("/"), token, chat_id
        self.listeners: list[Callable[[Call], None]] = []
        self.http = httpx.Client(timeout=35)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bot-api-watch", daemon=True)
        self._next = 0

    @classmethod
    def attach(cls, settings: Settings, chat_id: int) -> LocalBotApiWatch | None:
        try:
            token = private_files.read_secret_file(_token_file(settings))
            base_url = private_files.read_secret_file(_address_file(settings))
        except (OSError, private_files.EmptySecretFile):
            return None
        watch = cls(base_url, token, chat_id)
        try:
            me = watch.http.get(f"{watch.base_url}/bot{token}/getMe", timeout=3)
            first = watch.http.get(f"{watch.base_url}/simulator/bot{token}/calls", params={"after": 1 << 62})
            ok = me.status_code == 200 and first.status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            watch.http.close()
            return None
        watch._next = int(first.json()["next"])  # only what the bot sends from now on
        return watch

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.http.close()

    def add_file(self, data: bytes, suffix: str = "jpg") -> tuple[str, str]:
        """Registers a file the user sends; returns (file_id, file_unique_id)."""
        answer = self.http.post(
            f"{self.base_url}/simulator/bot{self.token}/files", params={"suffix": suffix}, content=data
        ).json()["result"]
        return str(answer["file_id"]), str(answer["file_unique_id"])

    def _mine(self, call: Call) -> bool:
        chat = call.params.get("chat_id")
        return chat is None and call.method.lower() == "getme" or str(chat) == str(self.chat_id)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.http.get(
                    f"{self.base_url}/simulator/bot{self.token}/calls",
                    params={"after": self._next, "timeout": 1},
                ).json()
            except (httpx.HTTPError, ValueError):
                self._stop.wait(1.0)
                continue
            self._next = int(answer.get("next", self._next))
            for data in answer.get("result", []):
                call = call_from_json(data, self.token)
                if self._mine(call):
                    for listener in list(self.listeners):
                        listener(call)
