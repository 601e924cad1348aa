"""The flow table, and running a flow that is about a person (log in or pick one first)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from conversations.context import Context
from conversations.flows import (
    certificate,
    check_report,
    language,
    login,
    menu,
    pick,
    report,
    status,
    verify_code,
)
from conversations.model import Channel


class FlowModule(Protocol):
    async def prompt(self, ctx: Context, step: str) -> None: ...

    async def handle(self, ctx: Context, step: str, text: str) -> None: ...


FLOWS: dict[str, FlowModule] = {
    "certificate": certificate,
    "login": login,
    "pick": pick,
    "report": report,
    "check": check_report,
    "language": language,
    "verify": verify_code,
    "resume": menu,
}

# Flows about the conversation's person: they need a verified binding first.
PERSON_FLOWS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "status": status.begin,
    "certificate": certificate.begin,
    "code": certificate.begin_code,
    "report": report.begin,
    "check": check_report.begin_for_person,
}


async def with_person(ctx: Context, target: str | None) -> None:
    """Runs `target` for the conversation's person: the active one if still bound, the only bound
    one, a pick among several, or a login first. `target` None shows the main menu afterwards."""
    bound = await ctx.bound_persons()
    if ctx.state.person_id is not None and ctx.state.person_id in bound:
        await start_target(ctx, target)
    elif len(bound) == 1:
        ctx.state.person_id = bound[0]
        await start_target(ctx, target)
    elif bound:
        await pick.begin(ctx, target)
    else:
        ctx.state.person_id = None
        await login.begin(ctx, target)


async def start_target(ctx: Context, target: str | None) -> None:
    ctx.state.clear_flow()
    if target is None:
        if ctx.channel == Channel.SMS:
            menu.help_text(ctx)  # SMS users type keywords
        else:
            await menu.show(ctx)
        return
    if not await _binding_holds(ctx):
        ctx.say("login.binding_ended")
        ctx.state.person_id = None
        ctx.forget_bound_cache()
        await login.begin(ctx, target)
        return
    await PERSON_FLOWS[target](ctx)


async def _binding_holds(ctx: Context) -> bool:
    """Before anything about the person is shown: the binding still stands in SQL (not only in a
    cache) and the phone that proved it is still the person's registered phone."""
    person_id = ctx.state.person_id
    if person_id is None or ctx.code_settled:  # just proven in this very turn
        return True
    person = await ctx.person(person_id)
    return await ctx.services.bindings.holds(ctx.channel.value, ctx.address, person)
