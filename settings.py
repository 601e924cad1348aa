"""Service settings (INTERFACES §2), read from the environment."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    cert_signing_alg: Literal["ES256", "PS256"] = "ES256"
    cert_validity_days: int = 365
    cert_link_ttl_days: int = 7

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"

    telegram_bot_token: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    telegram_mode: Literal["webhook", "polling"] = "webhook"
    telegram_webhook_secret: str | None = None

    ussd_gateway_token: str | None = None
    hotline_number: str = "1900 9095"

    otp_ttl_seconds: int = 300
    binding_ttl_days: int = 30
    sms_strip_diacritics: bool = True
    sla_working_days: int = 5
    redis_url: str | None = None
    redis_key_prefix: str = "vax"  # every Redis key of this deployment starts with it
    outbox_poll_seconds: float = 1.0
    escalation_interval_seconds: float = 300.0
    run_workers: bool = True

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
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def resolved_secret_key(self) -> str:
        """SECRET_KEY, or one generated once into DATA_DIR and reused afterwards."""
        if self.secret_key:
            return self.secret_key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "secret_key"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
