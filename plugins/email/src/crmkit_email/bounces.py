"""Bounces and complaints: delivery status notifications (RFC 3464) and abuse reports in the
Abuse Reporting Format (RFC 5965), turned into :class:`~crmkit.channels.DeliveryReceipt` s.

Both are ``multipart/report`` messages that quote the message they are about (whole, as
``message/rfc822``, or its headers, as ``text/rfc822-headers``); its Message-ID is the provider
message id crmkit stored when it sent the message, so the receipt finds its message.

Per recipient of a DSN (``Final-Recipient`` / ``Action`` / ``Status``):

* ``Action: failed`` with a permanent status about the address — ``5.1.x`` (no such user, bad
  domain), ``5.2.1`` (mailbox disabled) or the unspecific ``5.0.0`` — is a **hard bounce**
  (the address is suppressed);
* any other ``failed`` (mailbox full ``5.2.2``, policy/spam blocks ``5.7.x``, ``4.x.x``) is a
  **soft bounce**: the address is fine, this message did not make it;
* ``Action: delivered`` (or ``relayed`` / ``expanded``) is a **delivered** receipt;
* ``Action: delayed`` says the MTA is still trying: no receipt.

An ARF report (``report-type=feedback-report``) of any feedback type except ``not-spam`` is a
**complaint** (the address is suppressed).
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any

from crmkit.channels import DeliveryReceipt
from crmkit.channels.protocol import ReceiptStatus

HARD_STATUSES = ("5.1.", "5.2.1", "5.0.0")


def parse_message(raw: bytes | str | Message) -> Message:
    if isinstance(raw, Message):
        return raw
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def is_report(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report"


def receipts_from(raw: bytes | str | Message) -> list[DeliveryReceipt]:
    """The receipts in a DSN or ARF report; [] for any other message, or a report that does
    not quote a Message-ID (nothing to attach it to)."""
    msg = parse_message(raw)
    if not is_report(msg):
        return []
    report_type = (msg.get_param("report-type") or "").lower()
    original = _original_headers(msg)
    message_id = _normalise_id(original.get("Message-ID") if original is not None else None)
    if message_id is None:
        return []
    if report_type == "delivery-status":
        return _dsn_receipts(msg, message_id)
    if report_type == "feedback-report":
        return _arf_receipts(msg, message_id)
    return []


def _parts(msg: Message) -> list[Message]:
    payload = msg.get_payload()
    return payload if isinstance(payload, list) else []


def _original_headers(report: Message) -> Message | None:
    for part in _parts(report):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
        elif kind in ("text/rfc822-headers", "message/rfc822-headers"):
            return HeaderParser().parsestr(_decoded_text(part))
    return None


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return str(part.get_payload())


def _normalise_id(value: str | None) -> str | None:
    if not value:
        return None
    value = " ".join(str(value).split())
    return value if value.startswith("<") else f"<{value.strip('<>')}>"


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a ``message/delivery-status`` part: the per-message block first,
    then one per recipient. The email package splits them already; a part it left as text
    (some MTAs mislabel it) is split on blank lines."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload
    text = _decoded_text(part).replace("\r\n", "\n")
    return [HeaderParser().parsestr(block) for block in text.split("\n\n") if block.strip()]


def _value(block: Message, name: str) -> str:
    """A DSN field without its type prefix (``rfc822; ada@example.org`` → ``ada@example.org``)."""
    raw = " ".join(str(block.get(name, "")).split())
    return raw.split(";", 1)[1].strip() if ";" in raw else raw


def _dsn_receipts(msg: Message, message_id: str) -> list[DeliveryReceipt]:
    receipts = []
    for part in _parts(msg):
        if part.get_content_type() not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        blocks = _field_blocks(part)
        per_message = blocks[0] if blocks else Message()
        for block in blocks[1:]:
            action = _value(block, "Action").lower()
            status = _value(block, "Status")
            detail: dict[str, Any] = {
                "recipient": _value(block, "Final-Recipient") or _value(block, "Original-Recipient"),
                "action": action, "status": status,
                "diagnostic": _value(block, "Diagnostic-Code") or None,
                "reporting_mta": _value(per_message, "Reporting-MTA") or None,
            }
            if action == "failed":
                kind = ReceiptStatus.HARD_BOUNCE if status.startswith(HARD_STATUSES) else ReceiptStatus.SOFT_BOUNCE
            elif action in ("delivered", "relayed", "expanded"):
                kind = ReceiptStatus.DELIVERED
            else:
                continue  # delayed: the MTA keeps trying
            when = _date(block.get("Last-Attempt-Date")) or _date(per_message.get("Arrival-Date")) or _date(msg.get("Date"))
            receipts.append(DeliveryReceipt(provider_message_id=message_id, status=kind, occurred_at=when,
                                            detail={k: v for k, v in detail.items() if v}))
    return receipts


def _arf_receipts(msg: Message, message_id: str) -> list[DeliveryReceipt]:
    for part in _parts(msg):
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        # The email package parses message/* parts as messages; the report's fields are then
        # the headers of the first one.
        fields = payload[0] if isinstance(payload, list) and payload else HeaderParser().parsestr(_decoded_text(part))
        feedback = _value(fields, "Feedback-Type").lower() or "abuse"
        if feedback == "not-spam":
            return []
        detail = {"feedback_type": feedback, "user_agent": _value(fields, "User-Agent") or None,
                  "recipient": _value(fields, "Original-Rcpt-To") or None, "source_ip": _value(fields, "Source-IP") or None}
        when = _date(fields.get("Arrival-Date") or fields.get("Received-Date")) or _date(msg.get("Date"))
        return [DeliveryReceipt(provider_message_id=message_id, status=ReceiptStatus.COMPLAINT, occurred_at=when,
                                detail={k: v for k, v in detail.items() if v})]
    return []


def _date(value: Any) -> Any:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
