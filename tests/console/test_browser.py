"""Browser tests in headless Chromium (Debian's `chromium`, driven by Playwright's Python API).

The real service runs as `python main.py serve` in a subprocess, sending SMS through Twilio's REST
API to the local stand-in. An agent logs in, finds a demo person and sends the certificate link
(the SMS arrives at the stand-in); a site user approves a report with a photo and the citizen's
SMS arrives. Screenshots of the main pages go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from db.base import make_async_engine, make_sessionmaker
from db.migrate import migrate
from registry_client.clock import utc_now
from registry_client.embedded.demo import load_demo
from registry_client.embedded.registry import EmbeddedRegistry
from registry_client.models import CaseKind, ClaimedDose, DosesConcerned, NewAttachment, NewCorrection
from tests.console.conftest import PASSWORD, PNG
from tests.fakes.twilio_api import TwilioStandIn
from web.console.users import UserStore

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    base: str
    twilio: TwilioStandIn
    photo_ref: str


async def prepare(url: str, data_dir: Path) -> str:
    """The demo data set (with a few ordinary citizens), plus reports for the HCM07 queue: one with
    a photo of the vaccination card, one overdue."""
    engine = make_async_engine(url)
    try:
        registry = EmbeddedRegistry(engine)
        await load_demo(registry, 12)
        photo = data_dir / "uploads" / "browser" / "card.png"
        photo.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(PNG)
        from registry_client.models import CorrectionQuery

        [demo] = await registry.list_corrections(CorrectionQuery(site_code="HCM07"))
        await registry.add_attachment(
            demo.ref, NewAttachment("the card.png", "image/png", len(PNG), str(photo)), "citizen"
        )
        cuong = await registry.find_person("048095006789", date(1995, 11, 30))
        registry._clock = lambda: utc_now() - timedelta(days=12)  # an overdue report
        await registry.submit_correction(
            NewCorrection(
                kind=CaseKind.MISSING_DOSE,
                doses_concerned=DosesConcerned.FIRST,
                claimed=ClaimedDose(date(2021, 9, 20), "Vero Cell", "HCM07", None),
                channel="ussd",
                channel_address=cuong.registered_phone or "",
                person_id=cuong.id,
                contact_phone=cuong.registered_phone,
                description="Tiêm ở trạm phường Tân Phong, chưa có trên hệ thống",
            )
        )
        return demo.ref
    finally:
        await engine.dispose()


async def add_users(url: str, users: list[tuple[str, str]]) -> None:
    engine = make_async_engine(url)
    try:
        store = UserStore(make_sessionmaker(engine))
        for name, role in users:
            await store.create(name, role, None, PASSWORD, "tests")
    finally:
        await engine.dispose()


def cli(env: dict[str, str], *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env=env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{root / 'vax.db'}"
    migrate(url)
    photo_ref = asyncio.run(prepare(url, root / "data"))
    port = free_port()
    with TwilioStandIn() as twilio:
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATABASE_URL": url,
            "DATA_DIR": str(root / "data"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": "browser-test-secret",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "OUTBOX_POLL_SECONDS": "0.2",
        }
        env.pop("TELEGRAM_BOT_TOKEN", None)
        # one user through the real command line (README.md, Commands), the others directly
        done = cli(env, "create-user", "minh", "--role", "site", "--site", "hcm07", "--password-stdin")
        assert done.returncode == 0, done.stderr
        assert "Created console user minh (role site at site HCM07)" in done.stdout
        asyncio.run(add_users(url, [("lan", "agent"), ("quan", "admin")]))
        log = open(root / "serve.log", "w")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [sys.executable, "main.py", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "the service did not start:\n" + (root / "serve.log").read_text()[-3000:]
                    )
                time.sleep(0.2)
            yield Service(f"http://127.0.0.1:{port}", twilio, photo_ref)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def log_in(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/agent/login")
    page.get_by_label("Tên đăng nhập", exact=True).fill(username)
    page.get_by_label("Mật khẩu", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()


def test_agent_finds_a_person_and_sends_the_link(service: Service, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = context.new_page()
    page.goto(f"{service.base}/agent/login")
    shot(page, "console-login.png")
    log_in(page, service.base, "lan")
    assert page.url.endswith("/agent/search")
    page.get_by_label("Số điện thoại", exact=True).fill("0938 111 222")  # the family phone: three persons
    page.locator("form:has(#phone) button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator("table tbody tr").count() == 3
    shot(page, "console-agent-search-family-phone.png")
    page.goto(f"{service.base}/agent/search")
    page.get_by_label("Số CCCD/CMND", exact=True).fill("001085012345")
    page.get_by_label("Ngày sinh", exact=True).fill("14/03/1985")
    page.locator("form:has(#national_id) button[type=submit]").click()
    page.wait_for_load_state()
    assert "/agent/persons/" in page.url
    assert page.get_by_role("heading", name="Nguyễn Văn An").is_visible()
    page.get_by_role("button", name="Gửi SMS tới 09******67").click()
    page.wait_for_load_state()
    assert "Đã gửi đường dẫn chứng nhận tới 09******67" in page.locator(".flash").inner_text()
    sms = service.twilio.wait_for(to="+84901234567", contains="/c/", timeout=15)
    assert f"{service.base}/c/" in sms.body and "Nguyen Van An" in sms.body
    shot(page, "console-agent-person.png")
    # the link in the SMS opens the certificate
    link = sms.body.split(f"{service.base}", 1)[1].split()[0]
    certificate = context.new_page()
    certificate.goto(service.base + link)
    assert "Nguy" in certificate.content()
    # on a phone
    mobile = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone_page = mobile.new_page()
    log_in(phone_page, service.base, "lan")
    phone_page.goto(page.url)
    assert phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(phone_page, "console-mobile-person.png")
    mobile.close()
    context.close()


def test_site_user_approves_a_report_with_a_photo(service: Service, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = context.new_page()
    log_in(page, service.base, "minh")
    assert page.url.endswith("/agent/queue")
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 2
    assert "Quá hạn" in rows.nth(0).inner_text()  # oldest due first
    shot(page, "console-site-queue.png")
    page.get_by_role("link", name=service.photo_ref).click()
    page.wait_for_load_state()
    photo = page.locator("ul.thumbs img")
    photo.wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('ul.thumbs img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=10_000,
    )  # the photo is served to this user and decodes
    shot(page, "console-site-case.png")
    assert page.get_by_label("Ngày tiêm", exact=True).input_value() == "2021-10-08"
    page.get_by_label("Mũi số", exact=True).fill("2")
    page.get_by_label("Số lô", exact=True).fill("202110B")
    page.get_by_label("Ghi chú", exact=True).first.fill("Đã đối chiếu sổ tiêm của trạm")
    page.get_by_role("button", name="Duyệt", exact=True).click()
    page.wait_for_load_state()
    assert "người dân đã được báo" in page.locator(".flash").inner_text()
    sms = service.twilio.wait_for(to="+84912345678", contains=service.photo_ref, timeout=15)
    assert f"{service.base}/c/" in sms.body
    shot(page, "console-site-case-approved.png")
    mobile = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone_page = mobile.new_page()
    log_in(phone_page, service.base, "minh")
    assert phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(phone_page, "console-mobile-queue.png")
    mobile.close()
    context.close()


def test_admin_pages_and_the_english_switch(service: Service, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = context.new_page()
    log_in(page, service.base, "quan")
    assert page.url.endswith("/agent/admin")
    assert page.get_by_role("heading", name="Tổng quan").is_visible()
    shot(page, "console-admin-dashboard.png")
    page.goto(f"{service.base}/agent/admin/users")
    shot(page, "console-admin-users.png")
    page.goto(f"{service.base}/agent/admin/outbox")
    shot(page, "console-admin-outbox.png")
    page.goto(f"{service.base}/agent/queue")
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="All reports").is_visible()
    shot(page, "console-en-queue.png")
    # every form field has an accessible label
    for path in ("/agent/queue", "/agent/admin/users", "/agent/admin/sites", "/agent/search"):
        page.goto(service.base + path)
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                .map(el => el.name || el.id)"""
        )
        assert unlabeled == [], (path, unlabeled)
    context.close()
