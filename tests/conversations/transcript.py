"""Transcript files: inputs and the replies expected on each renderer (SMS and USSD).

    # comment
    @channels ussd sms          which renderers run this file (default: both)
    @phone +84901234567         the caller
    @strip off                  keep Vietnamese diacritics (default on, as in production)

    > [dial]                    USSD: start a session (skipped on SMS)
    > 1                         an input, sent on every channel
    > [sms] MUI                 an input only on SMS ([ussd] likewise)
    > [ussd] 1 [sms] Mũi        different inputs per renderer, one expected reply
    expected reply line         every following line up to a blank line is the reply;
    [ussd] only-on-ussd line    a line only expected on that renderer
    !end                        USSD answers END (otherwise CON)
    ~ sms +84901234567          the newest SMS in the outbox to that phone, then its text lines

`<*>` in an expected line matches any text (references, links).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    kind: str  # "send" | "dial" | "outbox"
    text: str = ""
    only: str | None = None
    per_channel: dict[str, str] = field(default_factory=dict)
    expected: list[tuple[str | None, str]] = field(default_factory=list)  # (channel or None, line)
    end: bool = False

    def input_for(self, channel: str) -> str:
        return self.per_channel.get(channel, self.text)

    def expected_for(self, channel: str) -> str:
        return "\n".join(line for only, line in self.expected if only in (None, channel))


@dataclass
class Transcript:
    path: Path
    channels: tuple[str, ...] = ("ussd", "sms")
    phone: str = "+84901234567"
    strip: bool = True
    steps: list[Step] = field(default_factory=list)


_ONLY = re.compile(r"^\[(ussd|sms)\]\s?(.*)$")
_BOTH = re.compile(r"^\[ussd\] (.*) \[sms\] (.*)$")


def parse(path: Path) -> Transcript:
    transcript = Transcript(path)
    current: Step | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip("\n")
        if not line.strip():
            current = None
            continue
        if current is None and line.startswith("#"):
            continue
        if line.startswith("@"):
            name, _, value = line[1:].partition(" ")
            if name == "channels":
                transcript.channels = tuple(value.split())
            elif name == "phone":
                transcript.phone = value.strip()
            elif name == "strip":
                transcript.strip = value.strip() != "off"
            continue
        if line.startswith("> "):
            body = line[2:]
            both = _BOTH.match(body)
            if body.strip() == "[dial]":
                current = Step("dial", only="ussd")
            elif both:
                current = Step("send", per_channel={"ussd": both[1], "sms": both[2]})
            else:
                match = _ONLY.match(body)
                current = Step("send", match[2] if match else body, only=match[1] if match else None)
            transcript.steps.append(current)
            continue
        if line.startswith("~ sms "):
            current = Step("outbox", line[len("~ sms ") :].strip())
            transcript.steps.append(current)
            continue
        if current is None:
            continue
        if line.strip() == "!end":
            current.end = True
            continue
        match = _ONLY.match(line)
        current.expected.append((match[1], match[2]) if match else (None, line))
    return transcript


def matches(expected: str, actual: str) -> bool:
    pattern = "^" + ".*?".join(re.escape(part) for part in expected.split("<*>")) + "$"
    return re.match(pattern, actual, re.DOTALL) is not None
