"""Language: Vietnamese (default) or English; remembered for the channel identity."""

from __future__ import annotations

from conversations.context import Context

NAME = "language"


async def begin(ctx: Context) -> None:
    ctx.start_flow(NAME, "choose")
    await prompt(ctx, "choose")


async def prompt(ctx: Context, step: str) -> None:
    ctx.ask(ctx.t("language.ask"), [("1", "Tiếng Việt"), ("2", "English")])


async def set_language(ctx: Context, language: str) -> None:
    from conversations.flows import menu

    ctx.state.language = ctx.turn.language = language
    ctx.say("language.set")
    if ctx.channel.value == "sms":
        ctx.state.clear_flow()
        return
    await menu.show(ctx)


async def handle(ctx: Context, step: str, text: str) -> None:
    choice = text.strip()
    if choice == "1":
        await set_language(ctx, "vi")
    elif choice == "2":
        await set_language(ctx, "en")
    else:
        ctx.say("common.invalid_choice")
        await prompt(ctx, step)
