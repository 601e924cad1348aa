"""How a Turn becomes the text of one SMS or one USSD screen, and the budget each must fit.

USSD: `CON `/`END ` + text + one line per option, at most 182 characters.
SMS: text + one line per option, at most 2 segments (GSM-7 without diacritics when the setting
says so, else UCS-2). A longer answer is cut into pages; the engine keeps the rest in the
session and `98` shows the next page.
WhatsApp: no segment limit and diacritics kept; one message holds at most 1600 characters (what
Twilio accepts in a WhatsApp body), its options as numbered lines (no menu has more than 10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conversations.model import Channel, Option, Reply, Turn
from conversations.text import sms_segments, strip_diacritics

USSD_MAX_CHARS = 182
SMS_MAX_SEGMENTS = 2
WHATSAPP_MAX_CHARS = 1600
MORE_KEY = "98"


def _body(text: str, options: Sequence[Option]) -> str:
    lines = [text] if text else []
    lines.extend(f"{o.key} {o.label}" for o in options)
    return "\n".join(lines)


def ussd_text(reply: Reply, end: bool, *, strip: bool) -> str:
    body = _body(reply.text, () if end else reply.options)
    if strip:
        body = strip_diacritics(body)
    return ("END " if end else "CON ") + body


def sms_text(reply: Reply, *, strip: bool) -> str:
    body = _body(reply.text, reply.options)
    return strip_diacritics(body) if strip else body


def whatsapp_text(reply: Reply) -> str:
    return _body(reply.text, reply.options)


def render_ussd(turn: Turn, *, strip: bool) -> str:
    reply = merge(turn.replies)
    return ussd_text(reply, turn.end, strip=strip)


def render_sms(turn: Turn, *, strip: bool) -> str:
    return sms_text(merge(turn.replies), strip=strip)


def merge(replies: Sequence[Reply]) -> Reply:
    """SMS and USSD show one text per turn: the texts in order, the last reply's options."""
    if not replies:
        return Reply("")
    if len(replies) == 1:
        return replies[0]
    text = "\n".join(r.text for r in replies if r.text)
    last = replies[-1]
    return Reply(text, last.options, last.certificate, last.ask_contact)


def fits(channel: Channel, reply: Reply, end: bool, *, strip: bool) -> bool:
    if channel == Channel.USSD:
        return len(ussd_text(reply, end, strip=strip)) <= USSD_MAX_CHARS
    if channel == Channel.SMS:
        return sms_segments(sms_text(reply, strip=strip)) <= SMS_MAX_SEGMENTS
    if channel == Channel.WHATSAPP:
        return len(whatsapp_text(reply)) <= WHATSAPP_MAX_CHARS
    return True


def paginate(
    text: str, final_options: tuple[Option, ...], more: Option, fits_page: Callable[[Reply], bool]
) -> list[Reply]:
    """Cuts `text` into pages that fit: every page but the last offers `more` (and `0` when the
    final options have it); the last page carries `final_options`."""
    back = tuple(o for o in final_options if o.key == "0")
    middle_options = (more, *back)
    pages: list[Reply] = []
    rest = _pieces(text)
    while True:
        tail = "".join(rest).strip()
        if not rest or fits_page(Reply(tail, final_options)):
            pages.append(Reply(tail, final_options))
            return pages
        lo, hi = 0, len(rest)  # the longest prefix of pieces that fits (fitting is monotonic)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits_page(Reply("".join(rest[:mid]).strip(), middle_options)):
                lo = mid
            else:
                hi = mid - 1
        taken = lo
        if taken == 0:  # one word longer than a page: cut it
            word = rest[0].strip()
            cut = _longest_prefix(word, lambda s: fits_page(Reply(s, middle_options)))
            pages.append(Reply(word[:cut], middle_options))
            rest = [word[cut:], *rest[1:]] if word[cut:] else rest[1:]
        else:
            # prefer ending a page at a line break when that keeps the page at least half full
            full = len("".join(rest[:taken]))
            at_line_end = taken == len(rest) or rest[taken].startswith("\n")
            for j in range(0 if at_line_end else taken - 1, 0, -1):
                if rest[j].startswith("\n") and len("".join(rest[:j])) * 2 >= full:
                    taken = j
                    break
            pages.append(Reply("".join(rest[:taken]).strip(), middle_options))
            rest = rest[taken:]
        if rest:
            rest[0] = rest[0].lstrip()


def _pieces(text: str) -> list[str]:
    """Line by line, and word by word within a line, keeping separators."""
    pieces: list[str] = []
    for i, line in enumerate(text.split("\n")):
        words = line.split(" ")
        for j, word in enumerate(words):
            sep = "\n" if (i > 0 and j == 0) else (" " if j > 0 else "")
            pieces.append(sep + word)
    return pieces


def _longest_prefix(text: str, ok: Callable[[str], bool]) -> int:
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(text[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return max(1, lo)
