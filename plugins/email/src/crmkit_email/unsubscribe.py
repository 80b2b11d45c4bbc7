"""Signed unsubscribe tokens: ``<message id>.<signature>``.

The token names the crmkit message it came in, so an unsubscribe suppresses exactly the address
that message went to and is recorded against it (a receipt, an activity). The signature is an
HMAC-SHA256 of the message id under ``unsubscribe_secret`` (truncated to 128 bits), so ids
cannot be guessed into unsubscribing someone else. Tokens do not expire: RFC 8058 expects a
one-click link to keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from crmkit.channels import DeliveryReceipt
from crmkit.channels.protocol import ReceiptStatus
from crmkit.errors import NotFound

if TYPE_CHECKING:
    from crmkit.app import CRM

_TOKEN = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9a-f]{32})$")


def _signature(secret: str, message_id: str) -> str:
    return hmac.new(secret.encode(), f"crmkit-email-unsubscribe:{message_id}".encode(), hashlib.sha256).hexdigest()[:32]


def make_token(secret: str, message_id: str) -> str:
    return f"{message_id}.{_signature(secret, message_id)}"


def read_token(secret: str, token: str) -> str | None:
    """The message id a genuine token names, or None (malformed or forged)."""
    match = _TOKEN.match(token.strip())
    if not match or not secret:
        return None
    message_id, signature = match.groups()
    return message_id if hmac.compare_digest(signature, _signature(secret, message_id)) else None


def find_token(text: str) -> str | None:
    """A token anywhere in ``text`` (the subject of a mailto unsubscribe)."""
    match = re.search(r"[A-Za-z0-9_-]{1,64}\.[0-9a-f]{32}", text)
    return match.group(0) if match else None


def unsubscribe_message(crm: CRM, message_id: str, via: str) -> bool:
    """Record an unsubscribe from the recipient of crmkit message ``message_id``: a receipt on
    the message, an ``email.unsubscribed`` activity and an ``unsubscribed`` suppression of the
    address (non-transactional mail stops). Idempotent; False when no such e-mail was sent."""
    try:
        row = crm.messages.get(message_id)
    except NotFound:
        return False  # erased since, or never sent from this CRM
    if row["channel"] != "email" or not row["provider_message_id"]:
        return False
    receipt = DeliveryReceipt(provider_message_id=row["provider_message_id"], status=ReceiptStatus.UNSUBSCRIBED, detail={"via": via})
    return crm.messages.record_receipt("email", receipt)
