"""Service settings (README.md, Configuration), read from the environment."""

from __future__ import annotations

import os
import re
import shlex
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from db import private_files
from db.secret_keys import SecretKeys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = "sqlite:///./var/vaxchannel.db"
    data_dir: Path = Path("./var")
    public_base_url: str = ""  # unset: http://HOST:PORT (http://127.0.0.1:8000 by default)
    secret_key: str | None = None

    registry_backend: Literal["embedded", "fhir"] = "embedded"
    registry_url: str | None = None
    registry_auth: str | None = None
    registry_timeout_seconds: float = 5.0
    fhir_identifier_system_cccd: str = "urn:vn:cccd"
    fhir_identifier_system_cmnd: str = "urn:vn:cmnd"
    # the vaccination site code on Location and/or Organization
    fhir_identifier_system_site: str = "http://vaxchannel.vn/fhir/sid/site-code"
    # REGISTRY_AUTH=smart:<client_id>: the client's private key (PEM; unset: DATA_DIR/registry_private_key.pem)
    registry_private_key_file: Path | None = None
    registry_scopes: str = (  # what a SMART client asks for (space-separated)
        "system/Patient.* system/Immunization.* system/Location.* system/Organization.read "
        "system/Task.* system/DocumentReference.* system/Binary.* system/Communication.* "
        "system/AuditEvent.write"
    )

    cert_signing_alg: Literal["ES256", "PS256"] = "ES256"
    cert_validity_days: int = 365
    cert_link_ttl_days: int = 7

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # A WhatsApp sender number (E.164). Set: the Twilio webhook also serves `From=whatsapp:+…` and
    # replies go out `From=whatsapp:<it>`. Unset: no WhatsApp through Twilio (sms_gateway/whatsapp.py).
    twilio_whatsapp_from: str | None = None

    telegram_bot_token: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    telegram_mode: Literal["webhook", "polling"] = "webhook"
    telegram_webhook_secret: str | None = None

    ussd_gateway_token: str | None = None  # unset: generated into DATA_DIR/gateway_token
    metrics_token: str | None = None  # set: /metrics and the API docs demand `Bearer <it>`
    hotline_number: str = "1900 9095"

    otp_ttl_seconds: int = 300
    otp_resend_seconds: int = Field(60, ge=1)  # a person's next one-time code comes this long after the last
    binding_ttl_days: int = 30
    sms_strip_diacritics: bool = True
    sla_working_days: int = 5
    redis_url: str | None = None
    redis_key_prefix: str = "vax"  # every Redis key of this deployment starts with it
    outbox_poll_seconds: float = 1.0
    escalation_interval_seconds: float = 300.0
    run_workers: bool = True
    access_log: bool = True  # one line per request (web/observability.py, AccessLog)

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _telegram_secret_chars(cls, value: str | None) -> str | None:
        if value and not _TELEGRAM_SECRET.fullmatch(value):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET: 1-256 characters A-Z a-z 0-9 _ - (Telegram's rule)")
        return value or None

    @model_validator(mode="after")
    def _default_public_base_url(self) -> Settings:
        if not self.public_base_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            self.public_base_url = f"http://{host}:{self.port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        return self

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @property
    def whatsapp_enabled(self) -> bool:
        """TWILIO_WHATSAPP_FROM set; or no Twilio at all (the quick start): then only the local
        simulator can post WhatsApp messages (gateway token) and the replies stay in the outbox."""
        return bool(self.twilio_whatsapp_from) or not self.twilio_auth_token

    @property
    def whatsapp_sending(self) -> bool:
        """WhatsApp messages go out through Twilio's REST API (else they stay in the local outbox)."""
        return bool(self.twilio_whatsapp_from and self.twilio_account_sid and self.twilio_auth_token)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def resolved_secret_key(self) -> str:
        """SECRET_KEY, or one generated once into DATA_DIR/secret_key (0600 from creation, safe
        when several workers start at once) and reused afterwards. Nothing signs with it directly:
        see `secret_keys`."""
        if self.secret_key:
            return self.secret_key
        private_files.ensure_private_dir(self.data_dir)
        return private_files.read_or_create_secret(self.data_dir / "secret_key")

    @cached_property
    def secret_keys(self) -> SecretKeys:
        """One key per purpose (links, console sessions, code hashes, outbox seal, upload links)."""
        return SecretKeys.derive(self.resolved_secret_key)

    @cached_property
    def resolved_gateway_token(self) -> str:
        """USSD_GATEWAY_TOKEN, or the one generated at first start into DATA_DIR/gateway_token.
        /ussd always demands it; /sms/twilio too when TWILIO_AUTH_TOKEN is unset."""
        return self.ussd_gateway_token or private_files.read_or_create_secret(
            self.data_dir / GATEWAY_TOKEN_FILE
        )

    @cached_property
    def resolved_telegram_webhook_secret(self) -> str:
        """TELEGRAM_WEBHOOK_SECRET, or one generated into DATA_DIR (handed to Telegram by setWebhook)."""
        return self.telegram_webhook_secret or private_files.read_or_create_secret(
            self.data_dir / TELEGRAM_SECRET_FILE
        )


GATEWAY_TOKEN_FILE = "gateway_token"
TELEGRAM_SECRET_FILE = "telegram_webhook_secret"
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def main_command(*args: str) -> str:
    """`<python> main.py <args>` exactly as it runs from the current directory with the interpreter
    running now (`.venv/bin/python main.py …` in the quick start): what banners and hints print."""

    def shown(path: str) -> str:
        relative = os.path.relpath(path)
        return relative if not relative.startswith("..") else path

    python = shown(os.path.abspath(sys.executable))  # not resolved: a venv's python is a symlink
    if os.sep not in python:
        python = "." + os.sep + python
    return " ".join(shlex.quote(part) for part in (python, shown(str(_MAIN)), *args))


_MAIN = Path(__file__).resolve().parent / "main.py"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
