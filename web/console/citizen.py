"""Messages from the console to citizens. The wording belongs to the conversation engine's
catalogue: this module only chooses *which* message goes *where*, through the engine's
`CaseNotifier` (`app.state.case_notifier`), the engine's catalogue template `sms.cert_link`, and
the certificate service (`app.state.certificates`).

Every outgoing message passes through one of the methods of `CitizenMessenger` (the certificate
code, `sms.cert_code`, comes from the certificate service's `code_for`).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

from outbox.store import OutboundMessage
from registry_client.identity import mask_phone
from registry_client.models import AuditEntry, CorrectionCase, Person

log = logging.getLogger(__name__)


class NoAddress(Exception):
    """The person has no registered phone / no bound Telegram chat for the chosen channel."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class ServiceMissing(Exception):
    """A collaborator (certificate service, case notifier) is not configured in this process."""


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@dataclass(frozen=True)
class SentLink:
    channel: str
    shown_address: str  # masked phone, or "Telegram"
    count: int


class CitizenMessenger:
    def __init__(self, app_state: Any) -> None:
        self.state = app_state

    # -- collaborators ------------------------------------------------------------------------
    @property
    def certificates(self) -> Any:
        return getattr(self.state, "certificates", None)

    @property
    def notifier(self) -> Any:
        return getattr(self.state, "case_notifier", None)

    async def certificate_link(self, person_id: str, language: str = "vi") -> str | None:
        service = self.certificates
        if service is None:
            return None
        return str(await _maybe_await(service.make_link(person_id, language)))

    async def reissue_certificate(self, person: Person, doses: list[Any]) -> bool:
        """New certificate for the changed doses (the service revokes the old UVCI)."""
        service = self.certificates
        if service is None:
            log.warning("no certificate service: certificate of person %s not reissued", person.id)
            return False
        await _maybe_await(service.issue(person, doses))
        return True

    async def telegram_chats(self, person_id: str, registered_phone: str | None = None) -> list[str]:
        """Chats bound to the person; with `registered_phone`, only those that phone proved."""
        conversations = getattr(self.state, "conversations", None)
        bindings = getattr(conversations, "bindings", None)
        if bindings is None:
            return []
        if registered_phone is None:
            chats = await _maybe_await(bindings.addresses_for_person(person_id, "telegram"))
        else:
            chats = await _maybe_await(
                bindings.addresses_for_person(person_id, "telegram", registered_phone=registered_phone)
            )
        return [str(c) for c in chats or []]

    async def bound_addresses(self, person_id: str, channel: str, registered_phone: str | None) -> list[str]:
        """The person's identities on `channel` (e.g. WhatsApp numbers) that the registered phone proved."""
        bindings = getattr(getattr(self.state, "conversations", None), "bindings", None)
        if bindings is None or registered_phone is None:
            return []
        found = await _maybe_await(
            bindings.addresses_for_person(person_id, channel, registered_phone=registered_phone)
        )
        return [str(a) for a in found or []]

    # -- the three messages ------------------------------------------------------------------
    async def send_certificate_link(
        self, person: Person, channel: str, actor: str, language: str = "vi"
    ) -> SentLink:
        """The person's certificate link to the phone the registry holds (SMS) or to the person's
        bound Telegram chats. Never to an address typed in the console. The text is the engine's
        catalogue entry `sms.cert_link`, rendered by the outbox worker."""
        link = await self.certificate_link(person.id, language)
        if link is None:
            raise ServiceMissing("certificates")
        if channel == "telegram":
            chats = await self.telegram_chats(person.id, person.registered_phone)
            if not chats:
                raise NoAddress("no_telegram")
            addresses, shown = chats, "Telegram"
        else:
            phone = person.registered_phone
            if phone is None:
                raise NoAddress("no_phone")
            addresses, shown = [phone], mask_phone(phone)
        days = getattr(self.state.settings, "cert_link_ttl_days", 7)
        for address in addresses:
            await self.state.outbox.put(
                OutboundMessage(
                    channel=channel,
                    address=address,
                    kind="link",
                    template="sms.cert_link",
                    params={"name": person.full_name, "link": link, "days": days},
                    language=language,
                )
            )
        log.info("certificate link of person %s sent by %s over %s", person.id, actor, channel)
        return SentLink(channel, shown, len(addresses))

    async def send_certificate_code(
        self, person: Person, doses: list[Any], actor: str, language: str = "vi"
    ) -> SentLink:
        """The person's certificate code (issuing the certificate and its code when needed) by SMS
        to the phone the registry holds, never to a dictated number. The text is the engine's
        catalogue entry `sms.cert_code`. Raises the certificate service's CertificateError."""
        service = self.certificates
        if service is None or not hasattr(service, "code_for"):
            raise ServiceMissing("certificates")
        phone = person.registered_phone
        if phone is None:
            raise NoAddress("no_phone")
        code = str(await _maybe_await(service.code_for(person, doses)))
        await self.state.outbox.put(
            OutboundMessage(
                channel="sms",
                address=phone,
                kind="code",
                template="sms.cert_code",
                params={"name": person.full_name, "code": code},
                language=language,
            )
        )
        log.info("certificate code of person %s sent by %s over sms", person.id, actor)
        return SentLink("sms", mask_phone(phone), 1)

    async def renew_code_if_used(
        self, person: Person, doses: list[Any], actor: str, language: str = "vi"
    ) -> bool:
        """After a reissue, a person who had used a certificate code gets the new one by SMS (the
        old code now answers "revoked" at checkpoints)."""
        codes = getattr(self.certificates, "codes", None)
        if codes is None or person.registered_phone is None or not await codes.has_code(person.id):
            return False
        sent = await self.send_certificate_code(person, doses, actor, language)
        await self.state.registry.audit(
            AuditEntry(
                actor,
                "certificate.code_sent",
                person.id,
                f"renewed after a reissue; sms to {sent.shown_address}",
            )
        )
        return True

    async def case_resolved(self, case: CorrectionCase, certificate_link: str | None) -> bool:
        """Tells the citizen the outcome on the channel the report came from (the engine's
        CaseNotifier picks the address and the words; each outcome is sent once)."""
        notifier = self.notifier
        if notifier is None:
            log.warning("no case notifier: the citizen of report %s is not told", case.ref)
            return False
        return bool(await _maybe_await(notifier.notify_resolved(case, certificate_link)))

    async def still_handling(self, case: CorrectionCase, handler_name: str) -> bool:
        """Tells the citizen an overdue report is still being handled, and by whom."""
        notifier = self.notifier
        if notifier is None:
            log.warning("no case notifier: the citizen of overdue report %s is not told", case.ref)
            return False
        return bool(await _maybe_await(notifier.notify_still_handling(case, handler_name)))
