"""A site name close to several sites: the caller picks one of the best matches, or keeps the name
as typed; the report is routed to the picked site."""

from __future__ import annotations

from conversations.model import Channel
from registry_client.models import CorrectionQuery, Site
from tests.conversations.harness import PINNED_CODE, Phone, Stack

CUONG = ("048095006789", "30111995", "+84987654321")


async def _to_site_step(phone: Phone) -> None:
    await phone.send(f"DK {CUONG[0]} {CUONG[1]}")
    await phone.send(PINNED_CODE)
    await phone.send("PA")
    await phone.send("1")  # missing dose
    await phone.send("1")  # dose 1
    assert "Noi tiem" in await phone.send("15082021")


async def _finish(phone: Phone) -> str:
    await phone.send("4")  # Vero Cell
    await phone.send("9")  # no workplace
    await phone.send("1")  # this phone
    return await phone.send("1")  # send


async def test_a_name_close_to_two_sites_offers_both_and_routes_to_the_one_picked(stack: Stack) -> None:
    await stack.registry.upsert_site(Site("HCM08", "Trạm Y tế Phường Tân Phú, Quận 7", "TP Hồ Chí Minh"))
    phone = Phone(stack, Channel.SMS, CUONG[2])
    await _to_site_step(phone)
    offer = await phone.send("tram y te tan quan 7")
    assert offer.splitlines()[0] == "Co phai noi tiem la:"
    assert "Tram Y te Phuong Tan Phong, Quan 7" in offer and "Tram Y te Phuong Tan Phu, Quan 7" in offer
    assert "9 Khong phai cac noi tren" in offer
    assert "Lua chon khong hop le" in await phone.send("7")  # not an offered number: asked again
    picked = next(line[0] for line in offer.splitlines() if line.endswith("Tan Phu, Quan 7"))
    assert "Loai vac xin" in await phone.send(picked)
    sent = await _finish(phone)
    assert "Tram Y te Phuong Tan Phu, Quan 7" in sent
    cases = await stack.registry.list_corrections(CorrectionQuery(site_code="HCM08"))
    assert len(cases) == 1


async def test_none_of_these_keeps_the_name_as_typed(stack: Stack) -> None:
    await stack.registry.upsert_site(Site("HCM08", "Trạm Y tế Phường Tân Phú, Quận 7", "TP Hồ Chí Minh"))
    phone = Phone(stack, Channel.SMS, CUONG[2])
    await _to_site_step(phone)
    await phone.send("tram y te tan quan 7")
    assert "Loai vac xin" in await phone.send("9")
    sent = await _finish(phone)
    assert "tong dai" in sent.lower()  # no dose on record and no site named without doubt: hotline queue
