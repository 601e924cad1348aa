"""`python main.py simulate voice --phone +84…`: a phone call in the terminal.

It sends `POST /voice/twilio` exactly as Twilio Voice does (CallSid, From, Digits; signed with
TWILIO_AUTH_TOKEN, or with the gateway token without one), prints what the call would say, and takes
keypad digits: type the keys and Enter (Enter alone is silence; `*` repeats). SMS that the service
sends to the phone (the one-time code, links) appear as ✉, as in the SMS simulator.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from settings import Settings
from sms_gateway.simulator import twilio_headers

PATH = "/voice/twilio"


@dataclass
class Heard:
    said: list[str]
    waits_for_keys: bool  # a <Gather>: the caller may press keys
    next_path: str | None  # where silence goes (<Redirect>), or a <Record> action
    ended: str | None  # why the call ended: "hung up", "put through to …", "recording"


def parse(twiml: str) -> Heard:
    root = ET.fromstring(twiml)
    said = [say.text or "" for say in root.iter("Say")]
    gather = root.find("Gather")
    redirect = root.find("Redirect")
    dial, record = root.find("Dial"), root.find("Record")
    ended = None
    if dial is not None:
        ended = f"put through to {dial.text}"
    elif record is not None:
        ended = "recording"
    elif root.find("Hangup") is not None:
        ended = "hung up"
    return Heard(said, gather is not None, redirect.text if redirect is not None else None, ended)


class VoicePhone:
    def __init__(self, client: httpx.Client, settings: Settings, base_url: str, phone: str) -> None:
        self.client, self.settings, self.phone = client, settings, phone
        self.base_url = base_url.rstrip("/")
        self.call_sid = ""

    def call(self) -> Heard:
        self.call_sid = "CA" + uuid.uuid4().hex
        return self._post(PATH, {"CallStatus": "ringing"})

    def press(self, keys: str) -> Heard:
        return self._post(PATH, {"CallStatus": "in-progress", "Digits": keys})

    def silence(self, path: str) -> Heard:
        return self._post(path, {"CallStatus": "in-progress"})

    def hang_up(self) -> None:
        self._post(PATH, {"CallStatus": "completed", "CallDuration": "60"}, expect_twiml=False)

    def _post(self, path: str, fields: dict[str, str], *, expect_twiml: bool = True) -> Heard:
        params = {
            "AccountSid": self.settings.twilio_account_sid or "AC" + "0" * 32,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "Direction": "inbound",
            "From": self.phone,
            "Caller": self.phone,
            "To": self.settings.twilio_from or "+842836221234",
            **fields,
        }
        signed = self.settings.public_base_url.rstrip("/") + path
        headers = twilio_headers(self.settings, signed, params)
        response = self.client.post(self.base_url + path, data=params, headers=headers)
        if not expect_twiml:
            return Heard([], False, None, "hung up")
        if response.status_code != 200:
            return Heard([f"[HTTP {response.status_code}] {response.text[:200]}"], False, None, "error")
        return parse(response.text)


def voice_loop(
    phone: VoicePhone,
    read: Callable[[str], str],
    show: Callable[[str], None],
    flush: Callable[[], None] = lambda: None,
) -> None:
    show("Voice: Enter starts a call; then type keys and Enter (Enter alone = silence, * repeats), q quits.")
    while True:
        if read("[call] ").strip().lower() in ("q", "quit", "exit"):
            return
        heard = phone.call()
        while True:
            for text in heard.said:
                show(f"  🔊 {text}")
            flush()
            if heard.ended is not None or not heard.waits_for_keys:
                show(f"(call ended: {heard.ended or 'no question asked'})")
                phone.hang_up()
                break
            keys = read("keys> ").strip()
            if keys.lower() in ("q", "quit", "exit"):
                phone.hang_up()
                return
            heard = phone.press(keys) if keys else phone.silence(heard.next_path or PATH)
