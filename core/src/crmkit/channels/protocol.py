"""What a channel provider implements, and the values that cross the boundary.

A channel is any object with a ``name``, ``capabilities`` and the methods of :class:`Channel`;
crmkit never subclasses or wraps it. ``send`` is called outside any database transaction, at
least once per message (after a crash it may be called again for the same message: providers
that support it should pass ``message.idempotency_key`` on so the recipient gets one copy).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from crmkit.domain import Contact


@attrs.frozen
class Capabilities:
    """What a channel can do; the dispatcher checks messages against it before queueing."""

    max_length: int | None = None  # longest body the provider accepts, in characters
    subject: bool = False  # the channel carries a subject line (e-mail)
    templates: bool = True  # crmkit may render templates for it (False: raw bodies only)
    delivery_receipts: bool = False  # the provider reports delivery through parse_callback


@attrs.frozen(kw_only=True)
class OutboundMessage:
    """One rendered message, ready for a provider."""

    id: str
    channel: str
    contact_id: str
    to: str  # the address on this channel (e-mail address, E.164 number …)
    body: str
    purpose: str
    idempotency_key: str
    subject: str | None = None
    attempt: int = 1


class SendStatus(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # try again later (timeouts, rate limits, 5xx)
    PERMANENT = "permanent"  # never retry (invalid address, rejected content)


@attrs.frozen
class SendResult:
    """The outcome of :meth:`Channel.send`: a provider message id, or a failure that is either
    transient (retried with backoff) or permanent (dead-lettered at once)."""

    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None

    @classmethod
    def sent(cls, provider_message_id: str) -> SendResult:
        return cls(SendStatus.SENT, provider_message_id=provider_message_id)

    @classmethod
    def transient(cls, error: str) -> SendResult:
        return cls(SendStatus.TRANSIENT, error=error)

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls(SendStatus.PERMANENT, error=error)


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    SOFT_BOUNCE = "soft_bounce"
    HARD_BOUNCE = "hard_bounce"  # the address is suppressed
    COMPLAINT = "complaint"  # the address is suppressed
    UNSUBSCRIBED = "unsubscribed"  # the address is suppressed for non-transactional purposes


@attrs.frozen(kw_only=True)
class DeliveryReceipt:
    """A provider's report about a message it accepted earlier."""

    provider_message_id: str
    status: ReceiptStatus
    occurred_at: datetime | None = None
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class InboundMessage:
    """A message a person sent to us (a reply, an SMS, "STOP")."""

    channel: str
    sender: str  # the sender's address on the channel
    body: str
    external_id: str  # the provider's id, for idempotent logging
    subject: str | None = None
    received_at: datetime | None = None
    is_stop: bool = False  # an opt-out keyword: the sender is suppressed on this channel


@runtime_checkable
class Channel(Protocol):
    """A messaging provider. ``name`` is a lower-case identifier (``email``, ``sms``); it names
    activities (``<name>.sent``) and consent entries."""

    name: str
    capabilities: Capabilities

    def address_for(self, contact: Contact) -> str | None:
        """The contact's address on this channel, or None when the contact has none."""
        ...

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand the message to the provider. Raising counts as a transient failure."""
        ...

    def parse_inbound(self, payload: Mapping[str, Any]) -> list[InboundMessage]:
        """Turn a provider's inbound webhook payload into messages (for later plugins)."""
        ...

    def parse_callback(self, payload: Mapping[str, Any]) -> list[DeliveryReceipt]:
        """Turn a provider's status callback payload into delivery receipts."""
        ...
