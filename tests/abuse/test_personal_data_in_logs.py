"""The logs of a whole USSD login (and an SMS login) through the app — at DEBUG level, with the
service's own log configuration (`web.structured_logs.configure_logging`) — contain no phone
number, national ID or one-time code in clear. (tests/faults/test_kill_and_restart.py checks the
same on the standard error of a real `python main.py serve`.)"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.service import AN, BINH, base_settings, expected, flat, running
from web.structured_logs import configure_logging


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(level=logging.DEBUG)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def clear_forms(phone: str, national_id: str) -> list[str]:
    local = "0" + phone[3:]
    return [phone, phone[1:], local, national_id, "%2B" + phone[1:]]


async def test_a_login_logs_nothing_personal_in_clear(
    captured_logs: io.StringIO, demo_db: str, tmp_path: Path
) -> None:
    async with running(base_settings(demo_db, tmp_path / "data")) as service:
        caller = service.ussd(AN[0])
        await caller.dial()
        assert flat(await caller.answers("1", AN[1], AN[2])).startswith("CON " + expected("login.code_sent"))
        ussd_code = await service.last_code(AN[0])
        assert "Nguyen Van An" in await caller.send(ussd_code)
        await service.state.outbox_worker.run_once()  # the code "sent" (kept locally)

        sms = service.sms(BINH[0])
        assert (await sms.send(f"DK {BINH[1]} {BINH[2]}")).startswith(expected("login.code_sent"))
        sms_code = await service.last_code(BINH[0])
        assert expected("login.success", name="Tran Thi Binh") in await sms.send(sms_code)
        await sms.send("MUI")
        logging.getLogger("tests").info("a line that must be masked: %s %s code %s", AN[0], AN[1], ussd_code)

    output = captured_logs.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(lines) >= 5, output[:2000]  # the login did log (requests, the engine, the outbox …)
    assert "a line that must be masked" in output and "09******67" in output
    for secret in [*clear_forms(AN[0], AN[1]), *clear_forms(BINH[0], BINH[1]), ussd_code, sms_code]:
        assert secret not in output, f"{secret} in the logs: " + next(
            line for line in output.splitlines() if secret in line
        )
