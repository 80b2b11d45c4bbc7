"""The interaction log (activities), tasks, campaigns and the consent ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmkit.domain import fields as f
from crmkit.domain.values import ConsentStatus, Direction, new_id, utcnow

#: Activity kinds the core knows; plugins may log others (any lower-case dotted word).
ACTIVITY_KINDS = (
    "note", "call", "meeting", "email.sent", "email.opened", "email.clicked", "email.received",
    "email.bounced", "sms.sent", "sms.received", "sms.delivered", "form.submitted",
    "survey.answered", "social.mention", "purchase", "task.completed",
)


@attrs.define(kw_only=True)
class Activity:
    """One interaction, appended and never edited (erasure anonymises it instead)."""

    id: str = attrs.field(factory=new_id)
    kind: str
    contact_id: str | None = None
    deal_id: str | None = None
    organization_id: str | None = None
    channel: str | None = None
    direction: Direction = Direction.INTERNAL
    subject: str | None = None
    occurred_at: datetime = attrs.field(factory=utcnow)
    payload: dict[str, Any] = attrs.field(factory=dict)
    external_id: str | None = None
    created_by: str | None = None
    created_at: datetime = attrs.field(factory=utcnow)

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("kind", kind_name, required=True),
            f.FieldSpec("contact_id", f.text(64)),
            f.FieldSpec("deal_id", f.text(64)),
            f.FieldSpec("organization_id", f.text(64)),
            f.FieldSpec("channel", f.text(64)),
            f.FieldSpec("direction", f.enum_of(Direction)),
            f.FieldSpec("subject", f.text(500)),
            f.FieldSpec("occurred_at", f.datetime_),
            f.FieldSpec("payload", f.mapping),
            f.FieldSpec("external_id", f.text(255)),
        ]


def kind_name(value: Any, field: str) -> str | None:
    from crmkit.errors import ValidationFailed

    result = f.text(64)(value, field)
    if result is None:
        return None
    if not all(part.isidentifier() and part.islower() for part in result.split(".")):
        raise ValidationFailed.single(field, "invalid_kind", f"{result!r} is not a lower-case dotted name such as 'call' or 'email.sent'")
    return result


@attrs.define(kw_only=True)
class Task:
    id: str = attrs.field(factory=new_id)
    title: str
    notes: str | None = None
    due_at: datetime | None = None
    done_at: datetime | None = None
    assignee_id: str | None = None
    contact_id: str | None = None
    deal_id: str | None = None
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @property
    def is_done(self) -> bool:
        return self.done_at is not None

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("title", f.text(255), required=True),
            f.FieldSpec("notes", f.text(10_000)),
            f.FieldSpec("due_at", f.datetime_),
            f.FieldSpec("assignee_id", f.text(64)),
            f.FieldSpec("contact_id", f.text(64)),
            f.FieldSpec("deal_id", f.text(64)),
        ]


@attrs.define(kw_only=True)
class Campaign:
    id: str = attrs.field(factory=new_id)
    name: str
    channel: str | None = None
    spend: Decimal = Decimal(0)
    currency: str = "USD"
    starts_on: date | None = None
    ends_on: date | None = None
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("name", f.text(255), required=True),
            f.FieldSpec("channel", f.text(64)),
            f.FieldSpec("spend", f.money(minimum=0)),
            f.FieldSpec("currency", f.currency),
            f.FieldSpec("starts_on", f.date_),
            f.FieldSpec("ends_on", f.date_),
        ]


@attrs.define(kw_only=True)
class Consent:
    """One entry of the consent ledger. The current state for contact × channel × purpose is the
    most recent entry; entries are never edited, so the history is the evidence."""

    id: str = attrs.field(factory=new_id)
    contact_id: str
    channel: str
    purpose: str
    status: ConsentStatus
    source: str | None = None
    evidence: dict[str, Any] = attrs.field(factory=dict)
    recorded_at: datetime = attrs.field(factory=utcnow)

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("contact_id", f.text(64), required=True),
            f.FieldSpec("channel", f.text(64), required=True),
            f.FieldSpec("purpose", f.text(64), required=True),
            f.FieldSpec("status", f.enum_of(ConsentStatus), required=True),
            f.FieldSpec("source", f.text(255)),
            f.FieldSpec("evidence", f.mapping),
            f.FieldSpec("recorded_at", f.datetime_),
        ]
