"""What a channel provider implements, and the values that cross the boundary.

A channel is any object with a ``name``, ``capabilities`` and the methods of :class:`Channel`;
crmkit never subclasses or wraps it. ``send`` is called outside any database transaction, at
least once per message (after a crash it may be called again for the same message: providers
that support it should pass ``message.idempotency_key`` on so the recipient gets one copy).

Exactly once, as far as the wire allows: a provider whose protocol has a last, irrevocable step
(SMTP's final ``.`` after DATA) calls ``message.hand_over()`` right before it. crmkit then
records, durably, that the message is being handed over. A crash before that point leaves a
message that certainly did not leave (the server discards a transaction without its final
step), so it is resent freely; a crash after it leaves a message whose fate is unknown, which
is resent too but counted in the message's ``ambiguous`` column (the recipient may hold two
copies, recognisable by their identical Message-ID). When ``hand_over()`` returns False
another worker took the message over: the provider must abandon the send.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
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
    #: The channel carries HTML bodies (e-mail). A body template that looks like HTML is then
    #: rendered with autoescaping, and the message is marked ``html``; on other channels every
    #: body is text.
    html: bool = False


def _proceed() -> bool:
    return True


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
    #: The body is HTML (rendered with autoescaping); False: plain text; None: not recorded
    #: (messages queued before crmkit recorded it), the provider may guess.
    html: bool | None = False
    #: Call right before the irrevocable step of the hand-over (see the module docstring);
    #: returns False when the provider must abandon the send.
    hand_over: Callable[[], bool] = attrs.field(default=_proceed, eq=False, repr=False)


class SendStatus(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # try again later (timeouts, rate limits, 5xx)
    PERMANENT = "permanent"  # never retry (invalid address, rejected content)
    #: The message was handed over but the answer never came (connection lost after SMTP's
    #: final "."): it may have arrived. Retried like a transient failure and counted as ambiguous.
    UNKNOWN = "unknown"


@attrs.frozen
class SendResult:
    """The outcome of :meth:`Channel.send`: a provider message id, or a failure that is
    transient (retried with backoff), permanent (dead-lettered at once) or of unknown outcome
    (retried, and the message counted as ambiguous)."""

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

    @classmethod
    def unknown(cls, error: str) -> SendResult:
        return cls(SendStatus.UNKNOWN, error=error)


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


class LocalSink(Protocol):
    """An in-process stand-in for a channel's provider (an SMTP server on 127.0.0.1 …)."""

    #: Where it listens, for people ("SMTP on 127.0.0.1:40123").
    description: str

    def delivered(self) -> int:
        """How many messages it has accepted so far."""
        ...


@runtime_checkable
class LocalSinkProvider(Protocol):
    """Optional for a channel: it can start a local stand-in for its provider and send there.
    ``crmkit demo`` uses it to send its welcome messages for real without reaching anyone; the
    channel must go back to its configured provider when the context exits."""

    def local_sink(self) -> AbstractContextManager[LocalSink]:
        """Start the stand-in and point this channel at it for the ``with`` block."""
        ...
