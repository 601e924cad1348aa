"""A conversation's state between turns, stored as JSON in `conversation_sessions.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conversations.model import Option, Reply


@dataclass
class Page:
    text: str
    options: list[tuple[str, str]] = field(default_factory=list)
    end: bool = False  # USSD: the session ends with this page
    shown: bool = False  # the last page, already shown: `98` again says there is no more


@dataclass
class SessionState:
    language: str = "vi"
    person_id: str | None = None  # the person this conversation is about (a bound one)
    flow: str | None = None  # None: the main menu
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the current flow's answers so far
    back: list[str] = field(default_factory=list)  # steps of the current flow to go back to with 0
    pages: list[Page] = field(default_factory=list)  # the rest of a long answer (98)
    ussd_chain: list[str] = field(default_factory=list)  # USSD inputs of this session already processed
    last_replies: list[dict[str, Any]] = field(default_factory=list)  # for a replayed USSD request
    last_end: bool = False
    resume: dict[str, Any] | None = None  # a dropped USSD session's flow, offered for resumption
    code_until: str | None = None  # ISO instant: a one-time code for this caller is valid until then
    last_ref: str | None = None  # the newest report filed here (photos sent later attach to it)

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies recursively and cost ~10x this on every turn.
        return {
            "language": self.language,
            "person_id": self.person_id,
            "flow": self.flow,
            "step": self.step,
            "data": dict(self.data),
            "back": list(self.back),
            "pages": [
                {"text": p.text, "options": [list(o) for o in p.options], "end": p.end, "shown": p.shown}
                for p in self.pages
            ],
            "ussd_chain": list(self.ussd_chain),
            "last_replies": list(self.last_replies),
            "last_end": self.last_end,
            "resume": self.resume,
            "code_until": self.code_until,
            "last_ref": self.last_ref,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SessionState:
        if not data:
            return cls()
        state = cls()
        for key, value in data.items():
            if key == "pages":
                state.pages = [
                    Page(
                        p["text"],
                        [(k, v) for k, v in p.get("options", [])],
                        bool(p.get("end")),
                        bool(p.get("shown")),
                    )
                    for p in value
                ]
            elif hasattr(state, key):
                setattr(state, key, value)
        return state

    def clear_flow(self) -> None:
        self.flow, self.step, self.data, self.back, self.pages = None, None, {}, [], []

    @property
    def in_flow(self) -> bool:
        return self.flow is not None


def replies_to_json(replies: list[Reply]) -> list[dict[str, Any]]:
    return [
        {"text": r.text, "options": [[o.key, o.label] for o in r.options], "ask_contact": r.ask_contact}
        for r in replies
    ]


def replies_from_json(data: list[dict[str, Any]]) -> list[Reply]:
    return [
        Reply(
            text=r["text"],
            options=tuple(Option(k, v) for k, v in r.get("options", [])),
            ask_contact=bool(r.get("ask_contact")),
        )
        for r in data
    ]
