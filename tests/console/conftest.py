"""Console test harness: the real app (create_app) on a fresh migrated SQLite file with the demo
identities, console users of every role, and helpers to log in and post forms with CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import create_app
from registry_client.embedded.demo import DEMO_PEOPLE, load_demo
from settings import Settings

PASSWORD = "correct horse 42"
USERS = (
    ("lan", "agent", None),
    ("minh", "site", "HCM07"),
    ("hoa", "site", "HN001"),
    ("quan", "admin", None),
)
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


@dataclass
class Console:
    app: Any
    client: TestClient
    people: dict[str, str] = field(default_factory=dict)  # national_id -> person id

    @property
    def state(self) -> Any:
        return self.app.state

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a coroutine function on the app's event loop."""
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def login(self, username: str, password: str = PASSWORD) -> Any:
        page = self.client.get("/agent/login")
        return self.client.post(
            "/agent/login",
            data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )

    def as_user(self, username: str) -> Console:
        self.client.cookies.clear()
        response = self.login(username)
        assert response.status_code == 303, response.text
        return self

    def handle(self, person_id: str) -> str:
        """The opaque handle of a person in console URLs (`/agent/persons/{handle}`)."""
        from web.console.person_handles import handles_of

        return handles_of(self.state).handle(person_id)

    def token(self) -> str:
        """The session's CSRF token (from any console page)."""
        return csrf_of(self.client.get("/agent/notifications").text)

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        body = {"csrf_token": self.token(), **(data or {})}
        return self.client.post(url, data=body, follow_redirects=False, **kw)

    def bearer(self, username: str) -> dict[str, str]:
        response = self.client.post("/api/agent/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(autouse=True, scope="session")
def cheap_argon2() -> Iterator[None]:
    """Argon2id with small parameters: the same code path, a fraction of the CPU (the CI machine is
    small and shared). The browser tests' server process keeps the production parameters."""
    from argon2 import PasswordHasher

    from web.console.passwords import use_hasher

    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


def make_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "data_dir": data_dir,
        "secret_key": "console-tests-secret-key",
        "run_workers": False,
        "public_base_url": "http://testserver",
        "twilio_account_sid": None,
        "twilio_auth_token": None,
        "twilio_from": None,
        "telegram_bot_token": None,
    }
    values.update(overrides)
    return Settings(**values)


def start_console(url: str, data_dir: Path) -> Iterator[Console]:
    app = create_app(make_settings(url, data_dir))
    with TestClient(app, base_url="http://testserver") as client:
        console = Console(app, client)
        console.call(load_demo, app.state.registry.inner, 0)
        for person in DEMO_PEOPLE:
            found = console.call(app.state.registry.find_person, person.national_id, person.date_of_birth)
            console.people[person.national_id] = found.id
        for name, role, site in USERS:
            console.call(app.state.console.users.create, name, role, site, PASSWORD, "tests")
        yield console


@pytest.fixture
def console(sqlite_url: str, tmp_path: Path) -> Iterator[Console]:
    yield from start_console(sqlite_url, tmp_path / "data")


@pytest.fixture(scope="module")
def module_console(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One app for a whole module (tests that only read, or that undo nothing important)."""
    import shutil

    root = tmp_path_factory.mktemp("console")
    shutil.copy(sqlite_template, root / "vaxchannel.db")
    yield from start_console(f"sqlite:///{root / 'vaxchannel.db'}", root / "data")


# -- report fixtures ---------------------------------------------------------------------------
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)
BINH, CUONG, AN, DUNG = "079190004321", "048095006789", "001085012345", "001182003333"


def demo_case_ref(console: Console) -> str:
    """The demo data set's report: Trần Thị Bình's missing dose 2, routed to HCM07, filed by SMS."""
    from registry_client.models import CorrectionQuery

    cases = console.call(console.state.registry.list_corrections, CorrectionQuery(site_code="HCM07"))
    return next(c.ref for c in cases if c.person_id == console.people[BINH])


def file_case(
    console: Console,
    national_id: str,
    *,
    site: str | None = None,
    channel: str = "sms",
    photo: bool = False,
    **kw: Any,
) -> Any:
    """Files a report through the registry as a channel would (optionally with a stored photo)."""
    from datetime import date

    from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewAttachment, NewCorrection

    attachments: tuple[NewAttachment, ...] = ()
    if photo:
        folder = Path(console.state.settings.data_dir) / "uploads" / "tests"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"card-{national_id}.png"
        path.write_bytes(PNG)
        attachments = (NewAttachment("card.png", "image/png", len(PNG), str(path)),)
    person_id = console.people[national_id]
    person = console.call(console.state.registry.get_person, person_id)
    values: dict[str, Any] = {
        "kind": CaseKind.MISSING_DOSE,
        "doses_concerned": DosesConcerned.BOOSTER,
        "claimed": ClaimedDose(date(2022, 5, 10), "Pfizer", site, "FK0001"),
        "channel": channel,
        "channel_address": person.registered_phone if channel != "telegram" else "555001",
        "person_id": person_id,
        "contact_phone": person.registered_phone,
        "description": "booster not on record",
        "attachments": attachments,
    }
    values.update(kw)
    if channel == "telegram":  # a Telegram report comes from a chat bound by a code to the registered phone
        bindings = console.state.conversations.bindings
        chat, phone = values["channel_address"], person.registered_phone
        console.call(bindings.bind, "telegram", chat, person_id, via_phone=phone)
    return console.call(console.state.registry.submit_correction, NewCorrection(**values))
