"""SMS providers: the HTTP APIs the ``sms`` channel sends through and hears back from.

A provider turns one text into one HTTP request and the answer into a
:class:`~crmkit.channels.SendResult`, and reads the provider's callbacks (inbound messages,
delivery reports) after checking they are genuine. :class:`crmkit_sms.channel.SmsChannel` owns
one provider per CRM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
import httpx
from crmkit.channels import DeliveryReceipt, InboundMessage, SendResult


@attrs.frozen
class Outcome:
    """What a send came to, and whether the number must be suppressed because of it (the
    provider reported the recipient opted out, say)."""

    result: SendResult
    suppress: str | None = None  # a crmkit suppression reason ("stop" …)


@attrs.frozen
class Callback:
    """A provider's callback as it arrived: the URL it was sent to, its headers and its
    parameters (form fields in order, repeats kept, or a parsed JSON body)."""

    url: str
    headers: Mapping[str, str]
    params: Sequence[tuple[str, str]] = ()
    json: Any = None
    body: bytes = b""

    def form(self) -> dict[str, str]:
        return dict(self.params)


class Provider(Protocol):
    name: str

    def send(self, to: str, body: str, *, message_id: str, idempotency_key: str) -> Outcome: ...

    def authentic(self, callback: Callback) -> bool:
        """Whether the callback comes from the provider (its signature or shared secret)."""
        ...

    def inbound(self, payload: Any) -> list[tuple[InboundMessage, str | None]]:
        """The messages of an inbound webhook, each with the number of ours it was sent to."""
        ...

    def parse_inbound(self, payload: Any) -> list[InboundMessage]: ...

    def parse_callback(self, payload: Any) -> list[DeliveryReceipt]: ...

    def suppressions(self, payload: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(number, reason)`` pairs a status callback says to suppress."""
        ...


def failed_transport(provider: str, exc: httpx.HTTPError) -> Outcome:
    """A request that never got an answer is transient: the provider may be down, or slow."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Outcome(SendResult.transient(f"{provider} {kind}: {type(exc).__name__}: {exc}"))


def transient_status(status: int) -> bool:
    """Rate limits and server errors pass; anything else the provider refused stays refused."""
    return status == 429 or status >= 500
