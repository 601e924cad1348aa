"""Certificate links (/c/{token}), the QR image, the /verify page; tokens tampered, expired, foreign."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import zxingcpp
from PIL import Image
from sqlalchemy import create_engine, text

from certificates.links import LinkSigner
from tests.certificates.conftest import AN, BASE_URL, BINH, CUONG, CertApp


def audit_rows(cert_app: CertApp) -> list[tuple[str, str, str]]:
    engine = create_engine(cert_app.client.app.state.settings.database_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT action, person_id, detail FROM audit_log ORDER BY id"))
            return [(r[0], r[1], r[2] or "") for r in rows]
    finally:
        engine.dispose()


def test_link_page_in_vietnamese_then_english(cert_app: CertApp) -> None:
    people = cert_app.seed((AN, BINH))
    an = people[AN.national_id]
    link = cert_app.service.make_link(an.id)
    assert link.startswith(f"{BASE_URL}/c/") and AN.national_id not in link
    path = cert_app.path(link)

    page = cert_app.client.get(path)
    assert page.status_code == 200
    html = page.text
    assert '<html lang="vi">' in html
    assert "Chứng nhận tiêm chủng COVID-19" in html
    assert "Nguyễn Văn An" in html and "14/03/1985" in html
    assert "Trần Thị Bình" not in html  # one link, one person
    for row in ("02/08/2021", "25/10/2021", "10/03/2022", "Vaxzevria", "Comirnaty", "AZ-NV4211", "3/3"):
        assert row in html, row
    assert f'src="{path}/qr.png"' in html
    assert f'href="{path}/qr.png?download=1"' in html and "Tải ảnh mã QR" in html
    assert "@media print" in html and "window.print()" in html
    assert page.headers["cache-control"] == "no-store"

    english = cert_app.client.get(path, params={"lang": "en"}).text
    assert '<html lang="en">' in english
    assert "COVID-19 vaccination certificate" in english and "Date of birth" in english
    assert "1985-03-14" in english and "Download the QR image" in english
    assert f'href="{path}?lang=vi"' in english  # the switch back

    qr = cert_app.client.get(f"{path}/qr.png")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/png"
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.content)))
    current = cert_app.call(cert_app.service.current_for_person, an.id)
    assert barcode.text == current.hc1 and current.uvci in html
    download = cert_app.client.get(f"{path}/qr.png", params={"download": "1"})
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.content == qr.content

    views = [r for r in audit_rows(cert_app) if r[0] == "certificate.view"]
    assert len(views) == 4 and {r[1] for r in views} == {an.id}
    assert any("qr.png" in r[2] for r in views) and any(current.uvci in r[2] for r in views)


def test_tampered_and_foreign_tokens_get_a_human_404(cert_app: CertApp) -> None:
    people = cert_app.seed((AN, BINH))
    token = cert_app.path(cert_app.service.make_link(people[AN.national_id].id))[len("/c/") :]
    body, mac = token.split(".")
    other = people[BINH.national_id].id
    swapped_body = cert_app.service.links.token(other).split(".")[0]
    foreign = LinkSigner(b"another-secret", timedelta(days=7)).token(people[AN.national_id].id)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = alphabet[alphabet.index(mac[-1]) ^ 1]  # differs only in base64 padding bits
    for bad in (
        f"{body}.{mac[:-1]}{same_bits}",  # another spelling of the same MAC
        f"{body}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}",  # signature changed
        f"{swapped_body}.{mac}",  # someone else's person id under this signature
        foreign,
        "abc",
        "x" * 500,
        f"{body}..{mac}",
    ):
        for suffix in ("", "/qr.png"):
            response = cert_app.client.get(f"/c/{bad}{suffix}")
            assert response.status_code == 404, bad
            assert "text/html" in response.headers["content-type"]
            assert "Liên kết không hợp lệ" in response.text
            assert "Nguyễn Văn An" not in response.text and "Traceback" not in response.text
    english = cert_app.client.get("/c/abc", params={"lang": "en"})
    assert english.status_code == 404 and "This link is not valid" in english.text


def test_expired_links_get_a_human_410(cert_app: CertApp) -> None:
    person = cert_app.seed((AN,))[AN.national_id]
    expired = cert_app.service.links.token(person.id, ttl=timedelta(seconds=-1))
    for suffix in ("", "/qr.png"):
        response = cert_app.client.get(f"/c/{expired}{suffix}")
        assert response.status_code == 410
        assert "Liên kết đã hết hạn" in response.text and "Nguyễn Văn An" not in response.text
    assert "This link has expired" in cert_app.client.get(f"/c/{expired}?lang=en").text
    fresh = cert_app.service.links.token(person.id)
    assert cert_app.client.get(f"/c/{fresh}").status_code == 200


def test_link_lifetime_is_the_configured_ttl(cert_app: CertApp) -> None:
    person = cert_app.seed((AN,))[AN.national_id]
    token = cert_app.path(cert_app.service.make_link(person.id))[len("/c/") :]
    grant = cert_app.service.read_link(token)
    assert grant.person_id == person.id
    assert (
        timedelta(days=6, hours=23) < grant.expires_at - cert_app.service.links._clock() <= timedelta(days=7)
    )


def test_a_link_to_a_person_who_is_not_there(cert_app: CertApp) -> None:
    cert_app.seed((AN,))
    for ghost in ("987654", "not-a-number"):
        token = cert_app.service.links.token(ghost)
        response = cert_app.client.get(f"/c/{token}")
        assert response.status_code == 404 and "Liên kết không hợp lệ" in response.text


def test_a_person_without_doses_sees_why(cert_app: CertApp) -> None:
    person = cert_app.seed((CUONG,))[CUONG.national_id]
    path = cert_app.path(cert_app.service.make_link(person.id))
    page = cert_app.client.get(path)
    assert page.status_code == 200
    assert "Lê Văn Cường" in page.text and "Chưa có mũi tiêm nào được ghi nhận" in page.text
    assert "qr.png" not in page.text
    assert cert_app.client.get(f"{path}/qr.png").status_code == 404


def test_verify_page_paste_and_photo(cert_app: CertApp) -> None:
    person = cert_app.seed((BINH,))[BINH.national_id]
    issued = cert_app.call(cert_app.service.issue, person, cert_app.doses(person))

    page = cert_app.client.get("/verify")
    assert page.status_code == 200
    assert 'name="hc1"' in page.text and 'type="file" name="photo"' in page.text
    assert 'enctype="multipart/form-data"' in page.text
    assert 'href="#code"' in page.text  # the code tab: certificates/verify_code_tab.html
    assert "Check a vaccination certificate" in cert_app.client.get("/verify?lang=en").text

    pasted = cert_app.client.post("/verify", data={"hc1": issued.hc1, "lang": "vi"})
    assert pasted.status_code == 200
    assert "HỢP LỆ" in pasted.text and "Trần Thị Bình" in pasted.text and "21/07/1990" in pasted.text
    assert "BBIBP-CorV" in pasted.text and issued.uvci in pasted.text

    garbage = cert_app.client.post("/verify", data={"hc1": "HC1:abc!!", "lang": "en"})
    assert "NOT VALID" in garbage.text and "Damaged code (base45 encoding)." in garbage.text

    # a phone photo: the QR small, tilted, on a grey background, saved as JPEG
    qr = Image.open(io.BytesIO(issued.png)).convert("L").resize((400, 400))
    photo = Image.new("L", (1200, 900), 200)
    photo.paste(qr.rotate(8, expand=True, fillcolor=200), (350, 200))
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG", quality=85)
    uploaded = cert_app.client.post(
        "/verify?lang=en", files={"photo": ("photo.jpg", jpeg.getvalue(), "image/jpeg")}
    )
    assert uploaded.status_code == 200
    assert "VALID" in uploaded.text and "NOT VALID" not in uploaded.text and "Trần Thị Bình" in uploaded.text

    blank = io.BytesIO()
    Image.new("L", (300, 300), 255).save(blank, "PNG")
    no_qr = cert_app.client.post("/verify", files={"photo": ("blank.png", blank.getvalue(), "image/png")})
    assert "Không tìm thấy mã QR trong ảnh" in no_qr.text
    not_image = cert_app.client.post("/verify", files={"photo": ("x.png", b"%PDF-1.4 nope", "image/png")})
    assert not_image.status_code == 400 and "không phải là ảnh" in not_image.text
    nothing = cert_app.client.post("/verify", data={"hc1": "  "})
    assert "Hãy dán chuỗi HC1" in nothing.text


def test_registry_outage(cert_app: CertApp) -> None:
    people = cert_app.seed((AN, BINH))
    seen, unseen = (cert_app.path(cert_app.service.make_link(people[p.national_id].id)) for p in (AN, BINH))
    assert cert_app.client.get(seen).status_code == 200  # now in the registry client's read cache

    breaker = cert_app.registry.breaker
    breaker.failures, breaker.opened_at = breaker.threshold, time.monotonic()  # the registry is down
    down = cert_app.client.get(unseen)
    assert down.status_code == 503 and "Tạm thời chưa lấy được dữ liệu" in down.text
    stale = cert_app.client.get(seen)  # served from the short stale cache, same certificate
    assert stale.status_code == 200 and "Nguyễn Văn An" in stale.text
