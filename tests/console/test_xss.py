"""Output is escaped everywhere: a name like `<script>` renders as text, as do report texts,
site names and notes."""

from __future__ import annotations

from datetime import date

from registry_client.models import CaseKind, ClaimedDose, NewCorrection, NewPerson, Sex, Site
from tests.console.conftest import Console

NAME = '<script>alert("name")</script>'
TEXT = "<img src=x onerror=alert(1)>\"'&"
SITE_NAME = "<b onmouseover=alert(2)>Trạm</b>"


def test_hostile_names_and_texts_render_as_text(console: Console) -> None:
    registry = console.state.registry
    console.call(registry.upsert_site, Site("XS001", SITE_NAME, "<i>x</i>"))
    person = console.call(
        registry.create_person,
        NewPerson("001099000001", date(1999, 1, 1), NAME, Sex.MALE, "+84988000001"),
        "test",
    )
    case = console.call(
        registry.submit_correction,
        NewCorrection(
            kind=CaseKind.OTHER,
            doses_concerned=None,
            claimed=ClaimedDose(None, TEXT, "XS001", TEXT[:40]),
            channel="sms",
            channel_address="+84988000001",
            person_id=person.id,
            contact_phone="+84988000001",
            workplace=TEXT,
            description=TEXT,
        ),
    )
    assert case.site_code == "XS001"
    console.as_user("lan")
    pages = [
        console.client.get("/agent/search", params={"phone": "0988000001"}).text,
        console.client.get(f"/agent/persons/{console.handle(person.id)}").text,
    ]
    console.as_user("quan")
    console.post(
        f"/agent/cases/{case.ref}/reassign", {"target": "XS001", "note": TEXT}
    )  # same queue: refused, harmless
    pages += [
        console.client.get("/agent/queue", params={"site": "XS001"}).text,
        console.client.get(f"/agent/cases/{case.ref}").text,
        console.client.get("/agent/admin/sites").text,
        console.client.get("/agent/admin").text,
        console.client.get("/agent/queue", params={"q": TEXT}).text,
    ]
    console.post(f"/agent/cases/{case.ref}/reject", {"reason": TEXT})
    pages.append(console.client.get(f"/agent/cases/{case.ref}").text)
    for html in pages:
        for raw in (NAME, "<img src=x", SITE_NAME, "<i>x</i>"):
            assert raw not in html
    joined = "\n".join(pages)
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in joined
    assert "&lt;img src=x onerror=alert(1)&gt;" in joined
    assert "&lt;b onmouseover=alert(2)&gt;Trạm&lt;/b&gt;" in joined


def test_flash_parameters_are_escaped_too(console: Console) -> None:
    console.as_user("quan")
    response = console.post("/agent/admin/sites", {"code": "XS002", "name": NAME})
    page = console.client.get(response.headers["location"]).text
    assert NAME not in page and "&lt;script&gt;" in page
