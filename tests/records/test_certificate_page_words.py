"""The certificate page speaks the person's language (the link carries it; else the browser's),
names the vaccination site, and labels the UVCI as the certificate identifier — not with the
words of the 12-character certificate code sent by SMS (issue 13)."""

from __future__ import annotations

from tests.console.conftest import AN, Console


def _path(link: str) -> str:
    return link[link.index("/c/") :]


def test_the_page_follows_the_language_chosen_and_names_the_site(console: Console) -> None:
    service = console.state.certificates
    person_id = console.people[AN]
    english = console.client.get(_path(service.make_link(person_id, "en")))
    assert english.status_code == 200
    text = english.text
    assert '<html lang="en"' in text or 'lang="en"' in text
    assert "Certificate identifier (UVCI)" in text and "URN:UVCI:01:VN:" in text
    assert "12-character certificate code sent by SMS" in text
    assert "Doses received" in text and "Các mũi đã tiêm" not in text
    doses = console.call(console.state.registry.list_doses, person_id)
    assert doses and all(d.site_name in text for d in doses)  # names, not only codes

    vietnamese = console.client.get(_path(service.make_link(person_id))).text
    assert "Số định danh chứng nhận (UVCI)" in vietnamese
    assert "<h2>Mã chứng nhận</h2>" not in vietnamese  # the SMS code's words are not the UVCI's

    browser = console.client.get(
        _path(service.make_link(person_id)), headers={"Accept-Language": "en-GB,en;q=0.8"}
    )
    assert "Certificate identifier (UVCI)" in browser.text
