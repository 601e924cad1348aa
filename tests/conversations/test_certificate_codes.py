"""Certificate codes through the engine and its SMS/USSD renderers (issue 9): `MA` by SMS, the
code offered after USSD menu 2, the code in the Telegram caption; `KT`/`VERIFY` from any phone
and USSD menu 6 — valid, wrong year (nothing revealed), mistyped ("check the code"), revoked
after a correction, guessing limits; USSD screens within 182 characters, SMS within 2 segments.
The real CertificateService over the test database; one-time codes pinned."""

from __future__ import annotations

import re
from datetime import date

from certificates.codes import format_code, generate_code
from conversations.model import Channel, Inbound
from conversations.text import sms_segments
from registry_client.models import DoseSource, NewDose
from tests.conversations.harness import PINNED_CODE, Phone, Stack

AN_PHONE, BINH_PHONE, CHECKPOINT = "+84901234567", "+84912345678", "+84987654321"
CODE = re.compile(r"\b[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}\b")
AN_VALID = "HOP LE: Nguyen V. An, sinh 1985, 3 mui, mui gan nhat 10/03/2022."
NOT_FOUND = "KHONG TIM THAY: khong co chung nhan nao khop ma va nam sinh nay."
CHECK_CODE = "SAI MA: ma co ky tu sai hoac thieu. Hay kiem tra lai ma."


async def an_code(stack: Stack) -> str:
    """Nguyễn Văn An (logged in by SMS once) sends MA; returns the code from the SMS he receives."""
    an = Phone(stack, Channel.SMS, AN_PHONE)
    if not await stack.service.services.bindings.persons_for("sms", AN_PHONE):
        await an.send("DK 001085012345 14031985")
        await an.send(PINNED_CODE)
    assert await an.send("MA") == "Ma chung nhan da gui qua SMS toi 09******67."
    sms = (await stack.sent_sms(AN_PHONE))[-1]
    [code] = set(CODE.findall(sms))
    return code


def typo_of(code: str) -> str:
    return code[:6] + ("2" if code[6] != "2" else "3") + code[7:]


async def test_ma_by_sms_then_kt_from_any_phone(stack: Stack) -> None:
    code = await an_code(stack)
    sms = (await stack.sent_sms(AN_PHONE))[-1]
    assert sms == (
        f"VaxChannel: ma chung nhan tiem chung cua Nguyen Van An: {code}. Tai diem kiem tra, dua ma nay "
        f"kem nam sinh; noi kiem tra nhan KT {code} <nam sinh> toi so nay hoac quay USSD muc 6."
    )
    assert sms_segments(sms) <= 2
    assert await an_code(stack) == code  # the same certificate: the same code

    checker = Phone(stack, Channel.SMS, BINH_PHONE)  # any phone, no login
    answers = {
        f"KT {code} 1985": AN_VALID,
        f"kt {code.lower().replace('-', ' ')} 1985": AN_VALID,
        f"Kiểm tra {code} 1985": None,  # not a keyword: help, never silence
        f"KT {code} 1986": NOT_FOUND,  # a wrong year reveals nothing
        f"KT {typo_of(code)} 1985": CHECK_CODE,  # a typo is told apart from an unknown code
        f"KT {code.replace('-', '')[:-1]} 1985": CHECK_CODE,  # a missing character
        f"KT {format_code(generate_code())} 1985": NOT_FOUND,
        f"KT {code}": "Kiem tra ma: gui KT <ma> <nam sinh>, vd KT VX7K3D9QMRT4 1985",
    }
    for text, expected in answers.items():
        reply = await checker.send(text)
        assert sms_segments(reply) <= 2, reply
        if expected is not None:
            assert reply == expected, text
        assert "Nguyen" not in reply or expected == AN_VALID
    await checker.send("EN")
    assert (
        await checker.send(f"VERIFY {code} 1985")
        == "VALID: Nguyen V. An, born 1985, 3 doses, latest 10/03/2022."
    )
    assert (
        await checker.send(f"VERIFY {code} 1984")
        == "NOT FOUND: no certificate matches this code and year of birth."
    )
    assert (
        await checker.send(f"VERIFY {typo_of(code)} 1985")
        == "CHECK THE CODE: a character is wrong or missing."
    )


async def test_ussd_menu_6_code_then_year(stack: Stack) -> None:
    code = await an_code(stack)
    checkpoint = Phone(stack, Channel.USSD, CHECKPOINT)
    screens = [await checkpoint.dial()]
    screens.append(await checkpoint.send("6"))
    assert screens[-1] == "CON Nhap ma chung nhan can kiem tra (vd VX7K3D9QMRT4):\n0 Quay lai"
    screens.append(await checkpoint.send(typo_of(code)))
    assert screens[-1] == "CON Ma chua dung (co ky tu sai hoac thieu). Kiem tra va nhap lai ma:\n0 Quay lai"
    screens.append(await checkpoint.send(code.replace("-", "").lower()))
    assert screens[-1].startswith("CON Nhap nam sinh")
    screens.append(await checkpoint.send("85"))
    assert screens[-1].startswith("CON Nam sinh khong hop le")
    screens.append(await checkpoint.send("1985"))
    assert screens[-1] == f"CON {AN_VALID}\n0 Menu chinh"
    screens.append(await checkpoint.dial())
    for answer in ("6", code, "1970"):
        screens.append(await checkpoint.send(answer))
    assert screens[-1] == f"CON {NOT_FOUND}\n0 Menu chinh"
    assert all(len(s) <= 182 for s in screens), [s for s in screens if len(s) > 182]


async def test_ussd_menu_2_offers_the_code_after_the_link(stack: Stack) -> None:
    binh = Phone(stack, Channel.USSD, BINH_PHONE)
    screens = [await binh.dial()]
    for answer in ("2", "079190004321", "21071990", PINNED_CODE):
        screens.append(await binh.send(answer))
    assert screens[-1] == (
        "CON Da xac thuc: Tran Thi Binh.\nLink chung nhan da gui qua SMS toi 09******78.\n"
        "1 Nhan ma chung nhan qua SMS\n0 Menu chinh"
    )
    screens.append(await binh.send("1"))
    assert screens[-1] == "END Ma chung nhan da gui qua SMS toi 09******78."
    link, code_sms = (await stack.sent_sms(BINH_PHONE))[-2:]
    assert "/c/" in link
    [code] = set(CODE.findall(code_sms))
    screens.append(await binh.dial())
    screens.append(await binh.send("2"))  # bound now: the link at once, the offer again
    assert screens[-1].endswith("1 Nhan ma chung nhan qua SMS\n0 Menu chinh")
    screens.append(await binh.send("0"))
    assert screens[-1].startswith("CON Tiem chung COVID-19")
    assert all(len(s) <= 182 for s in screens)
    checker = Phone(stack, Channel.SMS, CHECKPOINT)
    assert (
        await checker.send(f"KT {code} 1990")
        == "HOP LE: Tran T. Binh, sinh 1990, 1 mui, mui gan nhat 10/09/2021."
    )


async def test_telegram_certificate_caption_has_the_code(stack: Stack) -> None:
    chat = "810009"
    phone = Phone(stack, Channel.TELEGRAM, chat)
    await phone.command("login", "001085012345 14031985")
    await phone.send(PINNED_CODE)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, chat, command="certificate"))
    certificate = next(r.certificate for r in turn.replies if r.certificate is not None)
    assert "Mã chứng nhận (khi không có điện thoại thông minh): " in certificate.caption
    [code] = CODE.findall(certificate.caption)
    checker = Phone(stack, Channel.SMS, CHECKPOINT)
    assert await checker.send(f"KT {code} 1985") == AN_VALID
    stack.clock.advance(minutes=2)  # the login code of the SMS login below may be sent again
    assert await an_code(stack) == code  # the same code as MA sends


async def test_a_corrected_record_revokes_the_old_code_and_ma_issues_a_new_one(stack: Stack) -> None:
    old = await an_code(stack)
    person = await stack.registry.find_person("001085012345", date(1985, 3, 14))
    await stack.registry.record_dose(
        person.id, NewDose(4, "Pfizer", date(2022, 9, 1), "HN002", "FX1234", source=DoseSource.CORRECTION)
    )
    new = await an_code(stack)
    assert new != old
    checker = Phone(stack, Channel.SMS, CHECKPOINT)
    revoked = await checker.send(f"KT {old} 1985")
    assert revoked == (
        "DA THU HOI (da co chung nhan moi, xin ma moi): Nguyen V. An, sinh 1985, 3 mui, mui gan nhat 10/03/2022."
    )
    assert (
        await checker.send(f"KT {new} 1985")
        == "HOP LE: Nguyen V. An, sinh 1985, 4 mui, mui gan nhat 01/09/2022."
    )
    ussd = Phone(stack, Channel.USSD, CHECKPOINT)
    await ussd.dial()
    for answer in ("6", old):
        await ussd.send(answer)
    screen = await ussd.send("1985")
    assert screen.startswith("CON DA THU HOI") and len(screen) <= 182


async def test_guessing_locks_the_code_and_blocks_the_phone(stack: Stack) -> None:
    code = await an_code(stack)
    for i in range(5):  # five wrong years, from five phones
        guesser = Phone(stack, Channel.SMS, f"+8497000000{i}")
        assert await guesser.send(f"KT {code} {1960 + i}") == NOT_FOUND
    checker = Phone(stack, Channel.SMS, CHECKPOINT)
    locked = await checker.send(f"KT {code} 1985")  # even with the right year, for a while
    assert locked == "TAM KHOA: ma nay bi nhap sai nam sinh qua nhieu lan. Thu lai sau 60 phut."

    guesser = Phone(stack, Channel.SMS, "+84970000099")
    for _ in range(10):
        assert await guesser.send(f"KT {format_code(generate_code())} 1985") == NOT_FOUND
    assert await guesser.send(f"KT {format_code(generate_code())} 1985") == (
        "QUA NHIEU LAN SAI: vui long thu lai sau 15 phut."
    )
    ussd = Phone(stack, Channel.USSD, "+84970000099")  # the same phone on USSD is another caller key
    await ussd.dial()
    await ussd.send("6")
    await ussd.send(code)
    assert (await ussd.send("1985")).startswith("CON TAM KHOA")
