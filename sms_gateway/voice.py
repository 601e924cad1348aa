"""Twilio Voice webhook: `POST /voice/twilio` — the menu read aloud, answers on the keypad.

Signed like the SMS webhook (X-Twilio-Signature with TWILIO_AUTH_TOKEN, else the gateway token).
Every request of a call carries its `CallSid` (the session) and `From` (the caller ID); the engine
answers as on USSD, and the answer is TwiML built with the `twilio` library:

- a question: `<Gather input="dtmf">` around `<Say>`; one key for a menu, an entry (ID, date, code)
  ended by `#`; `*` repeats; no key twice (`?silence=1`, `?silence=2`) ends the call politely;
- the hotline (`0` on the main menu): `<Dial>` to HOTLINE_NUMBER;
- after a report: `<Record>` of a spoken description, attached to the report (`?recording=1`);
- the end of a conversation: `<Say>` and `<Hangup>`.

`CallStatus` callbacks (completed, busy, …) count calls and call minutes in the metrics.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import Counter
from twilio.twiml.voice_response import VoiceResponse

from conversations.i18n import t
from conversations.model import Channel, Inbound, InboundMedia, Reply, Turn
from conversations.voice_text import speech
from registry_client.identity import mask_phone, normalize_phone
from settings import Settings
from sms_gateway import media
from sms_gateway.twilio import read_twilio_form
from sms_gateway.voice_calls import VoiceCalls

log = logging.getLogger(__name__)
router = APIRouter(tags=["voice"])

PATH = "/voice/twilio"
ENTRY_SECONDS = 8  # silence after which Twilio sends what was typed (an entry ends earlier with `#`)
MENU_SECONDS = 6
MAX_DIGITS = 24
RECORD_SECONDS = 60
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})

CALLS = Counter("voice_calls_total", "Voice calls ended, by final status", ["status"])
CALL_SECONDS = Counter("voice_call_seconds_total", "Seconds of voice calls (CallDuration of ended calls)")
HANDOVERS = Counter("voice_handovers_total", "Voice calls put through to the hotline")
RECORDINGS = Counter("voice_recordings_total", "Spoken report descriptions, by outcome", ["outcome"])


def voice_calls(request: Request) -> VoiceCalls:
    state = request.app.state
    calls: VoiceCalls | None = getattr(state, "voice_calls", None)
    if calls is None:
        calls = state.voice_calls = VoiceCalls(state.db_sessions)
    return calls


def _language(turn_language: str) -> str:
    return "en-US" if turn_language == "en" else "vi-VN"


def _xml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type="application/xml")


def render(turn: Turn, settings: Settings, *, silence: int = 0) -> VoiceResponse:
    """A Turn as TwiML."""
    lang = turn.language
    said = speech(turn.replies, lang)
    response = VoiceResponse()
    voice_lang = _language(lang)
    if turn.hand_over:
        HANDOVERS.inc()
        response.say(said.text, language=voice_lang)
        response.say(t(lang, "voice.transfer"), language=voice_lang)
        response.dial(re.sub(r"[^\d+]", "", settings.hotline_number))
        return response
    if said.record_for is not None:
        response.say(said.text, language=voice_lang)
        response.record(
            action=f"{PATH}?recording=1",
            method="POST",
            max_length=RECORD_SECONDS,
            finish_on_key="#",
            play_beep=True,
        )
        response.say(t(lang, "common.goodbye"), language=voice_lang)  # nothing recorded
        response.hangup()
        return response
    if turn.end:
        response.say(said.text, language=voice_lang)
        response.hangup()
        return response
    gather = response.gather(
        input="dtmf",
        action=PATH,
        method="POST",
        finish_on_key="#",
        timeout=MENU_SECONDS if said.menu else ENTRY_SECONDS,
        num_digits=1 if said.menu else None,
        action_on_empty_result=False,
    )
    gather.say(said.text, language=voice_lang)
    response.redirect(f"{PATH}?silence={silence + 1}&lang={lang}", method="POST")  # no key pressed
    return response


def _goodbye(settings: Settings, language: str, key: str) -> VoiceResponse:
    response = VoiceResponse()
    response.say(t(language, key, hotline=settings.hotline_number), language=_language(language))
    response.hangup()
    return response


def _keys(raw: str) -> str:
    """The keys pressed: digits, `*`, `#`; `*` anywhere asks to hear the last answer again."""
    keys = re.sub(r"[^0-9*#]", "", raw)[:MAX_DIGITS].rstrip("#")
    return "*" if "*" in keys else keys


async def _recording(request: Request, params: dict[str, str], caller: str, call_sid: str) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    url = params.get("RecordingUrl", "")
    auth = (
        (settings.twilio_account_sid, settings.twilio_auth_token)
        if settings.twilio_account_sid and settings.twilio_auth_token
        else None
    )
    stored: tuple[InboundMedia, ...] = ()
    try:
        content = await media.download_recording(
            url if url.endswith(".wav") else f"{url}.wav", auth, api_base=settings.twilio_api_base
        )
        stored = (media.store_recording(settings.data_dir, content, f"call-{call_sid[:40]}"),)
    except media.MediaRejected as exc:
        log.warning("recording of call %s not taken: %s", call_sid[:40], exc)
    except Exception:  # noqa: BLE001 - a failed download must still end the call politely
        log.exception("recording of call %s not downloaded", call_sid[:40])
    turn = await state.conversations.handle(
        Inbound(
            channel=Channel.VOICE,
            address=caller,
            session_key=call_sid[:100],
            media=stored,
            rejected_media=None if stored else "recording",
        )
    )
    RECORDINGS.labels("attached" if stored else "failed").inc()
    language = turn.language
    return _xml(_goodbye(settings, language, "voice.recorded" if stored else "voice.not_recorded"))


@router.post(PATH)
async def voice_call(request: Request) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    params = await read_twilio_form(request)
    call_sid = params.get("CallSid", "").strip()
    caller = normalize_phone(params.get("From", ""))
    if not call_sid:
        raise HTTPException(400, "CallSid is required")
    if caller is None:  # caller ID withheld: nothing can be looked up; say so rather than fail the call
        return _xml(_goodbye(settings, "vi", "voice.no_caller_id"))
    status = params.get("CallStatus", "").strip().lower()
    if status in FINAL_STATUSES:  # the call's status callback
        CALLS.labels(status).inc()
        duration = params.get("CallDuration", "")
        if duration.isdigit():
            CALL_SECONDS.inc(int(duration))
        await voice_calls(request).ended(call_sid, status, int(duration) if duration.isdigit() else None)
        return Response(status_code=204)
    if request.query_params.get("recording") and params.get("RecordingUrl"):
        return await _recording(request, params, caller, call_sid)
    silence_text = request.query_params.get("silence", "0")
    silence = int(silence_text) if silence_text.isdigit() else 0
    if "Digits" in params:
        text, silence = _keys(params["Digits"]), 0
    elif silence >= 2:
        language = "en" if request.query_params.get("lang") == "en" else "vi"
        return _xml(_goodbye(settings, language, "voice.goodbye_silent"))
    elif silence == 1:
        text = "*"  # nothing pressed: say it again
    else:
        text = ""  # the call starts
        await voice_calls(request).started(call_sid, state.conversations.clock())
    inbound = Inbound(channel=Channel.VOICE, address=caller, text=text, session_key=call_sid[:100])
    try:
        turn = await state.conversations.handle(inbound)
    except Exception:
        log.exception("voice call of %s not handled", mask_phone(caller))
        return _xml(_goodbye(settings, "vi", "common.error"))
    if silence == 1:
        turn.replies.insert(0, Reply(t(turn.language, "voice.silence")))
    if turn.hand_over:
        await voice_calls(request).handed_over(call_sid)
    return _xml(render(turn, settings, silence=silence))

