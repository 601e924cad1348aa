"""The hotline number (USSD `0` on the main menu); on USSD the session ends with it."""

from __future__ import annotations

from conversations.context import Context


def show(ctx: Context) -> None:
    ctx.say("hotline")
    ctx.finish(end=True)
