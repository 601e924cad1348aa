"""`POST /voice/twilio`: recorded Twilio Voice requests (courier-style table), the TwiML it answers,
and a whole call through the real app with the Twilio stand-in: login with the code sent by SMS →
doses heard → certificate link and code by SMS → a report with a spoken description, resolved from
the console, the outcome reaching the caller by SMS."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from registry_client.models import CorrectionQuery
from tests.fakes.twilio_api import TwilioStandIn
from tests.sms_gateway.conftest import AUTH_TOKEN, PUBLIC, payload
from tests.sms_gateway.test_twilio_webhook import FORM, sign, with_fields

START = payload("twilio_voice_start.form")
DIGITS = payload("twilio_voice_digits.form")
REDIRECT = payload("twilio_voice_redirect.form")
STATUS = payload("twilio_voice_status_completed.form")


def twiml(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


def spoken(root: ET.Element) -> str:
    return " ".join(say.text or "" for say in root.iter("Say"))


# name, path, body, signed, status, what the TwiML holds (verbs in order), words said
CASES = [
    ("call starts", "/voice/twilio", START, True, 200, ["Gather", "Redirect"], "Bấm 1"),
    ("a key pressed", "/voice/twilio", DIGITS, True, 200, ["Gather", "Redirect"], "CCCD"),
    ("first silence repeats", "/voice/twilio?silence=1&lang=vi", REDIRECT, True, 200, ["Gather", "Redirect"], ""),
    ("second silence ends politely", "/voice/twilio?silence=2&lang=vi", REDIRECT, True, 200, ["Say", "Hangup"], "cảm ơn"),
    ("status callback", "/voice/twilio", STATUS, True, 204, [], ""),
    ("bad signature", "/voice/twilio", START, False, 403, [], ""),
    ("missing CallSid", "/voice/twilio", with_fields(START, CallSid=None), True, 400, [], ""),
    ("caller ID withheld", "/voice/twilio", with_fields(START, From="anonymous"), True, 200, ["Say", "Hangup"], "tổng đài"),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "signed", "status", "verbs", "says"), CASES, ids=[c[0] for c in CASES]
)
def test_voice_webhook_table(
    make_client: Callable[..., TestClient],
    name: str,
    path: str,
    body: bytes,
    signed: bool,
    status: int,
    verbs: list[str],
    says: str,
) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    if name.startswith("first silence") or name == "a key pressed":
        client.post("/voice/twilio", content=START, headers=sign("/voice/twilio", START))  # the call is on
    headers = sign(path, body) if signed else {**FORM, "X-Twilio-Signature": "AAAA"}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"].startswith("application/xml")
        root = twiml(response.text)
        assert [child.tag for child in root] == verbs
        assert says in spoken(root)
        if name.startswith("first silence"):
            assert spoken(root).startswith("Xin lỗi, chúng tôi chưa nghe thấy phím nào.")
            assert "Bấm 1" in spoken(root)  # the menu again


def test_without_an_auth_token_the_gateway_token_is_demanded(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.post("/voice/twilio", content=START, headers=FORM).status_code == 200
    stranger = client.post("/voice/twilio", content=START, headers={**FORM, "X-Gateway-Token": "guess"})
    assert stranger.status_code == 403 and "Nguyen" not in stranger.text


def test_the_menu_gathers_one_key_and_an_entry_ends_with_hash(make_client: Callable[..., TestClient]) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN)
    menu = twiml(client.post("/voice/twilio", content=START, headers=sign("/voice/twilio", START)).text)
    gather = menu.find("Gather")
    assert gather is not None
    assert gather.attrib["input"] == "dtmf" and gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"] == "/voice/twilio" and gather.attrib["method"] == "POST"
    say = gather.find("Say")
    assert say is not None and say.attrib["language"] == "vi-VN"
    assert "Bấm 0: Tổng đài" in (say.text or "")  # diacritics kept: the voice reads Vietnamese
    entry = twiml(client.post("/voice/twilio", content=DIGITS, headers=sign("/voice/twilio", DIGITS)).text)
    gather = entry.find("Gather")
    assert gather is not None and "numDigits" not in gather.attrib and gather.attrib["finishOnKey"] == "#"
    assert "phím thăng" in spoken(entry)


def test_zero_puts_the_caller_through_to_the_hotline(make_client: Callable[..., TestClient]) -> None:
    client = make_client(twilio_auth_token=AUTH_TOKEN, hotline_number="1900 9095")
    client.post("/voice/twilio", content=START, headers=sign("/voice/twilio", START))
    body = with_fields(DIGITS, Digits="0")
    root = twiml(client.post("/voice/twilio", content=body, headers=sign("/voice/twilio", body)).text)
    assert [child.tag for child in root] == ["Say", "Say", "Dial"]
    assert root.find("Dial") is not None and root.find("Dial").text == "19009095"  # type: ignore[union-attr]


def wav(seconds: float = 0.2) -> bytes:
    frames = b"\x00\x00" * int(8000 * seconds)
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(frames))
    return header + frames


class Call:
    """One phone call: every request carries the same CallSid and caller ID, signed by 'Twilio'."""

    def __init__(self, client: TestClient, caller: str, sid: str, token: str) -> None:
        self.client, self.caller, self.sid, self.token = client, caller, sid, token

    def post(self, path: str = "/voice/twilio", **fields: str) -> ET.Element:
        params = {"CallSid": self.sid, "From": self.caller, "To": "+842836221234", "CallStatus": "in-progress"}
        params.update(fields)
        body = urlencode(params).encode()
        signature = RequestValidator(self.token).compute_signature(PUBLIC + path, dict(params))
        response = self.client.post(path, content=body, headers={**FORM, "X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text
        return twiml(response.text)

    def press(self, digits: str) -> str:
        return spoken(self.post(Digits=digits))


@pytest.fixture
def stand_in() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as twilio:
        yield twilio


@pytest.fixture
def live_client(make_client: Callable[..., TestClient], stand_in: TwilioStandIn) -> TestClient:
    """The app with Twilio configured at the stand-in and its outbox worker running: SMS arrive there."""
    return make_client(
        twilio_account_sid=stand_in.account_sid,
        twilio_auth_token=stand_in.auth_token,
        twilio_from=stand_in.from_number,
        twilio_api_base=stand_in.base_url,
        run_workers=True,
        outbox_poll_seconds=0.05,
    )


def test_a_whole_call_login_status_certificate_report_and_outcome(
    live_client: TestClient, stand_in: TwilioStandIn
) -> None:
    client = live_client
    an = Call(client, "+84901234567", "CA" + "1" * 32, stand_in.auth_token)
    assert "Bấm 1" in spoken(an.post())
    assert "CCCD" in an.press("1")
    assert "ngày sinh" in an.press("001085012345").lower()
    assert "mã" in an.press("14031985").lower()
    otp = stand_in.wait_for(to="+84901234567", contains="ma xac thuc", timeout=10)
    code = re.search(r"\b(\d{6})\b", otp.body)
    assert code is not None
    status = an.press(code[1])
    assert "ngày 2 tháng 8 năm 2021" in status  # dates spoken as dates
    assert "0 0 1 ... 3 4 5" in status  # the masked ID digit by digit
    assert an.press("*") == status  # `*` repeats

    # the certificate link by SMS, then the certificate code by SMS
    an.press("0")
    assert "SMS" in an.press("2")
    stand_in.wait_for(to="+84901234567", contains="/c/", timeout=10)
    an.press("1")
    stand_in.wait_for(to="+84901234567", contains="ma chung nhan", timeout=10)

    # a caller recognised by caller ID only after the code: a new call from the same phone is bound
    again = Call(client, "+84901234567", "CA" + "2" * 32, stand_in.auth_token)
    again.post()
    assert "ngày 2 tháng 8 năm 2021" in again.press("1")

    # a report with a spoken description, attached to the report
    cuong = Call(client, "+84987654321", "CA" + "3" * 32, stand_in.auth_token)
    cuong.post()
    cuong.press("3")
    cuong.press("048095006789")
    cuong.press("30111995")
    otp = stand_in.wait_for(to="+84987654321", contains="ma xac thuc", timeout=10)
    code = re.search(r"\b(\d{6})\b", otp.body)
    assert code is not None
    cuong.press(code[1])
    cuong.press("1")  # missing dose
    cuong.press("1")  # dose 1
    cuong.press("15082021")
    cuong.press("9")  # site: skip (said in the recording)
    cuong.press("4")  # Vero Cell
    cuong.press("9")  # workplace: skip
    cuong.press("1")  # this phone
    sent = cuong.post(Digits="1")
    assert [child.tag for child in sent][-3:] == ["Record", "Say", "Hangup"]
    record = sent.find("Record")
    assert record is not None and record.attrib["action"] == "/voice/twilio?recording=1"
    recording_url = stand_in.add_recording(wav())
    done = cuong.post("/voice/twilio?recording=1", RecordingUrl=recording_url, RecordingDuration="1")
    assert "Đã ghi lại" in spoken(done) and done.find("Hangup") is not None

    registry = client.app.state.registry  # type: ignore[attr-defined]
    person = client.portal.call(registry.find_person, "048095006789", __import__("datetime").date(1995, 11, 30))  # type: ignore[union-attr]
    [case] = client.portal.call(registry.list_corrections, CorrectionQuery(person_id=person.id))  # type: ignore[union-attr]
    assert case.channel == "voice"
    assert [a.content_type for a in case.attachments] == ["audio/x-wav"]


def test_a_report_filed_by_voice_is_resolved_from_the_console_and_the_caller_told_by_sms(
    live_client: TestClient, stand_in: TwilioStandIn
) -> None:
    client = live_client
    binh = Call(client, "+84912345678", "CA" + "4" * 32, stand_in.auth_token)
    binh.post()
    binh.press("3")
    binh.press("079190004321")
    binh.press("21071990")
    otp = stand_in.wait_for(to="+84912345678", contains="ma xac thuc", timeout=10)
    code = re.search(r"\b(\d{6})\b", otp.body)
    assert code is not None
    binh.press(code[1])
    for key in ("1", "4", "9", "9", "2", "9", "1"):  # missing booster, no date, no site, Pfizer, this phone
        binh.press(key)
    sent = binh.post(Digits="1")
    said = spoken(sent)
    ref = re.search(r"P A, (\w) (\w) (\w) (\w), (\w) (\w)", said)
    assert ref is not None, said  # the reference is spelled out
    ref_text = "PA-" + "".join(ref.groups()[:4]) + "-" + "".join(ref.groups()[4:])

    console = client.app.state.console  # type: ignore[attr-defined]
    client.portal.call(console.users.create, "minh", "site", "HCM07", "a long passphrase", "tests")  # type: ignore[union-attr]
    token = client.post("/api/agent/token", json={"username": "minh", "password": "a long passphrase"}).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    queue = client.get("/api/corrections?status=open", headers=headers).json()
    assert ref_text in str(queue)
    resolved = client.post(
        f"/api/corrections/{ref_text}/resolve",
        headers=headers,
        json={"decision": "rejected", "note": "No booster in our books; please bring the card."},
    )
    assert resolved.status_code == 200, resolved.text
    told = stand_in.wait_for(to="+84912345678", contains="khong duoc duyet", timeout=10)
    assert ref_text in told.body and "bring the card" in told.body

    # the caller checks the report by keypad later: letters by their key (P→7, A→2, …)
    from conversations.flows.check_report import keypad_digits

    later = Call(client, "+84912345678", "CA" + "7" * 32, stand_in.auth_token)
    later.post()
    assert "bàn phím" in later.press("4")
    state = later.press(keypad_digits(ref_text))
    assert "không được duyệt" in state and "bring the card" in state
    later.post()  # a new call: a wrong reference is not found
    later.press("4")
    assert "Mã phản ánh không đúng" in later.press("72000000")  # not one of the caller's reports


def test_the_voice_simulator_drives_a_call_to_the_doses(
    live_client: TestClient, stand_in: TwilioStandIn
) -> None:
    from settings import Settings
    from sms_gateway.voice_simulator import VoicePhone, voice_loop

    client = live_client
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]

    def code() -> str:
        otp = stand_in.wait_for(to="+84901234567", contains="ma xac thuc", timeout=10)
        found = re.search(r"\b(\d{6})\b", otp.body)
        assert found is not None
        return found[1]

    script: list[str | Callable[[], str]] = ["", "1", "001085012345", "14031985", code, "", "", "q"]
    shown: list[str] = []

    def read(prompt: str) -> str:
        item = script.pop(0)
        return item() if callable(item) else item

    voice_loop(VoicePhone(client, settings, "http://testserver", "+84901234567"), read, shown.append)
    heard = "\n".join(shown)
    assert "🔊" in heard and "ngày 2 tháng 8 năm 2021" in heard  # the doses, read aloud
    assert "Xin lỗi, chúng tôi chưa nghe thấy phím nào." in heard  # Enter alone is silence
    assert "(call ended: hung up)" in heard  # silence twice ends the call


def test_calls_served_without_an_agent_are_counted_for_the_dashboard(
    make_client: Callable[..., TestClient],
) -> None:
    from datetime import UTC, datetime, timedelta

    from sms_gateway.voice_calls import VoiceCalls

    client = make_client(twilio_auth_token=AUTH_TOKEN)
    helped = Call(client, "+84901234567", "CA" + "5" * 32, AUTH_TOKEN)
    helped.post()
    assert helped.post(Digits="0").find("Dial") is not None  # put through to the hotline
    alone = Call(client, "+84912345678", "CA" + "6" * 32, AUTH_TOKEN)
    alone.post()
    for call, seconds in ((helped, "95"), (alone, "45")):
        params = {"CallSid": call.sid, "From": call.caller, "CallStatus": "completed", "CallDuration": seconds}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + "/voice/twilio", params)
        response = client.post(
            "/voice/twilio", content=urlencode(params).encode(), headers={**FORM, "X-Twilio-Signature": signature}
        )
        assert response.status_code == 204
    calls = VoiceCalls(client.app.state.db_sessions)  # type: ignore[attr-defined]
    since = datetime.now(UTC) - timedelta(days=1)
    figures = client.portal.call(calls.figures, since)  # type: ignore[union-attr]
    assert (figures.calls, figures.handed_over, figures.served_without_agent, figures.minutes) == (2, 1, 1, 2.3)
    metrics = client.get("/metrics").text
    assert 'voice_calls_total{status="completed"}' in metrics and "voice_handovers_total" in metrics
