"""The hotline number (`0` on the main menu): USSD ends the session with it, a voice call is put
through to it."""

from __future__ import annotations

from conversations.context import Context


def show(ctx: Context) -> None:
    ctx.say("hotline")
    ctx.turn.hand_over = True  # a voice call is put through; other channels show the number
    ctx.finish(end=True)
