"""The main menu (its numbers are fixed: docs/ussd-menu.md), help, hotline, and resuming a dropped USSD
session."""

from __future__ import annotations

from conversations.context import Context
from conversations.i18n import t
from conversations.model import Channel, Reply
from conversations.text import short_name

# USSD menu numbers are fixed (printed on posters); 7 and 8 appear only when they apply.
STATUS, CERTIFICATE, REPORT, CHECK, LANGUAGE, VERIFY, ENTER_CODE, SWITCH, HOTLINE = (
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "0",
)


async def show(ctx: Context, *, invalid: bool = False) -> None:
    ctx.state.clear_flow()
    options = [
        (STATUS, ctx.t("menu.status")),
        (CERTIFICATE, ctx.t("menu.certificate")),
        (REPORT, ctx.t("menu.report")),
        (CHECK, ctx.t("menu.check")),
        (LANGUAGE, ctx.t("menu.language")),
        (VERIFY, ctx.t("menu.verify")),
    ]
    if ctx.code_pending():
        options.append((ENTER_CODE, ctx.t("menu.enter_code")))
    bound = await ctx.bound_persons()
    title = ctx.t("menu.title")
    if len(bound) > 1:
        options.append((SWITCH, ctx.t("menu.switch")))
        if ctx.state.person_id in bound:  # several people on this phone: say who is selected
            person = await ctx.person(ctx.state.person_id)
            title = ctx.t("menu.title_person", name=short_name(person.full_name))
    options.append((HOTLINE, ctx.t("menu.hotline")))
    if invalid:
        title = ctx.t("common.invalid_choice")
    ctx.ask(title, options, back=False)


async def choose(ctx: Context, text: str) -> None:
    """A main-menu choice (USSD, or a number sent by SMS / pressed in Telegram)."""
    from conversations.flows import check_report, hotline, language, login, pick, verify_code
    from conversations.flows.run import with_person

    choice = text.strip()
    if choice == STATUS:
        await with_person(ctx, "status")
    elif choice == CERTIFICATE:
        await with_person(ctx, "certificate")
    elif choice == REPORT:
        await with_person(ctx, "report")
    elif choice == CHECK:
        await check_report.begin(ctx, None)
    elif choice == LANGUAGE:
        await language.begin(ctx)
    elif choice == VERIFY:
        await verify_code.begin(ctx, None)
    elif choice == ENTER_CODE and ctx.code_pending():
        await login.begin_enter_code(ctx)
    elif choice == SWITCH and len(await ctx.bound_persons()) > 1:
        await pick.begin(ctx, None)
    elif choice == HOTLINE:
        hotline.show(ctx)
    elif ctx.channel == Channel.SMS:
        help_text(ctx)
    else:
        await show(ctx, invalid=bool(choice))


def help_text(ctx: Context, *, language: str | None = None) -> None:
    """The list of commands; `language` answers an English HELP in English whatever the session's."""
    key = "help.telegram" if ctx.channel == Channel.TELEGRAM else "help.sms"
    if language is None or language == ctx.lang:
        ctx.say(key)
    else:
        ctx.turn.replies.append(Reply(t(language, key, hotline=ctx.config.hotline)))
    ctx.state.clear_flow()


# -- resuming a dropped USSD session ------------------------------------------------------------
async def offer_resume(ctx: Context) -> None:
    ctx.state.flow, ctx.state.step = "resume", "ask"
    ctx.ask(
        ctx.t("resume.ask"),
        [("1", ctx.t("resume.continue")), ("2", ctx.t("resume.restart"))],
        back=False,
    )


async def prompt(ctx: Context, step: str) -> None:
    await offer_resume(ctx)


async def handle(ctx: Context, step: str, text: str) -> None:
    from conversations.flows.run import FLOWS

    saved = ctx.state.resume
    if text.strip() == "1" and saved:
        ctx.state.resume = None
        ctx.state.flow, ctx.state.step = saved["flow"], saved["step"]
        ctx.state.data, ctx.state.back = dict(saved["data"]), list(saved["back"])
        await FLOWS[saved["flow"]].prompt(ctx, saved["step"])
    elif text.strip() in ("2", "0") or not saved:
        ctx.state.resume = None
        await show(ctx)
    else:
        ctx.say("common.invalid_choice")
        await offer_resume(ctx)
