"""Mail that comes in: replies, new enquiries, bounces, complaints and mailto unsubscribes.

:func:`receive` handles one raw message, whoever delivered it — the SMTP listener below
(``crmkit email listen``) or an MTA piping into ``crmkit email receive``:

* a DSN or ARF report → delivery receipts (:mod:`crmkit_email.bounces`): hard bounces and
  complaints put the address on the suppression list;
* a message to ``unsubscribe_address`` carrying a valid token → an unsubscribe;
* anything else → an ``email.received`` activity on the contact with the sender's address, or,
  for an unknown sender, on a new lead created through the intake pipeline
  (``source="email"``) — unless the message is automatic (auto-replies, list mail, mailer
  daemons), which never creates a lead. The activity's external id is the Message-ID, so a
  message delivered twice is logged once.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import attrs
from crmkit.channels import InboundMessage
from crmkit.errors import ValidationFailed

from crmkit_email import bounces
from crmkit_email.channel import NAME, EmailChannel
from crmkit_email.mime import html_to_text
from crmkit_email.unsubscribe import find_token, read_token, unsubscribe_message

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from crmkit.app import CRM

log = logging.getLogger(__name__)

#: Longest body kept on the activity; the rest of a long thread is quoted history.
MAX_TEXT = 20_000
#: The intake's external-id system for leads created by e-mail.
EXTERNAL_ID_SYSTEM = "email-message"


@attrs.frozen
class Outcome:
    """What :func:`receive` did: ``receipts``, ``unsubscribed``, ``activity`` (a known
    sender), ``lead`` (a new contact) or ``ignored`` (with ``detail`` saying why)."""

    kind: str
    contact_id: str | None = None
    activity_id: str | None = None
    receipts: int = 0
    detail: str = ""


def parse(raw: bytes | str) -> EmailMessage:
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def message_id_of(msg: EmailMessage, raw: bytes | str) -> str:
    """The Message-ID, or (a message without one) a digest of its bytes: stable across
    redeliveries either way."""
    value = " ".join(str(msg.get("Message-ID", "")).split())
    if value:
        return value[:255]
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def text_of(msg: EmailMessage) -> str:
    """The plain-text body, or the HTML one as text when there is no (non-blank) plain one."""
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        if part is None:
            continue
        try:
            content = str(part.get_content())
        except (LookupError, ValueError):  # an unknown charset: keep what decodes
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        text = html_to_text(content) if kind == "html" else content.replace("\r\n", "\n")
        if text.strip():
            return text
    return ""


def is_automatic(msg: EmailMessage) -> bool:
    """Sent by software rather than a person (RFC 3834 Auto-Submitted, list and bulk mail,
    mailer daemons)."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    local = parseaddr(str(msg.get("From", "")))[1].partition("@")[0].lower()
    return (auto != "no" or precedence in ("bulk", "junk", "list") or msg.get("List-Id") is not None
            or local in ("mailer-daemon", "postmaster", "no-reply", "noreply"))


def to_inbound(raw: bytes | str, received_at: datetime | None = None) -> InboundMessage:
    msg = parse(raw)
    try:
        sent_at = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        sent_at = None
    return InboundMessage(
        channel=NAME, sender=parseaddr(str(msg.get("From", "")))[1].strip().lower(), body=text_of(msg)[:MAX_TEXT],
        external_id=message_id_of(msg, raw), subject=str(msg.get("Subject", "")) or None,
        received_at=sent_at if sent_at is not None and sent_at.tzinfo is not None else received_at or datetime.now(UTC),
    )


def receive(crm: CRM, raw: bytes | str, recipients: Iterable[str] = ()) -> Outcome:
    """Handle one inbound message (see the module's docstring)."""
    msg = parse(raw)
    if bounces.is_report(bounces.parse_message(raw)):
        count = crm.messages.handle_callback(NAME, {"message": raw})
        return Outcome("receipts", receipts=count, detail="" if count else "a report about no message sent from here")
    settings = EmailChannel.for_crm(crm).settings
    to = {a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("To", [])])} | {r.lower() for r in recipients}
    if settings.unsubscribe_address and settings.unsubscribe_address.lower() in to:
        token = find_token(str(msg.get("Subject", "")))
        message_id = read_token(settings.unsubscribe_secret, token) if token else None
        if message_id is None:
            return Outcome("ignored", detail="unsubscribe request without a valid token")
        done = unsubscribe_message(crm, message_id, via="mailto")
        return Outcome("unsubscribed" if done else "ignored", detail="" if done else "no such message")

    inbound = to_inbound(raw)
    if not inbound.sender:
        return Outcome("ignored", detail="no sender address")
    kind, contact = "activity", crm.contacts.find_by_email(inbound.sender)
    if contact is None and is_automatic(msg):
        # Out-of-office notes, non-standard bounces, list robots: not people asking for anything.
        return Outcome("ignored", detail="an automatic message from an unknown sender")
    if contact is None:
        name = parseaddr(str(msg.get("From", "")))[0].strip()
        try:
            result = crm.intake.submit({"email": inbound.sender, **({"name": name} if name else {})}, source="email",
                                       external_ids={EXTERNAL_ID_SYSTEM: inbound.external_id})
        except ValidationFailed as exc:
            return Outcome("ignored", detail=f"sender not accepted as a lead: {'; '.join(i.message for i in exc.issues)}")
        kind, contact = "lead", result.contact
        assert contact is not None
    activity = crm.activities.log({
        "kind": "email.received", "contact_id": contact.id, "channel": NAME, "direction": "inbound",
        "subject": (inbound.subject or "")[:500] or None, "external_id": inbound.external_id, "occurred_at": inbound.received_at,
        "payload": {"from": inbound.sender, "to": sorted(to), "text": inbound.body,
                    "attachments": [p.get_filename() for p in msg.iter_attachments() if p.get_filename()]},
    })
    return Outcome(kind, contact_id=contact.id, activity_id=activity.id)


class InboundHandler:
    """The aiosmtpd handler: accepts every recipient and hands each message to
    :func:`receive` in a thread (the database calls block). Messages are processed one at a
    time, so two deliveries of one message cannot both create a lead. A failure answers
    451, so the sending server retries later instead of the message being lost."""

    def __init__(self, crm: CRM):
        self.crm = crm
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def _receive(self, raw: bytes, recipients: list[str]) -> Outcome:
        with self._lock:
            return receive(self.crm, raw, recipients)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        raw = envelope.original_content or envelope.content
        try:
            outcome = await asyncio.to_thread(self._receive, raw, list(envelope.rcpt_tos))
        except Exception:
            log.exception("inbound message from %s could not be processed", envelope.mail_from)
            return "451 4.3.0 Temporary failure, please try again later"
        self.outcomes.append(outcome)
        log.info("inbound message from %s: %s %s", envelope.mail_from, outcome.kind, outcome.detail)
        return "250 2.0.0 Message accepted"


def listener(crm: CRM, host: str, port: int) -> Controller:
    """An SMTP server for inbound mail (not started: call ``start()`` / ``stop()``)."""
    from aiosmtpd.controller import Controller

    # decode_data=False keeps the bytes exactly as sent; SMTPUTF8 for international addresses.
    return Controller(InboundHandler(crm), hostname=host, port=port, decode_data=False, enable_SMTPUTF8=True)
