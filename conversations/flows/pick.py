"""Several persons bound to one phone or chat: a numbered list to choose who this is about."""

from __future__ import annotations

from conversations.context import Context

NAME = "pick"


async def begin(ctx: Context, then: str | None) -> None:
    ctx.start_flow(NAME, "choose", then=then, ids=await ctx.bound_persons())
    await prompt(ctx, "choose")


async def prompt(ctx: Context, step: str) -> None:
    ids: list[str] = ctx.state.data["ids"]
    options = []
    for i, person_id in enumerate(ids, start=1):
        person = await ctx.person(person_id)
        options.append((str(i), f"{person.full_name} ({person.date_of_birth.year})"))
    options.append((str(len(ids) + 1), ctx.t("pick.other")))
    ctx.ask(ctx.t("pick.title"), options)


async def handle(ctx: Context, step: str, text: str) -> None:
    from conversations.flows import login
    from conversations.flows.run import start_target

    ids: list[str] = ctx.state.data["ids"]
    then = ctx.state.data.get("then")
    choice = text.strip()
    if choice.isdigit() and 1 <= int(choice) <= len(ids):
        ctx.state.person_id = ids[int(choice) - 1]
        await start_target(ctx, then)
    elif choice == str(len(ids) + 1):
        await login.begin(ctx, then)
    else:
        ctx.say("common.invalid_choice")
        await prompt(ctx, step)
