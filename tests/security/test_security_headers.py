"""Public pages (/c/…, /verify, /upload/…) and the APIs carry CSP, frame, nosniff and referrer headers.

The attack: the pages sent none of them, so a certificate page could be framed (click-jacking
the print/download buttons), a sniffed upload could run as HTML, and the link token in the URL
leaked to any site linked from the page through the Referer header. Each page is fetched
through the real routes of the app; the console keeps its own stricter policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conversations.upload_links import make_upload_link
from tests.certificates.conftest import AN, BASE_URL, CertApp, make_settings, start_app
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
