"""What the provider's webhooks do once they are known to be genuine.

Every inbound text is logged once as an ``sms.received`` activity keyed by the provider's
message id, so a redelivered webhook changes nothing. Then:

- STOP and its synonyms suppress the number on the ``sms`` channel (every purpose) and confirm
  once: a number that had already stopped gets no second confirmation.
- START and its synonyms, from a number that had stopped, lift the STOP and confirm.
- HELP and INFO are answered with the sender's identity, also for numbers crmkit does not know.
- Anything else lands on the contact with that phone number, or — for an unknown number — on a
  new lead created through the intake (``external_ids={"sms-message": <id>}``, so even a
  redelivery that races the activity finds the lead instead of creating another).

Keyword replies go straight to the provider, not through ``crm.messages``: the veto chain would
rightly stop them (the number was just suppressed, or has no contact), and carriers require
them. They are sent after the keyword's transaction commits, at most once, and logged as an
``sms.sent`` (or ``sms.failed``) activity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from crmkit import domain
from crmkit.channels import InboundMessage, SendStatus
from crmkit.domain.values import Direction, new_id, utcnow
from crmkit.errors import ValidationFailed

from crmkit_sms.channel import NAME, SmsChannel
from crmkit_sms.keywords import LIFTED_BY_START, Keyword, classify, reply_text

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

EXTERNAL_ID_SYSTEM = "sms-message"


@attrs.frozen
class Received:
    """What became of one inbound text."""

    message_id: str
    action: str  # duplicate, stop, start, help, received (a known sender) or lead (a new one)
    contact_id: str | None = None
    replied: bool = False


def handle_inbound(crm: CRM, provider: str, payload: Any) -> list[Received]:
    """Receive every message of a provider's inbound webhook (``payload`` as parsed)."""
    messages = SmsChannel.for_crm(crm).provider_named(provider).inbound(payload)
    return [receive(crm, message, recipient=recipient) for message, recipient in messages]


def handle_status(crm: CRM, provider: str, payload: Mapping[str, Any]) -> int:
    """Record a delivery report's receipts (activities, message status, bounce suppression)
    and any suppression the provider's error code calls for. Returns the receipts recorded."""
    source = SmsChannel.for_crm(crm).provider_named(provider)
    recorded = crm.messages.handle_callback(NAME, payload)
    for number, reason in source.suppressions(payload):
        crm.messages.suppress(NAME, number, reason, detail={"provider": provider, "callback": dict(payload)})
    return recorded


def receive(crm: CRM, message: InboundMessage, *, recipient: str | None = None) -> Received:
    keyword = classify(message.body)
    with crm.read() as uow:
        if _logged(uow, message.external_id):
            return Received(message.external_id, "duplicate")
        contact = _contact_with_phone(uow, message.sender)
        stopped = bool(_reasons(crm, uow, message.sender) & set(LIFTED_BY_START))
    if keyword is None or (keyword is Keyword.START and not stopped):
        return _conversation(crm, message, contact, recipient)
    return _keyword(crm, keyword, message, contact, recipient)


def _conversation(crm: CRM, message: InboundMessage, contact: domain.Contact | None, recipient: str | None) -> Received:
    created = False
    if contact is None:
        try:
            result = crm.intake.submit({"phone": message.sender}, source="sms", on_duplicate="skip",
                                       external_ids={EXTERNAL_ID_SYSTEM: message.external_id})
        except ValidationFailed:
            result = None  # a short code or sender id: no phone number to make a lead of
        if result is not None:
            contact, created = result.contact, result.record.outcome == "created"
    with crm.uow() as uow:
        logged = _log_received(crm, uow, message, contact, recipient, None)
    if not logged:
        return Received(message.external_id, "duplicate", contact.id if contact else None)
    return Received(message.external_id, "lead" if created else "received", contact.id if contact else None)


def _keyword(crm: CRM, keyword: Keyword, message: InboundMessage, contact: domain.Contact | None, recipient: str | None) -> Received:
    channel = SmsChannel.for_crm(crm)
    contact_id = contact.id if contact else None
    template = None
    with crm.uow() as uow:
        if not _log_received(crm, uow, message, contact, recipient, keyword):
            return Received(message.external_id, "duplicate", contact_id)
        if keyword is Keyword.STOP:
            if "stop" not in _reasons(crm, uow, message.sender):
                template = channel.settings.stop_reply
            crm.messages.suppress_in(uow, NAME, message.sender, "stop", contact_id=contact_id,
                                     detail={"message_id": message.external_id, "keyword": message.body.strip()})
        elif keyword is Keyword.START:
            s = crm.messages.table("message_suppressions")
            lifted = uow.connection.execute(  # type: ignore[union-attr]
                sa.delete(s).where(s.c.channel == NAME, s.c.address == message.sender, s.c.reason.in_(LIFTED_BY_START))
            ).rowcount
            template = channel.settings.start_reply if lifted else None
        else:
            template = channel.settings.help_reply
    replied = False
    if template is not None and channel.settings.keyword_replies:
        text = reply_text(template, channel.settings.brand_name, channel.settings.help_contact)
        replied = _reply(crm, channel, message, contact_id, keyword, text)
    return Received(message.external_id, keyword.value, contact_id, replied)


def _reply(crm: CRM, channel: SmsChannel, message: InboundMessage, contact_id: str | None, keyword: Keyword, text: str) -> bool:
    outcome = channel.deliver(message.sender, text, message_id=f"{message.external_id}:reply",
                              idempotency_key=f"sms-reply:{message.external_id}")
    sent = outcome.result.status is SendStatus.SENT
    crm.activities.log({
        "kind": f"{NAME}.sent" if sent else f"{NAME}.failed", "contact_id": contact_id, "channel": NAME,
        "direction": Direction.OUTBOUND.value, "subject": text[:500], "external_id": f"{message.external_id}:reply",
        "payload": {"in_reply_to": message.external_id, "keyword": keyword.value, "to": message.sender,
                    "provider_message_id": outcome.result.provider_message_id, "error": outcome.result.error},
    })
    return sent


def _log_received(crm: CRM, uow: UnitOfWork, message: InboundMessage, contact: domain.Contact | None,
                  recipient: str | None, keyword: Keyword | None) -> bool:
    """Log the text as an activity; False when it was logged already (a redelivery, even one
    racing this one: the activity that won carries another delivery id)."""
    delivery = new_id()
    activity = crm.activities.log_in(uow, {
        "kind": f"{NAME}.received", "contact_id": contact.id if contact else None, "channel": NAME,
        "direction": Direction.INBOUND.value, "subject": message.body[:500] or None, "external_id": message.external_id,
        "occurred_at": message.received_at or utcnow(),
        "payload": {"from": message.sender, "to": recipient, "body": message.body, "keyword": keyword.value if keyword else None,
                    "delivery": delivery},
    })
    return activity.payload.get("delivery") == delivery


def _logged(uow: UnitOfWork, external_id: str) -> bool:
    return uow.activities.first(uow.activities.where(channel=NAME, external_id=external_id)) is not None


def _contact_with_phone(uow: UnitOfWork, number: str) -> domain.Contact | None:
    return uow.contacts.first(uow.contacts.where(phone=number))


def _reasons(crm: CRM, uow: UnitOfWork, number: str) -> set[str]:
    s = crm.messages.table("message_suppressions")
    rows = uow.connection.execute(sa.select(s.c.reason).where(s.c.channel == NAME, s.c.address == number))  # type: ignore[union-attr]
    return set(rows.scalars())
