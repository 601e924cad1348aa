"""Admin: users (create, disable, password), sites, SLA, dashboard figures, the outbound log."""

from __future__ import annotations

import re
from datetime import timedelta

from outbox.store import OutboundMessage
from registry_client.clock import utc_now
from registry_client.models import Decision, Resolution
from registry_client.routing import add_working_days
from tests.console.conftest import AN, CUONG, PASSWORD, Console, demo_case_ref, file_case


def flash_of(console: Console, response) -> str:  # type: ignore[no-untyped-def]
    page = console.client.get(response.headers["location"]).text
    match = re.search(r'<div class="flash[^>]*>(.*?)</div>', page, re.S)
    return match.group(1) if match else ""


def test_users_create_disable_and_reset(console: Console) -> None:
    console.as_user("quan")
    assert "Đã tạo người dùng thu" in flash_of(
        console,
        console.post(
            "/agent/admin/users",
            {"username": "Thu", "role": "site", "site_code": "DN003", "password": "a-good-password"},
        ),
    )
    assert "đã có" in flash_of(
        console,
        console.post(
            "/agent/admin/users", {"username": "thu", "role": "agent", "password": "a-good-password"}
        ),
    )
    assert "cần chọn cơ sở" in flash_of(
        console,
        console.post("/agent/admin/users", {"username": "vy", "role": "site", "password": "a-good-password"}),
    )
    assert "Không có cơ sở này" in flash_of(
        console,
        console.post(
            "/agent/admin/users",
            {"username": "vy", "role": "site", "site_code": "ZZ999", "password": "a-good-password"},
        ),
    )
    assert "ít nhất 8" in flash_of(
        console, console.post("/agent/admin/users", {"username": "vy", "role": "agent", "password": "short"})
    )
    users = {u.username: u for u in console.call(console.state.console.users.list_all)}
    assert users["thu"].site_code == "DN003" and "vy" not in users
    assert console.login("thu", "a-good-password").headers["location"] == "/agent/queue"

    console.as_user("quan")
    own = users["quan"].id
    assert "Không thể tự khoá" in flash_of(console, console.post(f"/agent/admin/users/{own}/disable"))
    console.post(f"/agent/admin/users/{users['thu'].id}/disable")
    assert console.login("thu", "a-good-password").status_code == 401
    console.as_user("quan")
    console.post(f"/agent/admin/users/{users['thu'].id}/enable")
    console.post(f"/agent/admin/users/{users['lan'].id}/password", {"password": "brand-new-secret"})
    assert console.login("lan", PASSWORD).status_code == 401
    assert console.login("lan", "brand-new-secret").status_code == 303


def test_sites(console: Console) -> None:
    console.as_user("quan")
    assert "Đã lưu cơ sở QN001" in flash_of(
        console,
        console.post(
            "/agent/admin/sites", {"code": "qn001", "name": "Trạm Y tế Hạ Long", "province": "Quảng Ninh"}
        ),
    )
    assert console.call(console.state.registry.get_site, "QN001").name == "Trạm Y tế Hạ Long"
    assert "bắt buộc" in flash_of(console, console.post("/agent/admin/sites", {"code": "Q N 1", "name": "x"}))
    assert "Trạm Y tế Hạ Long" in console.client.get("/agent/admin/sites").text


def test_sla_setting_applies_to_new_reports(console: Console) -> None:
    console.as_user("quan")
    assert 'value="5"' in console.client.get("/agent/admin/sla").text
    assert "từ 1 đến 30" in flash_of(console, console.post("/agent/admin/sla", {"days": "0"}))
    assert "3 ngày làm việc" in flash_of(console, console.post("/agent/admin/sla", {"days": "3"}))
    assert console.call(console.state.console.sla.working_days) == 3
    case = file_case(console, CUONG)
    assert case.due_on == add_working_days(utc_now().date(), 3)


def test_dashboard_figures(console: Console) -> None:
    registry = console.state.registry
    demo = demo_case_ref(console)
    console.call(registry.resolve_correction, demo, Resolution(Decision.REJECTED, "no", "test"))
    inner = registry.inner
    inner._clock = lambda: utc_now() - timedelta(days=20)  # an old, overdue report at HN001
    overdue = file_case(console, AN, site="HN001")
    inner._clock = utc_now
    assert overdue.due_on < utc_now().date()
    outbox = console.state.outbox

    async def seed() -> None:
        ids = [
            await outbox.put(OutboundMessage("sms", f"+8490000000{i}", "notification", text="x"))
            for i in range(3)
        ]
        await outbox.mark_sent(ids[0], "SM1")
        await outbox.record_provider_status("SM1", "delivered", None)
        await outbox.mark_sent(ids[1], "SM2")
        await outbox.mark_failed(ids[2], "rejected", "21211")
        await outbox.mark_local(await outbox.put(OutboundMessage("telegram", "5550", "link", text="y")))
        await outbox.put(OutboundMessage("sms", "+84900000009", "otp", text="Ma xac thuc 123456"))

    console.call(seed)
    console.as_user("quan")
    page = console.client.get("/agent/admin").text
    stats = re.findall(r'<span class="value">([^<]*)</span>', page)
    assert stats[:3] == ["1", "1", "1"]  # open, overdue, resolved in the window
    assert "giờ" in stats[3]  # median time to resolution
    assert stats[4] == "0 / 0"  # voice calls served without an agent / calls (none in this test)
    assert re.search(r">HN001</a>.*?<td>1</td><td>1</td>", page, re.S)
    assert "67% gửi được · 33% xác nhận đã nhận" in page
    sms_row = re.search(r"<td>SMS</td>" + r"\s*<td>(\d+)</td>" * 5, page)
    assert sms_row and sms_row.groups() == ("4", "1", "1", "1", "1")
    log = console.client.get("/agent/admin/outbox").text
    assert "123456" not in log and "(mã xác thực — ẩn)" in log
    assert "09******09" in log


def test_cli_create_user(sqlite_url: str, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import io

    from tests.console.conftest import make_settings
    from web.console.users import create_user_cli

    settings = make_settings(sqlite_url, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-strong-pass\n"))
    assert create_user_cli(settings, "Lan", "agent", None, True) == 0
    assert "Created console user lan (role agent)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("a-strong-pass\n"))
    assert create_user_cli(settings, "lan", "agent", None, True) == 1
    assert "exists already" in capsys.readouterr().err
    assert create_user_cli(settings, "minh", "site", None, True) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert create_user_cli(settings, "vy", "admin", None, True) == 1
    assert "at least 8" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a-strong-pass\n"))
    assert create_user_cli(settings, "minh", "site", "hcm07", True) == 0  # no sites yet: warned, not refused
    assert "not checked" in capsys.readouterr().err
