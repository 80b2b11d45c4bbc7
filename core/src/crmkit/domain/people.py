"""Users of the CRM and their teams (record owners, assignees, API callers)."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from crmkit.domain import fields as f
from crmkit.domain.values import new_id, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"
    READ_ONLY = "read_only"
    INTEGRATION = "integration"


@attrs.define(kw_only=True)
class Team:
    id: str = attrs.field(factory=new_id)
    name: str
    created_at: datetime = attrs.field(factory=utcnow)


@attrs.define(kw_only=True)
class User:
    id: str = attrs.field(factory=new_id)
    email: str
    name: str | None = None
    role: Role = Role.AGENT
    team_id: str | None = None
    active: bool = True
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("email", f.email, required=True),
            f.FieldSpec("name", f.text(255)),
            f.FieldSpec("role", f.enum_of(Role)),
            f.FieldSpec("team_id", f.text(64)),
        ]
