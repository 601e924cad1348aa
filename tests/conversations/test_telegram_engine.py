"""What the Telegram adapter relies on: commands by neutral name, button choices, a shared own
contact, the certificate as an image, /logout — through the same engine."""

from __future__ import annotations

from conversations.model import Channel, Inbound, InboundMedia
from tests.conversations.harness import PINNED_CODE, Phone, Stack

CHAT = "810001"


async def test_shared_family_phone_logs_in_and_picks_a_person(stack: Stack) -> None:
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, shared_phone="+84 938 111 222"))
    assert "Mã 6 số đã gửi qua SMS tới số điện thoại bạn chia sẻ" in turn.replies[-1].text
    assert len(await stack.sent_sms("+84938111222")) == 1
    await phone.send(PINNED_CODE)
    assert phone.last_turn is not None
    first, picker = phone.last_turn.replies
    assert first.text == "Đã xác thực số điện thoại 09******22."
    assert picker.text == "Chọn người:"
    labels = {o.label: o.key for o in picker.options}
    assert {"Phạm Thị Dung (1982)", "Phạm Văn Em (1950)", "Phạm Minh Đức (2010)", "Người khác"} <= set(labels)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, choice=labels["Phạm Văn Em (1950)"]))
    assert any(o.key == "8" for o in turn.replies[-1].options)  # switch person is offered
    status = await phone.command("status")
    assert status.startswith("Phạm Văn Em, CCCD 001******555:")


async def test_certificate_is_an_image_on_telegram(stack: Stack) -> None:
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    await phone.command("login", "001085012345 14031985")
    await phone.send(PINNED_CODE)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, command="certificate"))
    certificate = next(r.certificate for r in turn.replies if r.certificate is not None)
    assert certificate.png.startswith(b"\x89PNG") and certificate.hc1.startswith("HC1:")
    assert certificate.link.startswith("http://vax.test/c/")
    assert certificate.caption.startswith("Nguyễn Văn An, sinh 14/03/1985. Mũi 1: AstraZeneca 02/08/2021")
    assert await stack.sent_sms("+84901234567") == [  # only the login code went by SMS
        "VaxChannel: ma xac thuc 482915, hieu luc 5 phut. Khong chia se ma nay. Neu ban khong yeu cau, hay bo qua."
    ]


async def test_photo_after_a_report_is_attached(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    await phone.command("login", "048095006789 30111995")
    await phone.send(PINNED_CODE)
    await phone.command("report")
    for answer in ("1", "1", "9", "9", "9", "9", "1"):
        await phone.send(answer)
    done = await phone.send("1")
    assert "Gửi ảnh giấy chứng nhận tiêm vào đây" in done
    photo = tmp_path / "card.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"0" * 100)
    turn = await stack.service.handle(
        Inbound(Channel.TELEGRAM, CHAT, media=(InboundMedia(str(photo), "image/jpeg", 103, "card.jpg"),))
    )
    ref = turn.replies[0].text.rsplit(" ", 1)[-1].rstrip(".")
    assert turn.replies[0].text.startswith("Đã đính kèm ảnh vào phản ánh PA-")
    case = await stack.registry.get_correction(ref)
    assert [a.filename for a in case.attachments] == ["card.jpg"]


async def test_unknown_command_and_help(stack: Stack) -> None:
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    assert "/status" in await phone.command("help")
    assert "/status" in await phone.command("frobnicate")
    assert (await phone.command("start")).startswith("Chào bạn!")


async def test_status_asked_before_sharing_the_phone_follows_the_code(stack: Stack) -> None:
    """/status → share my number → code: the status asked for, not the main menu (as SMS and USSD)."""
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    asked = await phone.command("status")
    assert "CCCD" in asked  # not logged in: the login asks for the ID (or the shared number)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, shared_phone="+84901234567"))
    assert "Mã 6 số đã gửi qua SMS tới số điện thoại bạn chia sẻ" in turn.replies[-1].text
    await phone.send(PINNED_CODE)
    assert phone.last_turn is not None
    verified, status = phone.last_turn.replies[0], phone.last_turn.replies[-1]
    assert verified.text == "Đã xác thực số điện thoại 09******67."
    assert status.text.startswith("Nguyễn Văn An, CCCD 001******345:"), status.text


async def test_a_number_not_on_record_keeps_the_request_for_the_id_login(stack: Stack) -> None:
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    await phone.command("status")
    await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, shared_phone="+84900000001"))
    await phone.send("001085012345")
    await phone.send("14031985")
    done = await phone.send(PINNED_CODE)
    assert "Nguyễn Văn An, CCCD 001******345:" in done, done


async def test_a_code_just_sent_on_another_channel_means_wait_then_share_again(stack: Stack) -> None:
    """A newcomer logs in by USSD, then on Telegram within the minute: told to wait (not to type a
    code this chat never got), the request kept; sharing the number again after the wait works."""
    ussd = Phone(stack, Channel.USSD, "+84901234567")
    await ussd.send("")
    for answer in ("1", "001085012345", "14031985"):
        await ussd.send(answer)
    assert len(await stack.sent_sms("+84901234567")) == 1
    phone = Phone(stack, Channel.TELEGRAM, CHAT)
    await phone.command("status")
    stack.clock.advance(seconds=20)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, shared_phone="+84901234567"))
    texts = [r.text for r in turn.replies]
    assert texts[0] == "Vui lòng đợi 40 giây rồi thử lại: một mã vừa được gửi cho người này.", texts
    assert "CCCD" in texts[1] and turn.replies[1].ask_contact  # back at the login, the button offered
    assert len(await stack.sent_sms("+84901234567")) == 1
    stack.clock.advance(seconds=41)
    turn = await stack.service.handle(Inbound(Channel.TELEGRAM, CHAT, shared_phone="+84901234567"))
    assert "Mã 6 số đã gửi qua SMS tới số điện thoại bạn chia sẻ" in turn.replies[-1].text
    await phone.send(PINNED_CODE)
    assert phone.last_turn is not None
    assert phone.last_turn.replies[-1].text.startswith("Nguyễn Văn An, CCCD 001******345:")
