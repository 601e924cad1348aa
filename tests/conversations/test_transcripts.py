"""Every transcript under transcripts/ runs through the SMS and the USSD renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from conversations.model import Channel
from tests.conversations.harness import Phone, build_stack
from tests.conversations.transcript import matches, parse

HERE = Path(__file__).parent / "transcripts"
CASES = [
    pytest.param(path, channel, id=f"{path.stem}-{channel}")
    for path in sorted(HERE.glob("*.txt"))
    for channel in parse(path).channels
]


@pytest.mark.parametrize(("path", "channel"), CASES)
async def test_transcript(path: Path, channel: str, demo_url: str, tmp_path: Path) -> None:
    transcript = parse(path)
    stack = build_stack(demo_url, tmp_path, strip=transcript.strip)
    phone = Phone(stack, Channel(channel), transcript.phone)
    try:
        for number, step in enumerate(transcript.steps, start=1):
            if step.only not in (None, channel):
                continue
            if step.kind == "dial":
                actual = await phone.dial()
            elif step.kind == "outbox":
                sent = await stack.sent_sms(step.text)
                actual = sent[-1] if sent else "(no SMS)"
            else:
                actual = await phone.send(step.input_for(channel))
            expected = step.expected_for(channel)
            if step.kind != "outbox" and channel == "ussd":
                expected = ("END " if step.end else "CON ") + expected
            assert matches(expected, actual), (
                f"{path.name} step {number} ({step.kind} {step.input_for(channel)!r}) on {channel}:\n"
                f"--- expected\n{expected}\n--- got\n{actual}"
            )
    finally:
        await stack.close()
