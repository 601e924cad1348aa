"""`python main.py simulate telegram --phone +84…`: a Telegram client in the terminal.

It posts real `Update` JSON to the service's /telegram/webhook with the webhook secret (found the
way the service finds it: TELEGRAM_WEBHOOK_SECRET, or the file generated into DATA_DIR), and shows
what the bot sent to this user's chat through a local Bot API stand-in, plus the SMS the service
queued for the phone.

Without TELEGRAM_BOT_TOKEN (the quick start), the service runs that stand-in itself and the
simulator attaches to it (bot/local_telegram.py: address and token in DATA_DIR); when nothing
answers at the service URL, the simulator starts the service (`main.py serve`) and stops it on
exit. With TELEGRAM_BOT_TOKEN set, the simulator serves a stand-in of its own: on the port of a
local TELEGRAM_API_BASE for a service started with those two variables, or on a free port for a
service it starts itself.
"""

from __future__ import annotations

import mimetypes
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.local_bot_api import Call, LocalBotApi
from bot.local_telegram import LocalBotApiWatch
from bot.simulated_updates import SimulatedUser
from conversations.outbound import make_renderer
from db.base import make_sync_engine
from outbox.sealing import OutboxSeal
from outbox.tables import OutboxRow
from settings import Settings, main_command

SIM_TOKEN = "7000000001:SIMULATOR-local-token"
HELP = """Type a message and press Enter. Commands start with / (/start /help /status /certificate
/report /check <ref> /language /logout). Simulator actions:
  !<key>            press the inline button with that key on the last message that had buttons
  !contact          share my phone number (the 📱 button)
  !contact +849…    share someone else's contact
  !photo [FILE]     send a photo (default: a generated JPEG)
  !doc FILE         send a file as a document
  !sticker          send a sticker
  !help · !quit"""


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")


class Screen:
    """Prints what the bot sends (called from the stand-in's thread) and keeps the last keyboard."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.lock = threading.Lock()
        self.keyboard_message: dict[str, Any] | None = None
        self.connected = threading.Event()
        self._files = 0

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def on_call(self, call: Call) -> None:
        method, params = call.method.lower(), call.params
        if method == "getme":
            self.connected.set()
        elif method == "sendmessage":
            self._show_message(params)
        elif method == "editmessagetext":
            self.say(f"🤖 (edited) {params.get('text', '')}")
        elif method in ("sendphoto", "senddocument"):
            self._show_file(call)

    def _show_message(self, params: dict[str, Any]) -> None:
        lines = [f"🤖 {params.get('text', '')}"]
        markup = params.get("reply_markup") or {}
        if "inline_keyboard" in markup:
            buttons = [b for row in markup["inline_keyboard"] for b in row]
            lines.append("   " + "  ".join(f"[!{b['callback_data']}] {b['text']}" for b in buttons))
            self.keyboard_message = {"text": params.get("text", ""), "reply_markup": markup}
        elif "keyboard" in markup:
            for row in markup["keyboard"]:
                for button in row:
                    hint = "  (type !contact)" if button.get("request_contact") else ""
                    lines.append(f"   ⌨ [{button['text']}]{hint}")
        self.say("\n".join(lines))

    def _show_file(self, call: Call) -> None:
        upload = call.files.get("photo") or call.files.get("document")
        if upload is None:
            return
        self._files += 1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{self._files:03d}-{upload.filename}"
        path.write_bytes(upload.data)
        kind = "🖼 photo" if call.method.lower() == "sendphoto" else "📎 document"
        lines = [f"{kind} saved to {path} ({len(upload.data)} bytes)"]
        if call.params.get("caption"):
            lines.append(f"   {call.params['caption']}")
        qr = _decode_qr(upload.data)
        if qr:
            lines.append(f"   QR: {qr[:60]}… ({len(qr)} characters)")
        self.say("\n".join(lines))


def _decode_qr(data: bytes) -> str | None:
    try:
        import io

        import zxingcpp
        from PIL import Image

        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(data)))
    except Exception:
        return None
    return found[0].text if found else None


def _sample_jpeg() -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 420), (245, 240, 225))
    ImageDraw.Draw(image).text((30, 30), "GIAY XAC NHAN DA TIEM VAC XIN COVID-19", fill=(20, 20, 90))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class SmsWatcher(threading.Thread):
    """Shows the SMS the service queued for the simulated phone (one-time codes, links)."""

    def __init__(self, settings: Settings, phone: str, screen: Screen) -> None:
        super().__init__(name="sms-watcher", daemon=True)
        self.settings, self.phone, self.screen = settings, phone, screen
        self.stop = threading.Event()

    def start(self) -> None:
        """Remembers the newest outbox row first, so every SMS queued from now on is shown."""
        self.engine = make_sync_engine(self.settings.database_url)
        with self.engine.connect() as conn:
            self.last = conn.scalar(select(OutboxRow.id).order_by(OutboxRow.id.desc()).limit(1)) or 0
        super().start()

    def run(self) -> None:
        render = make_renderer(
            strip_sms_diacritics=self.settings.sms_strip_diacritics,
            hotline=self.settings.hotline_number,
            seal=OutboxSeal(self.settings.secret_keys.outbox_seal),  # codes shown to this simulator only
        )
        try:
            while not self.stop.wait(0.3):
                self.show_new(render)
            self.show_new(render)  # whatever came with the last input
        finally:
            self.engine.dispose()

    def show_new(self, render: Callable[[OutboxRow], str]) -> None:
        try:
            with Session(self.engine) as db:
                rows = db.scalars(
                    select(OutboxRow)
                    .where(
                        OutboxRow.channel == "sms", OutboxRow.address == self.phone, OutboxRow.id > self.last
                    )
                    .order_by(OutboxRow.id)
                ).all()
                for row in rows:
                    self.last = row.id
                    self.screen.say(f"  ✉  SMS to {self.phone}: {render(row)}")
        except Exception as exc:  # a locked or busy database: try again on the next tick
            self.screen.say(f"(could not read the outbox: {type(exc).__name__})")


class Simulator:
    def __init__(self, settings: Settings, phone: str, url: str | None) -> None:
        self.settings, self.base = settings, (url or settings.public_base_url).rstrip("/")
        self.user = SimulatedUser(phone)
        self.screen = Screen(Path(settings.data_dir) / "simulator" / "telegram")
        self.api: LocalBotApi | None = None  # a stand-in of our own (TELEGRAM_BOT_TOKEN set)
        self.watch: LocalBotApiWatch | None = None  # the service's stand-in (no token)
        if settings.telegram_bot_token:
            attach = _is_local(settings.telegram_api_base)
            port = (urlsplit(settings.telegram_api_base).port or 80) if attach else 0
            self.api = LocalBotApi(port=port)
            self.api.listeners.append(self.screen.on_call)
        self.service: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=60)

    def _service_up(self) -> bool:
        try:
            return self.http.get(f"{self.base}/healthz", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def _start_service(self) -> None:
        parts = urlsplit(self.base)
        log = Path(self.settings.data_dir) / "simulator" / "telegram-service.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": str(parts.port or 80),
            "PUBLIC_BASE_URL": self.base,
        }
        if self.api is not None:
            env |= {
                "TELEGRAM_BOT_TOKEN": self.settings.telegram_bot_token or SIM_TOKEN,
                "TELEGRAM_API_BASE": self.api.base_url,
                "TELEGRAM_MODE": "webhook",
            }
        main = Path(__file__).resolve().parents[1] / "main.py"
        print(f"Starting the service at {self.base} (log: {log}) …", flush=True)
        self.service = subprocess.Popen(
            [sys.executable, str(main), "serve"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def connect(self) -> bool:
        if self.api is None:
            return self._connect_to_service_stand_in()
        self.api.start()
        print(f"Local Bot API stand-in on {self.api.base_url}", flush=True)
        if self._service_up():
            if not _is_local(self.settings.telegram_api_base) or not self.settings.telegram_bot_token:
                print(
                    f"A service already runs at {self.base}, but this shell does not point Telegram at a "
                    "local stand-in. Stop it, or restart it with\n"
                    f"  TELEGRAM_BOT_TOKEN={SIM_TOKEN} TELEGRAM_API_BASE=http://127.0.0.1:8081 {main_command()}\n"
                    "and run the simulator with the same two variables.",
                    flush=True,
                )
                return False
        elif not _is_local(self.base):
            print(f"Nothing answers at {self.base}; start the service first.", flush=True)
            return False
        else:
            self._start_service()
        print("Waiting for the service to reach the Bot API stand-in …", flush=True)
        return self._wait(lambda: self.screen.connected.is_set() and self._post({}, probe=True))

    def _connect_to_service_stand_in(self) -> bool:
        """No TELEGRAM_BOT_TOKEN: attach to the Bot API stand-in the service runs itself."""
        if not self._service_up():
            if not _is_local(self.base):
                print(f"Nothing answers at {self.base}; start the service first.", flush=True)
                return False
            self._start_service()
            if not self._wait(self._service_up):
                return False
        if not self._wait(self._attach, seconds=15 if self.service is not None else 3):
            print(
                f"The service at {self.base} runs no Telegram stand-in this simulator can reach: it has "
                "TELEGRAM_BOT_TOKEN set (a real bot: use Telegram itself), runs several workers, or uses "
                f"another DATA_DIR than this shell ({self.settings.data_dir}).",
                flush=True,
            )
            return False
        return self._wait(lambda: self._post({}, probe=True))

    def _attach(self) -> bool:
        self.watch = LocalBotApiWatch.attach(self.settings, self.user.user_id)
        if self.watch is None:
            return False
        self.watch.listeners.append(self.screen.on_call)
        self.watch.start()
        return True

    def _wait(self, ready: Callable[[], bool], seconds: float = 90) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.service is not None and self.service.poll() is not None:
                print("The service exited; see its log.", flush=True)
                return False
            if ready():
                return True
            time.sleep(0.3)
        if self.service is not None or seconds >= 90:
            print("The service did not get ready in time.", flush=True)
        return False

    def _add_file(self, data: bytes, suffix: str = "jpg") -> tuple[str, str]:
        if self.watch is not None:
            return self.watch.add_file(data, suffix)
        assert self.api is not None
        stored = self.api.add_file(data, suffix=suffix)
        return stored.file_id, stored.file_unique_id

    def _post(self, update: dict[str, Any], probe: bool = False) -> bool:
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.settings.resolved_telegram_webhook_secret}
        try:
            response = self.http.post(f"{self.base}/telegram/webhook", json=update, headers=headers)
        except httpx.HTTPError as exc:
            if not probe:
                self.screen.say(f"(the service did not answer: {exc})")
            return False
        if probe:  # {} is no Update: 400 means the webhook is there and ready
            if response.status_code in (403, 404):
                raise SystemExit(
                    "The service's /telegram/webhook answered "
                    f"{response.status_code}: {response.json().get('description')}"
                )
            return response.status_code == 400
        if response.status_code != 200:
            self.screen.say(f"(webhook answered {response.status_code}: {response.text[:200]})")
        return response.status_code == 200

    def handle(self, line: str) -> bool:
        """One line typed by the user. False to quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("!"):
            self._post(self.user.text(line))
            return True
        action, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if action in ("quit", "exit", "q"):
            return False
        if action == "help":
            self.screen.say(HELP)
        elif action == "contact":
            self._post(self.user.contact(arg) if arg else self.user.contact())
        elif action == "photo":
            data = Path(arg).read_bytes() if arg else _sample_jpeg()
            file_id, unique_id = self._add_file(data)
            self._post(self.user.photo(file_id, unique_id, len(data)))
        elif action == "doc" and arg:
            path = Path(arg)
            data = path.read_bytes()
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            file_id, unique_id = self._add_file(data, suffix=path.suffix.lstrip(".") or "bin")
            self._post(self.user.document(file_id, unique_id, len(data), path.name, mime))
        elif action == "sticker":
            self._post(self.user.sticker())
        elif self.screen.keyboard_message is not None:
            message = {
                "message_id": 1,
                "from": {"id": 7000000001, "is_bot": True, "first_name": "VaxChannel"},
                "chat": self.user.chat,
                "date": int(time.time()),
                **self.screen.keyboard_message,
            }
            self._post(self.user.press(message, action))
        else:
            self.screen.say("(no buttons to press; !help lists the actions)")
        return True

    def close(self) -> None:
        self.http.close()
        if self.service is not None:
            self.service.terminate()
            try:
                self.service.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.service.kill()
        if self.watch is not None:
            self.watch.stop()
        if self.api is not None:
            self.api.stop()


def run_simulator(settings: Settings, phone: str, url: str | None) -> int:
    from registry_client.identity import normalize_phone

    e164 = normalize_phone(phone)
    if e164 is None:
        print(f"Not a phone number: {phone}", file=sys.stderr)
        return 2
    sim = Simulator(settings, e164, url)
    watcher = SmsWatcher(settings, e164, sim.screen)
    try:
        if not sim.connect():
            return 1
        watcher.start()
        print(f"Telegram simulator: you are a Telegram user whose phone is {e164}.\n{HELP}\n", flush=True)
        while True:
            try:
                line = input()
            except EOFError:
                break
            if not sim.handle(line):
                break
            time.sleep(0.3)  # let notifications and SMS that follow arrive before the next line
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop.set()
        if watcher.is_alive():
            watcher.join(timeout=5)
        sim.close()
    return 0
