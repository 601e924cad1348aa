"""A photo sent during or after a report (MMS, Telegram) is attached to that report."""

from __future__ import annotations

from conversations.context import Context
from conversations.model import Channel
from registry_client.errors import InvalidRequest, RecordNotFound
from registry_client.models import OPEN_STATUSES, CorrectionQuery, NewAttachment


async def _target_ref(ctx: Context) -> str | None:
    if ctx.state.last_ref:
        return ctx.state.last_ref
    bound = await ctx.bound_persons()
    person_id = (
        ctx.state.person_id if ctx.state.person_id in bound else (bound[0] if len(bound) == 1 else None)
    )
    if person_id is None:
        return None
    cases = await ctx.registry.list_corrections(
        CorrectionQuery(statuses=frozenset(OPEN_STATUSES), person_id=person_id, limit=20)
    )
    if not cases:
        return None
    return max(cases, key=lambda c: c.created_at).ref


async def handle_media(ctx: Context) -> None:
    if ctx.inbound.rejected_media and not ctx.inbound.media:
        ctx.say(_rejected_key(ctx), reason=ctx.inbound.rejected_media)
        return
    ref = await _target_ref(ctx)
    if ref is None:
        ctx.say("attach.none")
        return
    try:
        for media in ctx.inbound.media:
            await ctx.registry.add_attachment(
                ref,
                NewAttachment(media.filename, media.content_type, media.size, media.storage_path),
                ctx.actor,
            )
    except (RecordNotFound, InvalidRequest):
        ctx.say("attach.none")
        return
    ctx.audit("case.attach", None, ref)
    ctx.say("attach.ok", ref=ref)
    if ctx.inbound.rejected_media:
        ctx.say(_rejected_key(ctx), reason=ctx.inbound.rejected_media)


def _rejected_key(ctx: Context) -> str:
    """Telegram takes photos only; MMS and the upload page also take PDF scans."""
    return "attach.rejected_photo" if ctx.channel == Channel.TELEGRAM else "attach.rejected"
