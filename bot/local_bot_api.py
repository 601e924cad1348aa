"""A local stand-in for the Telegram Bot API, speaking its wire format.

Used by `python main.py simulate telegram` (the service talks to it through TELEGRAM_API_BASE)
and by the tests. It answers `POST|GET /bot{token}/{method}` with JSON, form-encoded or
multipart parameters exactly as the real Bot API accepts them, serves files under
`/file/bot{token}/{file_path}`, records every call (parameters and uploaded files), and can be
told to fail: 429 with `retry_after`, 500, or 403 "bot was blocked by the user".

Given a `token` (as the service's own stand-in always is, see bot/local_telegram.py), it answers
only that token, like the real Bot API (401 otherwise), and offers the simulator two more routes
under the same token: `GET /simulator/bot{token}/calls?after=N&timeout=S` (the calls recorded
since N, files base64-encoded; long poll) and `POST /simulator/bot{token}/files?suffix=jpg` (a
file a user "uploaded", answered with its file_id).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BOT_USER = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "VaxChannel",
    "username": "vaxchannel_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    token: str
    at: float


@dataclass
class Failure:
    kind: str  # "429" | "500" | "403"
    remaining: int
    retry_after: int = 0


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes


@dataclass
class _Faults:
    by_method: dict[str, list[Failure]] = field(default_factory=dict)
    blocked_chats: set[str] = field(default_factory=set)


def _decode_value(value: str) -> Any:
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook accepts as secret_token


def _call_json(call: Call) -> dict[str, Any]:
    files = {
        name: {
            "filename": f.filename,
            "content_type": f.content_type,
            "data": base64.b64encode(f.data).decode(),
        }
        for name, f in call.files.items()
    }
    return {"method": call.method, "params": call.params, "files": files, "at": call.at}


def call_from_json(data: dict[str, Any], token: str = "") -> Call:
    """The inverse of what `/simulator/bot{token}/calls` sends."""
    files = {
        name: UploadedFile(f["filename"], f["content_type"], base64.b64decode(f["data"]))
        for name, f in data.get("files", {}).items()
    }
    return Call(data["method"], data.get("params", {}), files, token, float(data.get("at", 0)))


def error_body(kind: str, retry_after: int = 0) -> tuple[int, dict[str, Any]]:
    if kind == "429":
        return 429, {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        }
    if kind == "403":
        return 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
    return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}


class LocalBotApi:
    """The stand-in. `start()` serves it on 127.0.0.1 in a thread; `base_url` is TELEGRAM_API_BASE."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, max_calls: int | None = None
    ) -> None:
        self.host, self.port = host, port
        self.token, self.max_calls = token, max_calls
        self.calls: list[Call] = []
        self.dropped_calls = 0  # calls forgotten (max_calls): `calls[i]` is call number dropped_calls + i
        self.files: dict[str, StoredFile] = {}
        self.updates: list[dict[str, Any]] = []  # queue served by getUpdates (polling mode)
        self.webhook: dict[str, Any] = {}
        self.listeners: list[Callable[[Call], None]] = []
        self._faults = _Faults()
        self._lock = threading.Condition()
        self._message_ids = itertools.count(1001)
        self._file_numbers = itertools.count(0)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._api, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._download, methods=["GET"]),
                Route("/simulator/bot{token}/calls", self._calls_since, methods=["GET"]),
                Route("/simulator/bot{token}/files", self._upload, methods=["POST"]),
            ]
        )

    # -- running -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalBotApi:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-bot-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the local Bot API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> LocalBotApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controlling ---------------------------------------------------------------------------
    def fail_next(self, method: str, kind: str, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` answer 429 (with retry_after), 500 or 403 (blocked)."""
        with self._lock:
            self._faults.by_method.setdefault(method.lower(), []).append(Failure(kind, times, retry_after))

    def block_chat(self, chat_id: int | str) -> None:
        """From now on, every send to this chat answers 403 "bot was blocked by the user"."""
        with self._lock:
            self._faults.blocked_chats.add(str(chat_id))

    def unblock_chat(self, chat_id: int | str) -> None:
        with self._lock:
            self._faults.blocked_chats.discard(str(chat_id))

    def add_file(self, data: bytes, file_id: str | None = None, suffix: str = "jpg") -> StoredFile:
        """Registers a file a user 'uploaded' to Telegram, so getFile and the download find it."""
        file_id = file_id or f"AgAC{uuid.uuid4().hex}"
        with self._lock:
            stored = StoredFile(
                file_id, f"AQAD{uuid.uuid4().hex[:12]}", f"photos/file_{next(self._file_numbers)}.{suffix}", data
            )
            self.files[file_id] = stored
            while self.max_calls is not None and len(self.files) > self.max_calls:
                del self.files[next(iter(self.files))]  # the oldest
            return stored

    def push_update(self, update: dict[str, Any]) -> None:
        with self._lock:
            self.updates.append(update)
            self._lock.notify_all()

    def calls_of(self, *methods: str) -> list[Call]:
        wanted = {m.lower() for m in methods}
        with self._lock:
            return [c for c in self.calls if not wanted or c.method.lower() in wanted]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Blocks until at least `count` calls of `method` were recorded; returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.method.lower() == method.lower()]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{method} called {len(found)} times, expected {count}")
                self._lock.wait(left)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- serving -------------------------------------------------------------------------------
    async def _params(self, request: Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        params: dict[str, Any] = {k: _decode_value(v) for k, v in request.query_params.items()}
        files: dict[str, UploadedFile] = {}
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            body = await request.body()
            if body:
                params.update(json.loads(body))
        elif ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form()
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    files[key] = UploadedFile(
                        value.filename or key, value.content_type or "application/octet-stream", data
                    )
                else:
                    params[key] = _decode_value(value)
        for key, value in list(params.items()):  # "attach://name" references a multipart part
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
                files[key] = files[value[9:]]
        return params, files

    def _fault_for(self, method: str, params: dict[str, Any]) -> Failure | None:
        with self._lock:
            if method.startswith(("send", "edit", "copy", "forward")) and (
                str(params.get("chat_id")) in self._faults.blocked_chats
            ):
                return Failure("403", 1)
            queue = self._faults.by_method.get(method, [])
            if queue:
                failure = queue[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.pop(0)
                return failure
        return None

    def _refused(self, request: Request) -> Response | None:
        """401 as the real Bot API answers a wrong token (only when this stand-in has one)."""
        if self.token is None or hmac.compare_digest(
            request.path_params["token"].encode(), self.token.encode()
        ):
            return None
        return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            if self.max_calls is not None and len(self.calls) > self.max_calls:
                drop = len(self.calls) - self.max_calls
                del self.calls[:drop]
                self.dropped_calls += drop
            self._lock.notify_all()

    async def _api(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        token, method = request.path_params["token"], request.path_params["method"]
        try:
            params, files = await self._params(request)
        except ValueError:
            return JSONResponse(
                {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"}, 400
            )
        call = Call(method, params, files, token, time.time())
        self._record(call)
        for listener in list(self.listeners):
            listener(call)
        failure = self._fault_for(method.lower(), params)
        if failure is not None:
            status, body = error_body(failure.kind, failure.retry_after)
            return JSONResponse(body, status)
        if method.lower() == "getupdates":
            return JSONResponse({"ok": True, "result": await self._get_updates(params)})
        handler = self._HANDLERS.get(method.lower())
        if handler is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        result = handler(self, params, files)
        if isinstance(result, tuple):
            status, body = result
            return JSONResponse(body, status)
        return JSONResponse({"ok": True, "result": result})

    async def _download(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        path = request.path_params["file_path"]
        for stored in list(self.files.values()):
            if stored.file_path == path:
                return Response(stored.data, media_type="application/octet-stream")
        return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _calls_since(self, request: Request) -> Response:
        """For the simulator: the calls recorded after number `after` (waits up to `timeout` s)."""
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            after = max(int(request.query_params.get("after", "0")), 0)
            timeout = min(max(float(request.query_params.get("timeout", "0")), 0.0), 25.0)
        except ValueError:
            return JSONResponse({"ok": False, "error_code": 400, "description": "Bad Request: after"}, 400)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                start = max(after - self.dropped_calls, 0)
                found = self.calls[start:]
                upto = self.dropped_calls + len(self.calls)
            if found or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        return JSONResponse({"ok": True, "result": [_call_json(c) for c in found], "next": upto})

    async def _upload(self, request: Request) -> Response:
        """For the simulator: stores a file a user sends (a photo, a document); answers its ids."""
        if (refused := self._refused(request)) is not None:
            return refused
        suffix = re.sub(r"[^A-Za-z0-9]", "", request.query_params.get("suffix", "jpg"))[:5] or "bin"
        stored = self.add_file(await request.body(), suffix=suffix)
        return JSONResponse(
            {"ok": True, "result": {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}}
        )

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 30.0)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                pending = list(self.updates)
            if pending or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(0.05)

    # -- method results ------------------------------------------------------------------------
    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        chat: dict[str, Any] = {"id": int(str(chat_id)) if str(chat_id).lstrip("-").isdigit() else chat_id}
        chat["type"] = "private" if isinstance(chat["id"], int) and chat["id"] > 0 else "group"
        message = {"message_id": next(self._message_ids), "from": BOT_USER, "chat": chat}
        message["date"] = int(time.time())
        if isinstance(params.get("reply_markup"), dict) and "inline_keyboard" in params["reply_markup"]:
            message["reply_markup"] = params["reply_markup"]
        message.update(content)
        return message

    def _store_upload(self, upload: UploadedFile | None, value: Any) -> StoredFile | None:
        if upload is not None:
            suffix = (upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else "bin")[:5]
            return self.add_file(upload.data, suffix=suffix)
        if isinstance(value, str) and value in self.files:
            return self.files[value]
        return None

    def _send_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        text = str(params.get("text") or "")
        if not text.strip():
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if len(text) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        return self._message(params, text=text)

    def _send_photo(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        stored = self._store_upload(files.get("photo"), params.get("photo"))
        if stored is None:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: there is no photo"}
        size: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        size |= {"file_size": len(stored.data), "width": 800, "height": 800}
        content: dict[str, Any] = {"photo": [size]}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return self._message(params, **content)

    def _send_document(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        upload = files.get("document")
        stored = self._store_upload(upload, params.get("document"))
        if stored is None:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: there is no document"}
        document: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        document |= {"file_size": len(stored.data)}
        if upload is not None:
            document |= {"file_name": upload.filename, "mime_type": upload.content_type}
        content: dict[str, Any] = {"document": document}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return self._message(params, **content)

    def _edit_message_text(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if params.get("inline_message_id"):
            return True
        message = self._message(params, text=str(params.get("text") or ""))
        message["message_id"] = int(params.get("message_id") or 0)
        message["edit_date"] = int(time.time())
        return message

    def _get_file(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    def _set_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):  # as the real Bot API checks
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: secret token contains unallowed characters",
            }
        self.webhook = dict(params)
        return True

    def _delete_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        self.webhook = {}
        return True

    def _webhook_info(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }

    _HANDLERS: dict[str, Callable[[LocalBotApi, dict[str, Any], dict[str, UploadedFile]], Any]] = {
        "getme": lambda self, p, f: BOT_USER,
        "logout": lambda self, p, f: True,
        "close": lambda self, p, f: True,
        "setwebhook": _set_webhook,
        "deletewebhook": _delete_webhook,
        "getwebhookinfo": _webhook_info,
        "setmycommands": lambda self, p, f: True,
        "deletemycommands": lambda self, p, f: True,
        "sendmessage": _send_message,
        "sendphoto": _send_photo,
        "senddocument": _send_document,
        "sendchataction": lambda self, p, f: True,
        "answercallbackquery": lambda self, p, f: True,
        "editmessagetext": _edit_message_text,
        "editmessagereplymarkup": lambda self, p, f: True,
        "deletemessage": lambda self, p, f: True,
        "getfile": _get_file,
    }
