"""A local stand-in for Twilio's REST API (the part VaxChannel uses), speaking the real wire format.

Point the service at it with `TWILIO_API_BASE=<stand_in.base_url>` (and any TWILIO_ACCOUNT_SID /
TWILIO_AUTH_TOKEN / TWILIO_FROM: the stand-in checks basic auth against the sid/token it was
created with). It runs a threaded HTTP server on 127.0.0.1 (free port), so it serves a service
running in this process, in a thread, or in a subprocess alike.

    with TwilioStandIn() as twilio:
        settings = Settings(twilio_api_base=twilio.base_url, twilio_account_sid=twilio.account_sid,
                            twilio_auth_token=twilio.auth_token, twilio_from=twilio.from_number, ...)
        ...
        msg = twilio.wait_for(to="+84901234567", timeout=5)        # blocking (threads, subprocess)
        msg = await twilio.wait_for_async(to="+84901234567")        # in an event loop
        twilio.fail_next(2, 429)       # next two sends answer 429 (then 500, "timeout", 21610, 21211 …)
        twilio.fire_status(msg.sid, "delivered")   # POSTs a signed callback to msg.status_callback

Endpoints:
- `POST /2010-04-01/Accounts/{sid}/Messages.json` — form `To`, `From` (or `MessagingServiceSid`),
  `Body`, optional `StatusCallback`, `MediaUrl`; basic auth; answers 201 with Twilio's message JSON
  (`sid` "SM…", `status` "queued"), or Twilio's error JSON (`code`, `message`, `more_info`, `status`).
- `GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json` — the message as JSON.
- `GET /2010-04-01/Accounts/{sid}/Messages/{MM…}/Media/{ME…}` — media added with `add_media()`
  (for inbound-MMS tests: Twilio's MediaUrl0 points at such a URL; basic auth required), or a 307
  redirect added with `add_media_redirect()`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twilio.request_validator import RequestValidator

# Twilio error codes the service must tell apart (https://www.twilio.com/docs/api/errors).
ERRORS: dict[int | str, tuple[int, int, str]] = {
    # key: (http status, twilio code, message)
    429: (429, 20429, "Too Many Requests"),
    500: (500, 20500, "Internal Server Error"),
    503: (503, 20503, "Service Unavailable"),
    21610: (400, 21610, "Attempt to send to unsubscribed recipient"),
    21211: (400, 21211, "The 'To' number is not a valid phone number."),
    21614: (400, 21614, "'To' number is not a valid mobile number"),
    21408: (
        400,
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    ),
}

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages/(?P<msid>\w+)\.json$")
_MEDIA = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages/(?P<msid>\w+)/Media/(?P<meid>\w+)$")
# a call recording: RecordingUrl is the resource without extension; `.wav` fetches the audio
_RECORDING = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Recordings/(?P<meid>RE\w+)\.wav$")


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class SentMessage:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    media_urls: list[str]
    created_at: float
    status: str = "queued"
    form: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        created = formatdate(self.created_at, usegmt=True).replace("GMT", "+0000")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": str(len(self.media_urls)),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


class TwilioStandIn:
    """See the module docstring. Thread-safe; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 30 + "42",
        auth_token: str = "standin-auth-token",
        from_number: str = "+15005550006",
        *,
        timeout_delay: float = 3.0,
    ) -> None:
        self.account_sid, self.auth_token, self.from_number = account_sid, auth_token, from_number
        self.timeout_delay = timeout_delay  # how long a "timeout" fault keeps the client waiting
        self.messages: list[SentMessage] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, answered status)
        self._faults: list[int | str] = []
        self._media: dict[str, tuple[bytes, str]] = {}
        self._redirects: dict[str, str] = {}
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> TwilioStandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="twilio-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TwilioStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test controls ----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int | str) -> None:
        """The next `n` message creations answer with a fault: 429, 500, 503, 21610, 21211, 21614,
        21408 (Twilio's error JSON with that code) or "timeout" (no answer for `timeout_delay` s)."""
        if status not in ERRORS and status != "timeout":
            raise ValueError(f"unknown fault {status!r}")
        with self._cond:
            self._faults.extend([status] * n)

    def add_media(self, content: bytes, content_type: str) -> str:
        """Stores a file and returns a Twilio-shaped media URL for it (as in MediaUrl0)."""
        msid, meid = _sid("MM"), _sid("ME")
        with self._cond:
            self._media[meid] = (content, content_type)
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/{msid}/Media/{meid}"

    def add_recording(self, content: bytes) -> str:
        """Stores a WAV and returns a Twilio-shaped RecordingUrl for it (as <Record> posts it)."""
        reid = _sid("RE")
        with self._cond:
            self._media[reid] = (content, "audio/x-wav")
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Recordings/{reid}"

    def add_media_redirect(self, location: str) -> str:
        """A Twilio-shaped media URL that answers 307 to `location` (as Twilio redirects to its CDN)."""
        msid, meid = _sid("MM"), _sid("ME")
        with self._cond:
            self._redirects[meid] = location
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/{msid}/Media/{meid}"

    def sent_to(self, to: str) -> list[SentMessage]:
        with self._cond:
            return [m for m in self.messages if m.to == to]

    def wait_for(
        self, to: str | None = None, *, contains: str | None = None, timeout: float = 5.0, after: int = 0
    ) -> SentMessage:
        """Blocks until a message (the `after`-th onwards, 0-based over all messages) to `to`
        containing `contains` has arrived; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._find(to, contains, after)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no SMS to {to!r} containing {contains!r} within {timeout}s; got "
                        f"{[(m.to, m.body) for m in self.messages]}"
                    )
                self._cond.wait(left)

    async def wait_for_async(
        self, to: str | None = None, *, contains: str | None = None, timeout: float = 5.0, after: int = 0
    ) -> SentMessage:
        """Like wait_for, without blocking the event loop (the service may run in this loop)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                found = self._find(to, contains, after)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return self.wait_for(to, contains=contains, timeout=0, after=after)  # raises with details
            await asyncio.sleep(0.02)

    def _find(self, to: str | None, contains: str | None, after: int) -> SentMessage | None:
        for m in self.messages[after:]:
            if (to is None or m.to == to) and (contains is None or contains in m.body):
                return m
        return None

    def fire_status(self, sid: str, status: str, error_code: str | None = None) -> int:
        """POSTs Twilio's status callback for message `sid` to its StatusCallback URL, signed with the
        auth token as Twilio does (X-Twilio-Signature). Returns the HTTP status the service answered."""
        message = next(m for m in self.messages if m.sid == sid)
        if not message.status_callback:
            raise AssertionError(f"message {sid} was sent without a StatusCallback")
        message.status = status
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.from_,
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code:
            params["ErrorCode"] = error_code
        signature = RequestValidator(self.auth_token).compute_signature(message.status_callback, params)
        request = urllib.request.Request(
            message.status_callback,
            data=urllib.parse.urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "User-Agent": "TwilioProxy/1.1",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    # -- request handling (called from server threads) -----------------------------------------
    def _take_fault(self) -> int | str | None:
        with self._cond:
            return self._faults.pop(0) if self._faults else None

    def _record(self, message: SentMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    standin: TwilioStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.standin.requests.append((self.command, self.path, status))

    def _error(self, key: int | str) -> None:
        status, code, message = ERRORS[key]
        self._send_json(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def _authorized(self, sid: str) -> bool:
        expected = base64.b64encode(f"{self.standin.account_sid}:{self.standin.auth_token}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}" or sid != self.standin.account_sid:
            self._send_json(
                401,
                {
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
            )
            return False
        return True

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8")
        path = urllib.parse.urlsplit(self.path).path
        match = _MESSAGES.match(path)
        if match is None:
            self._send_json(
                404, {"code": 20404, "message": "The requested resource was not found", "status": 404}
            )
            return
        if not self._authorized(match["sid"]):
            return
        form: dict[str, str] = {}
        media: list[str] = []
        for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
            if key == "MediaUrl":
                media.append(value)
            else:
                form[key] = value
        if not form.get("To"):
            self._send_json(
                400, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}
            )
            return
        if not form.get("Body") and not media:
            self._send_json(400, {"code": 21602, "message": "Message body is required.", "status": 400})
            return
        fault = self.standin._take_fault()
        if fault == "timeout":
            time.sleep(self.standin.timeout_delay)
            self._error(500)
            return
        if fault is not None:
            self._error(fault)
            return
        message = SentMessage(
            sid=_sid("SM"),
            account_sid=match["sid"],
            to=form["To"],
            from_=form.get("From") or form.get("MessagingServiceSid", ""),
            body=form.get("Body", ""),
            status_callback=form.get("StatusCallback"),
            media_urls=media,
            created_at=time.time(),
            form=form,
        )
        self.standin._record(message)
        self._send_json(201, message.as_json())

    def do_GET(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if (match := _MEDIA.match(path) or _RECORDING.match(path)) is not None:
            if not self._authorized(match["sid"]):
                return
            location = self.standin._redirects.get(match["meid"])
            if location is not None:
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            item = self.standin._media.get(match["meid"])
            if item is None:
                self._send_json(404, {"code": 20404, "message": "not found", "status": 404})
                return
            content, content_type = item
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
            return
        if (match := _MESSAGE.match(path)) is not None:
            if not self._authorized(match["sid"]):
                return
            found = next((m for m in self.standin.messages if m.sid == match["msid"]), None)
            if found is None:
                self._send_json(404, {"code": 20404, "message": "not found", "status": 404})
                return
            self._send_json(200, found.as_json())
            return
        self._send_json(404, {"code": 20404, "message": "not found", "status": 404})
