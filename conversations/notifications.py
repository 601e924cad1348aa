"""Telling citizens what happened to their report.

A report about a person on record is answered only where the record says the person is: a
Telegram chat or WhatsApp number still bound to the person by a code sent to the registered phone
(when the report came from there; WhatsApp only while its 24-hour window is open), else the
person's current registered phone. Never the number a report came
from once it is no longer registered, nor a contact number typed by a caller or an agent — an
outcome may carry a fresh certificate link. A report with no person on record (nothing a link
could open) is answered on the channel it came from.

`CaseNotifier` lives at `app.state.case_notifier`. Every message has an idempotency key
(`case:{ref}:{status}`, `case:{ref}:still:{day}`) so each is sent exactly once, whoever asks
(the console on resolve, the escalation job, or `sweep_resolved` for cases closed by an import).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from conversations.bindings import BindingStore
from conversations.i18n import t
from conversations.ports import CertificatePort
from conversations.whatsapp_window import WhatsAppWindow
from outbox.store import OutboundMessage, Outbox
from registry_client.clock import Clock, utc_now
from registry_client.errors import RecordNotFound, RegistryError
from registry_client.models import CaseNotice, CaseStatus, CorrectionCase, CorrectionQuery
from registry_client.protocol import Registry

log = logging.getLogger(__name__)


class CaseNotifier:
    def __init__(
        self,
        outbox: Outbox,
        registry: Registry,
        *,
        certificates: CertificatePort | None = None,
        sweep_days: int = 3,
        clock: Clock = utc_now,
        bindings: BindingStore | None = None,
        hotline: str = "",
        whatsapp: WhatsAppWindow | None = None,
    ) -> None:
        self.outbox, self.registry, self.certificates = outbox, registry, certificates
        self.bindings = bindings
        self.whatsapp = whatsapp  # None: WhatsApp users are told by SMS
        self.hotline = hotline
        self.sweep_days, self.clock = sweep_days, clock

    async def _route(self, case: CorrectionCase) -> tuple[str, str, bool] | None:
        """(outbox channel, address) where the citizen of this report is told, and whether that is
        an SMS because WhatsApp's 24-hour window is closed (conversations.whatsapp_window)."""
        if case.person_id is None:
            return await self._reporting_address(case)
        try:
            person = await self.registry.get_person(case.person_id)
        except RecordNotFound:
            return None
        phone = person.registered_phone
        if case.channel in ("telegram", "whatsapp") and case.channel_address and self.bindings is not None:
            chats = await self.bindings.addresses_for_person(person.id, case.channel, registered_phone=phone)
            if case.channel_address in chats:
                if case.channel == "telegram" or await self._window_open(case.channel_address):
                    return case.channel, case.channel_address, False
                if phone:
                    return "sms", phone, True
        if phone:
            return "sms", phone, False
        return None

    async def _window_open(self, address: str) -> bool:
        return self.whatsapp is not None and await self.whatsapp.is_open(address)

    async def _reporting_address(self, case: CorrectionCase) -> tuple[str, str, bool] | None:
        """A report with no person on record: back where it came from (it holds no link)."""
        if case.channel == "whatsapp" and case.channel_address:
            if await self._window_open(case.channel_address):
                return "whatsapp", case.channel_address, False
            return "sms", case.channel_address, True  # a WhatsApp address is a phone number
        if case.channel in ("sms", "ussd") and case.channel_address:
            return "sms", case.channel_address, False
        if case.channel == "telegram" and case.channel_address:
            return "telegram", case.channel_address, False
        if case.contact_phone:
            return "sms", case.contact_phone, False
        return None

    def _count(self, case: CorrectionCase, target: tuple[str, str, bool], kind: str) -> None:
        if case.channel == "whatsapp" and (target[0] == "whatsapp" or target[2]):
            WhatsAppWindow.counted(kind, fell_back=target[2])

    async def notify_resolved(self, case: CorrectionCase, certificate_link: str | None = None) -> bool:
        """Enqueues the outcome once per case and status. True when a message was added now."""
        if case.is_open:
            return False
        target = await self._route(case)
        if target is None:
            log.warning("case %s resolved but no channel to tell the citizen", case.ref)
            return False
        if case.status == CaseStatus.APPROVED:
            template = "sms.case_approved_link" if certificate_link else "sms.case_approved"
        else:
            template = "sms.case_rejected"
        if case.person_id is None:
            certificate_link = None  # a link opens a person's record: never to an unproven address
            if case.status == CaseStatus.APPROVED:
                template = "sms.case_approved"
        params = {"ref": case.ref, "note": case.resolution_note or "-", "link": certificate_link or ""}
        added = await self.outbox.put(
            OutboundMessage(
                channel=target[0],
                address=target[1],
                kind="notification",
                template=template,
                params=params,
                language=case.language or "vi",
                idempotency_key=f"case:{case.ref}:{case.status.value}",
            )
        )
        if added is not None:
            self._count(case, target, "report_outcome")
            await self._record_notice(case, target[:2], template, params)
        return added is not None

    async def _record_notice(
        self, case: CorrectionCase, target: tuple[str, str], template: str, params: dict[str, str]
    ) -> None:
        """Lets the registry keep what the citizen was told, and when (a FHIR registry: a
        Communication about the report's Task). Best effort: the message is in the outbox already."""
        record = getattr(self.registry, "record_notice", None)
        if record is None:
            return
        approved = case.status == CaseStatus.APPROVED
        topics: tuple[str, ...] = ("report-approved",) if approved else ("report-rejected",)
        if params.get("link"):
            topics += ("certificate-reissued",)
        shown = {**params, "link": "[certificate link]", "hotline": self.hotline}
        notice = CaseNotice(
            ref=case.ref,
            person_id=case.person_id,
            channel=target[0],
            address=target[1],
            text=t(case.language or "vi", template, **shown),
            topics=topics,
            at=self.clock(),
        )
        try:
            await record(notice)
        except RegistryError as exc:
            log.warning("case %s: the registry did not keep what the citizen was told (%s)", case.ref, exc)

    async def notify_still_handling(self, case: CorrectionCase, handler_name: str) -> bool:
        """An overdue case: "still being handled by …", at most once per case per day."""
        if not case.is_open:
            return False
        target = await self._route(case)
        if target is None:
            return False
        day = self.clock().date().isoformat()
        added = await self.outbox.put(
            OutboundMessage(
                channel=target[0],
                address=target[1],
                kind="notification",
                template="sms.case_still_handling",
                params={"ref": case.ref, "handler": handler_name},
                language=case.language or "vi",
                idempotency_key=f"case:{case.ref}:still:{day}",
            )
        )
        if added is not None:
            self._count(case, target, "report_still_handling")
        return added is not None

    async def sweep_resolved(self) -> int:
        """Background tick: tells the citizens of cases resolved in the last days that nobody told
        yet (a dose import closes cases without notifying). Returns how many were told now."""
        since = self.clock() - timedelta(days=self.sweep_days)
        cases = await self.registry.list_corrections(
            CorrectionQuery(
                statuses=frozenset({CaseStatus.APPROVED, CaseStatus.REJECTED}),
                resolved_since=since,
                limit=500,
            )
        )
        told = 0
        for case in cases:
            link = None
            if case.status == CaseStatus.APPROVED and case.person_id and self.certificates is not None:
                link = self.certificates.make_link(case.person_id, case.language)
            if await self.notify_resolved(case, link):
                told += 1
        return told
