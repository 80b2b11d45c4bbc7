"""What the webhooks service returns: subscriptions, deliveries, and the payload it sends."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import attrs

from crmkit.domain import Event

#: Delivery states. ``pending`` waits for its (next) attempt; ``delivered`` got a 2xx;
#: ``failed`` gave up (after the last retry, or a 410 that disabled the subscription).
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Subscribe to every event type.
ALL_EVENTS = "*"


@attrs.frozen(kw_only=True)
class Subscription:
    """A receiver URL and the event types it gets. The secret itself is never part of it:
    ``secret_source`` says where it comes from (``generated`` or ``env:VAR``)."""

    id: str
    url: str
    events: list[str]
    secret_source: str
    active: bool
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Subscription:
        return cls(id=row.id, url=row.url, events=list(row.events), secret_source=f"env:{row.secret_env}" if row.secret_env else "generated",
                   active=bool(row.active), created_at=row.created_at, disabled_at=row.disabled_at, disabled_reason=row.disabled_reason)

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.events or event_type in self.events


@attrs.frozen(kw_only=True)
class NewSubscription:
    """What :meth:`Webhooks.add` returns: the subscription and, when crmkit generated the
    secret, the secret — the only time it is shown."""

    subscription: Subscription
    secret: str | None


@attrs.frozen(kw_only=True)
class Delivery:
    """One event for one subscription, and how its attempts went."""

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    response_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(**{field.name: getattr(row, field.name) for field in attrs.fields(cls)})


@attrs.define
class DeliveryReport:
    """What one run of the delivery runner did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: list[str] = attrs.field(factory=list)  # subscriptions disabled by a 410


def payload_of(event: Event) -> dict[str, Any]:
    """The JSON document a receiver gets. ``id`` is the event's id, the same on every retry
    and redelivery, so receivers deduplicate on it."""
    return {"id": event.id, "type": event.type, "occurred_at": event.occurred_at.isoformat(), "subject_id": event.subject_id, "data": event.data}


def body_of(payload: dict[str, Any]) -> bytes:
    """The request body: compact JSON with sorted keys, so the bytes are the same on every
    attempt whatever order the database returns the stored payload's keys in."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
