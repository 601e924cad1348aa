"""Neutral values exchanged between channel adapters and the engine.

An adapter turns a webhook into an `Inbound`, asks the engine for a `Turn`, and renders the
Turn's `Reply` values its own way (TwiML, CON/END, Bot API calls). `Turn.outbound` holds
messages for *other* addresses (a one-time code to the registry's phone, a certificate link):
the engine's host writes them to the outbox in the same transaction as the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from outbox.store import OutboundMessage


class Channel(StrEnum):
    SMS = "sms"
    USSD = "ussd"
    TELEGRAM = "telegram"
    VOICE = "voice"  # a phone call: the menu read aloud, answers on the keypad
    WHATSAPP = "whatsapp"

    @property
    def keypad(self) -> bool:
        """Menu-driven by digits only (USSD, a voice call): no keywords, sessions end, `0` goes back."""
        return self in (Channel.USSD, Channel.VOICE)


@dataclass(frozen=True)
class InboundMedia:
    """A file the user sent (MMS media, Telegram photo), already stored under DATA_DIR."""

    storage_path: str
    content_type: str
    size: int
    filename: str


@dataclass(frozen=True)
class Inbound:
    channel: Channel
    address: str  # E.164 phone (SMS, USSD) or Telegram chat id
    text: str = ""  # USSD: only the newest input, the adapter splits the `*`-joined text
    session_key: str | None = None  # USSD sessionId; None elsewhere
    command: str | None = None  # a channel command mapped to a neutral name: start, help, status, ...
    argument: str | None = None  # e.g. the ref of "/check PA-…"
    choice: str | None = None  # the key of an Option the user pressed (Telegram buttons)
    shared_phone: str | None = None  # Telegram: the user's *own* number from a shared contact
    media: tuple[InboundMedia, ...] = ()
    rejected_media: str | None = None  # why a sent file was refused (type, size), for a clear reply
    user_name: str | None = None
    # Provider id of this delivery (Twilio MessageSid, Telegram update_id): a repeated one is answered
    # with the stored replies and not processed again.
    dedup_key: str | None = None
    # USSD: every input of the session as the gateway sent it (`text` split on `*`); the engine
    # processes only the ones it has not seen in this session (gateways replay the whole chain).
    inputs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Option:
    key: str  # what the user sends to pick it ("1", "2", "0", "98")
    label: str


@dataclass(frozen=True)
class Certificate:
    """A certificate to show: Telegram sends the PNG; SMS/USSD get `link` instead."""

    png: bytes
    hc1: str
    link: str
    caption: str


@dataclass(frozen=True)
class Reply:
    text: str
    options: tuple[Option, ...] = ()
    certificate: Certificate | None = None
    ask_contact: bool = False  # offer a "share my phone number" button where the channel has one
    record_for: str | None = None  # a voice call may record a spoken description for this report ref


@dataclass
class Turn:
    replies: list[Reply] = field(default_factory=list)
    end: bool = False  # the conversation is over (USSD answers END)
    hand_over: bool = False  # the caller asked for a person: a voice call is put through to the hotline
    outbound: list[OutboundMessage] = field(default_factory=list)
    language: str = "vi"
