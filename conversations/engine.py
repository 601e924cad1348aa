"""The conversation engine: one Inbound and the session state in, a Turn out. No channel I/O.

Order of interpretation: a shared phone (Telegram), media, a channel command, then text:
`98` (next page), a resumption answer, an SMS keyword, an answer to the current flow step
(`0` = back), a bare one-time code, and finally a main-menu choice.
"""

from __future__ import annotations

import logging

from conversations.context import Context
from conversations.flows import attach, check_report, hotline, language, login, menu, verify_code
from conversations.flows.run import FLOWS, with_person
from conversations.keywords import parse_keyword
from conversations.model import Channel, Option, Reply
from conversations.rendering import MORE_KEY, fits, merge, paginate
from conversations.state import Page
from conversations.text import strip_diacritics
from registry_client.errors import RegistryUnavailable

log = logging.getLogger(__name__)


class Engine:
    async def run(self, ctx: Context) -> None:
        """Fills ctx.turn (and ctx.state, ctx.effects, ctx.audits). Never raises for user input;
        a registry outage or a bug becomes a friendly reply and the flow is reset."""
        try:
            await self._dispatch(ctx)
        except RegistryUnavailable:
            self._fail(ctx, "common.registry_down")
        except Exception:
            log.exception("conversation engine failed on %s input", ctx.channel.value)
            self._fail(ctx, "common.error")
        if not ctx.turn.replies:
            await menu.show(ctx)
        self._fit(ctx)
        ctx.turn.language = ctx.state.language

    @staticmethod
    def _fail(ctx: Context, key: str) -> None:
        ctx.turn.replies.clear()
        ctx.turn.outbound.clear()
        ctx.effects.clear()
        ctx.state.clear_flow()
        ctx.say(key)
        ctx.finish()

    async def _dispatch(self, ctx: Context) -> None:
        inbound = ctx.inbound
        if inbound.shared_phone:
            await login.begin_by_phone(ctx, inbound.shared_phone)
        elif inbound.media or inbound.rejected_media:
            await attach.handle_media(ctx)
        elif inbound.command:
            await self.command(ctx, inbound.command, inbound.argument)
        else:
            await self._text(ctx, (inbound.choice or inbound.text or "").strip())

    async def _text(self, ctx: Context, text: str) -> None:
        state = ctx.state
        if text == MORE_KEY and state.pages:
            page = state.pages.pop(0)
            options = tuple(Option(k, v) for k, v in page.options)
            # `98` on the last page: say so, with the page's options (the caller stays where they were)
            ctx.turn.replies.append(Reply(ctx.t("common.no_more") if page.shown else page.text, options))
            ctx.turn.end = page.end
            if not state.pages and not page.end:
                page.shown = True
                state.pages = [page]  # kept until any other input, so `98` again is understood
            return
        if text == MORE_KEY and state.step == "done":  # `98` after a one-page answer
            ctx.say("common.no_more")
            ctx.finish()
            return
        state.pages = []
        if state.flow == "resume":
            await menu.handle(ctx, "ask", text)
            return
        if not ctx.channel.keypad and (command := parse_keyword(text)) is not None:
            if command.name == "help" and command.language is not None:
                ctx.state.clear_flow()
                ctx.state.resume = None
                menu.help_text(ctx, language=command.language)  # HELP answers in English, HD in Vietnamese
                return
            await self.command(ctx, command.name, command.argument)
            return
        if state.flow is not None and state.flow in FLOWS and state.step is not None:
            if text == "0":
                await self._back(ctx)
            else:
                await FLOWS[state.flow].handle(ctx, state.step, text)
            return
        after_answer = state.step == "done"
        state.clear_flow()
        if after_answer and text == "0":
            await menu.show(ctx)
            return
        if not text:
            if ctx.channel == Channel.SMS:
                menu.help_text(ctx)
            else:
                await (menu.offer_resume(ctx) if state.resume else menu.show(ctx))
            return
        state.resume = None
        if login.answers_code_anywhere(ctx, text) and ctx.code_pending():
            await login.enter_code(ctx, text)
            return
        await menu.choose(ctx, text)

    async def _back(self, ctx: Context) -> None:
        state = ctx.state
        if state.back and state.flow is not None:
            state.step = state.back.pop()
            await FLOWS[state.flow].prompt(ctx, state.step)
        else:
            await menu.show(ctx)

    async def command(self, ctx: Context, name: str, argument: str | None) -> None:
        """A channel command by neutral name (SMS keyword, Telegram slash command)."""
        ctx.state.clear_flow()
        ctx.state.resume = None
        if name == "start":
            ctx.say("welcome")
            await menu.show(ctx)
        elif name == "help":
            menu.help_text(ctx)
        elif name == "menu":
            await menu.show(ctx)
        elif name == "login":
            await login.begin_with_argument(ctx, argument)
        elif name in ("status", "certificate", "report", "code"):
            await with_person(ctx, name)
        elif name == "check":
            await check_report.begin(ctx, argument)
        elif name == "verify":
            await verify_code.begin(ctx, argument)
        elif name == "language":
            await language.begin(ctx)
        elif name in ("lang_vi", "lang_en"):
            await language.set_language(ctx, name[-2:])
        elif name == "logout":
            await self._logout(ctx)
        elif name == "hotline":
            hotline.show(ctx)
        else:
            menu.help_text(ctx)

    async def _logout(self, ctx: Context) -> None:
        bindings = ctx.services.bindings
        person_ids = await ctx.bound_persons()

        for person_id in person_ids:
            ctx.audit("login.logout", person_id)
        ctx.effect(bindings.unbind_effect(ctx.channel.value, ctx.address))
        if ctx.caller_phone is not None:  # DX/LOGOUT: everything this phone proved ends, on every channel
            ctx.effect(bindings.logout_phone_effect(ctx.caller_phone))
        ctx.state.person_id = None
        ctx.note_bound([])
        ctx.say("logout.done" if ctx.channel == Channel.TELEGRAM else "logout.done_sms")

    # -- fitting the answer into the channel ------------------------------------------------------
    def _fit(self, ctx: Context) -> None:
        """SMS, USSD and WhatsApp get one text per turn within their budget; a longer one is
        paginated (98)."""
        if ctx.channel in (Channel.TELEGRAM, Channel.VOICE):  # no screen budget: read or shown whole
            return
        reply = merge(ctx.turn.replies)
        strip = ctx.config.strip_diacritics and ctx.channel != Channel.WHATSAPP  # WhatsApp keeps them
        if strip:  # once here rather than in every measurement below
            reply = Reply(
                strip_diacritics(reply.text),
                tuple(Option(o.key, strip_diacritics(o.label)) for o in reply.options),
                reply.certificate,
                reply.ask_contact,
            )
        ctx.turn.replies = [reply]
        if fits(ctx.channel, reply, ctx.turn.end, strip=False):
            return
        more = Option(MORE_KEY, ctx.t("common.more"))
        if strip:
            more = Option(MORE_KEY, strip_diacritics(more.label))
        pages = paginate(reply.text, reply.options, more, lambda r: fits(ctx.channel, r, False, strip=False))
        ctx.turn.replies = [pages[0]]
        ctx.state.pages = [Page(p.text, [(o.key, o.label) for o in p.options]) for p in pages[1:]]
        if ctx.turn.end and ctx.state.pages:
            ctx.turn.end = False  # the session ends with the last page
            ctx.state.pages[-1].end = True
