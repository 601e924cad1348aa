"""Public pages (/c/…, /verify, /upload/…) and the APIs carry CSP, frame, nosniff and referrer headers.

The attack: the pages sent none of them, so a certificate page could be framed (click-jacking
the print/download buttons), a sniffed upload could run as HTML, and the link token in the URL
leaked to any site linked from the page through the Referer header. Each page is fetched
through the real routes of the app; the console keeps its own stricter policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conversations.upload_links import make_upload_link
from tests.certificates.conftest import AN, BASE_URL, CertApp, make_settings, start_app
from tests.fakes.twilio_api import TwilioStandIn
from tests.security.running_service import ROOT, running_service
from web.security_headers import CONTENT_SECURITY_POLICY


@pytest.fixture
def cert_app(sqlite_url: str, tmp_path: Path) -> Iterator[CertApp]:
    yield from start_app(make_settings(sqlite_url, tmp_path / "data"))


def assert_protected(response: object, *, csp: str | None = CONTENT_SECURITY_POLICY) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    policy = headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert "img-src 'self' data:" in policy
    if csp is not None:
        assert policy == csp


def test_public_pages_carry_the_headers(cert_app: CertApp) -> None:
    client: TestClient = cert_app.client
    an = cert_app.seed((AN,))[AN.national_id]
    link = cert_app.path(cert_app.service.make_link(an.id))
    for path in (link, f"{link}/qr.png", "/verify", "/verify?lang=en", "/c/forged-token", "/upload/forged"):
        response = client.get(path)
        assert response.status_code in (200, 404), path
        assert_protected(response)
        assert response.headers["referrer-policy"] == "no-referrer"  # the link token stays here
    posted = client.post("/verify", data={"hc1": "HC1:garbage"})
    assert posted.status_code == 200 and "script-src 'self'" in posted.headers["content-security-policy"]
    api = client.post("/api/verify", json={"hc1": "garbage"})
    assert api.status_code == 200
    assert_protected(api)
    settings = client.app.state.settings  # type: ignore[attr-defined]
    upload = client.get(
        make_upload_link(BASE_URL, settings.resolved_secret_key, "PA-0000-00").removeprefix(BASE_URL)
    )
    assert_protected(upload)


def test_no_inline_script_runs_but_the_print_button(cert_app: CertApp) -> None:
    policy = cert_app.client.get("/verify").headers["content-security-policy"]
    script = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert "object-src 'none'" in policy


def test_the_console_keeps_its_own_stricter_policy(cert_app: CertApp) -> None:
    login = cert_app.client.get("/agent/login")
    assert login.status_code == 200
    assert_protected(login, csp=None)
    assert "'unsafe-inline'" not in login.headers["content-security-policy"]
    assert login.headers["content-security-policy"].count("default-src") == 1  # one policy, not two


def test_webhooks_get_the_headers_without_a_second_copy(cert_app: CertApp) -> None:
    response = cert_app.client.get("/healthz")
    assert response.headers.get_list("x-frame-options") == ["DENY"]


# -- in a real browser: the policy blocks framing and stray scripts, and breaks nothing ----------
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
window.print = () => { window.__printed = true; };
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The real service (demo data, SMS through the Twilio stand-in) and a certificate link taken
    the honest way: an agent's API call sends it to the registered phone."""
    root = tmp_path_factory.mktemp("headers")
    with TwilioStandIn() as twilio:
        env = {
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": twilio.from_number,
            "TWILIO_API_BASE": twilio.base_url,
            "OUTBOX_POLL_SECONDS": "0.2",
        }
        with running_service(root, **env) as service:
            made = subprocess.run(
                [sys.executable, "main.py", "create-user", "lan", "--role", "agent", "--password-stdin"],
                cwd=ROOT,
                env=service.env,
                input="correct horse 42\n",
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert made.returncode == 0, made.stderr
            with httpx.Client(base_url=service.base, timeout=30) as client:
                token = client.post(
                    "/api/agent/token", json={"username": "lan", "password": "correct horse 42"}
                )
                headers = {"Authorization": f"Bearer {token.json()['token']}"}
                sent = client.post(
                    "/api/agent/send-link",
                    json={"national_id": AN.national_id, "date_of_birth": "1985-03-14", "channel": "sms"},
                    headers=headers,
                )
                assert sent.status_code == 202, sent.text
            sms = twilio.wait_for(contains="/c/", timeout=20)
            link = service.base + sms.body.split(service.base, 1)[1].split()[0]
            yield service.base, link


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()


@pytest.mark.browser
def test_pages_render_under_the_policy_and_cannot_be_framed(live: tuple[str, str], chromium: Any) -> None:
    base, link = live
    page = chromium.new_page()
    page.add_init_script(WATCH_VIOLATIONS)
    page.goto(link)
    assert "Nguy" in page.content()
    # the inline styles apply, the print button's handler runs, nothing was blocked
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(246, 247, 249)"
    page.locator("button[type=button]").first.click()
    assert page.evaluate("window.__printed === true")
    assert page.evaluate("window.__violations") == []
    page.goto(f"{base}/verify")
    assert page.evaluate("window.__violations") == []
    # an injected inline script would not run
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__injected = true'; document.body.appendChild(s); }""")
    assert page.evaluate("window.__injected === undefined")
    # another site framing the certificate page (click-jacking) gets nothing
    page.set_content(f'<iframe src="{link}" width="600" height="400"></iframe>')
    page.wait_for_timeout(1500)
    framed = [f for f in page.frames if f != page.main_frame]
    assert framed and all("Nguy" not in frame.content() for frame in framed)
    page.close()
