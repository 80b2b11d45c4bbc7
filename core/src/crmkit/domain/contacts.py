"""Contacts and organizations: the people and companies a CRM is about."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import attrs

from crmkit.domain import fields as f
from crmkit.domain.values import Address, Attribution, LifecycleStage, new_id, utcnow

ADDRESS_FIELDS = [
    f.FieldSpec("street", f.text(255)),
    f.FieldSpec("city", f.text(120)),
    f.FieldSpec("region", f.text(120)),
    f.FieldSpec("postcode", f.text(32)),
    f.FieldSpec("country", f.text(2)),
]

ATTRIBUTION_FIELDS = [
    f.FieldSpec("channel", f.text(64)),
    f.FieldSpec("campaign_id", f.text(64)),
    *(f.FieldSpec(name, f.text(255)) for name in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")),
]

READ_ONLY = ("id", "version", "created_at", "updated_at")


@attrs.define(kw_only=True)
class Contact:
    id: str = attrs.field(factory=new_id)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: Address = attrs.field(factory=Address)
    birth_date: date | None = None
    account_number: str | None = None
    job_title: str | None = None
    industry: str | None = None
    location: str | None = None
    lifecycle_stage: LifecycleStage = LifecycleStage.LEAD
    owner_id: str | None = None
    organization_id: str | None = None
    source: Attribution = attrs.field(factory=Attribution)
    score: float = 0.0
    tags: list[str] = attrs.field(factory=list)
    custom: dict[str, Any] = attrs.field(factory=dict)
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @property
    def display_name(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or self.phone or self.id

    @staticmethod
    def field_specs(default_region: str | None = None) -> list[f.FieldSpec]:
        return [
            f.FieldSpec("first_name", f.text(120)),
            f.FieldSpec("last_name", f.text(120)),
            f.FieldSpec("email", f.email),
            f.FieldSpec("phone", f.phone(default_region)),
            f.FieldSpec("address", f.nested(Address, ADDRESS_FIELDS)),
            f.FieldSpec("birth_date", f.date_),
            f.FieldSpec("account_number", f.text(64)),
            f.FieldSpec("job_title", f.text(120)),
            f.FieldSpec("industry", f.text(120)),
            f.FieldSpec("location", f.text(255)),
            f.FieldSpec("lifecycle_stage", f.enum_of(LifecycleStage)),
            f.FieldSpec("owner_id", f.text(64)),
            f.FieldSpec("organization_id", f.text(64)),
            f.FieldSpec("source", f.nested(Attribution, ATTRIBUTION_FIELDS)),
            f.FieldSpec("score", f.number(-1e9, 1e9)),
            f.FieldSpec("tags", f.tags),
            f.FieldSpec("custom", f.custom_values),
        ]


@attrs.define(kw_only=True)
class Organization:
    id: str = attrs.field(factory=new_id)
    name: str
    domain: str | None = None
    industry: str | None = None
    size: str | None = None
    phone: str | None = None
    address: Address = attrs.field(factory=Address)
    owner_id: str | None = None
    tags: list[str] = attrs.field(factory=list)
    custom: dict[str, Any] = attrs.field(factory=dict)
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @staticmethod
    def field_specs(default_region: str | None = None) -> list[f.FieldSpec]:
        return [
            f.FieldSpec("name", f.text(255), required=True),
            f.FieldSpec("domain", f.text(255)),
            f.FieldSpec("industry", f.text(120)),
            f.FieldSpec("size", f.text(32)),
            f.FieldSpec("phone", f.phone(default_region)),
            f.FieldSpec("address", f.nested(Address, ADDRESS_FIELDS)),
            f.FieldSpec("owner_id", f.text(64)),
            f.FieldSpec("tags", f.tags),
            f.FieldSpec("custom", f.custom_values),
        ]
