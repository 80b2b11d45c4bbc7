"""Mapping between attrs entities and table rows.

Nested value objects (address, attribution) are flattened into prefixed columns so they can be
indexed and queried (duplicate detection blocks on postcode); enums are stored as their values.
The mapping is derived from the attrs classes once per process, so adding a field to an entity
and a column to the table is all it takes.
"""

from __future__ import annotations

import enum
import functools
import typing
from typing import Any

import attrs

from crmkit import domain
from crmkit.domain.values import Address, Attribution

#: Value objects flattened into ``<field>_<attribute>`` columns.
_NESTED = (Address, Attribution)


@functools.cache
def _plan(cls: type) -> list[tuple[str, Any]]:
    """``[(field_name, kind)]`` where kind is an enum class, a nested class, or None."""
    hints = typing.get_type_hints(cls)
    plan: list[tuple[str, Any]] = []
    for field in attrs.fields(cls):
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        target = args[0]
        if isinstance(target, type) and issubclass(target, enum.Enum):
            plan.append((field.name, target))
        elif target in _NESTED:
            # Decided by type, not name: Consent.source is plain text, Contact.source is not.
            plan.append((field.name, (f"{field.name}_", target)))
        else:
            plan.append((field.name, None))
    return plan


def to_row(entity: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, kind in _plan(type(entity)):
        value = getattr(entity, name)
        if isinstance(kind, tuple):
            prefix, _ = kind
            for sub in attrs.fields(type(value)):
                row[prefix + sub.name] = getattr(value, sub.name)
        elif kind is not None and value is not None:
            row[name] = value.value
        else:
            row[name] = value
    return row


def from_row(cls: type, row: Any) -> Any:
    mapping = row._mapping if hasattr(row, "_mapping") else row
    kwargs: dict[str, Any] = {}
    for name, kind in _plan(cls):
        if isinstance(kind, tuple):
            prefix, nested_cls = kind
            kwargs[name] = nested_cls(**{sub.name: mapping[prefix + sub.name] for sub in attrs.fields(nested_cls)})
        elif name not in mapping:
            continue  # e.g. ``stages`` of a Pipeline, loaded separately
        elif kind is not None and mapping[name] is not None:
            kwargs[name] = kind(mapping[name])
        else:
            kwargs[name] = mapping[name]
    return cls(**kwargs)


#: Which table stores which entity.
TABLE_OF: dict[type, str] = {
    domain.Contact: "contacts",
    domain.Organization: "organizations",
    domain.Pipeline: "pipelines",
    domain.Stage: "stages",
    domain.Deal: "deals",
    domain.StageChange: "stage_changes",
    domain.Activity: "activities",
    domain.Task: "tasks",
    domain.Campaign: "campaigns",
    domain.Consent: "consents",
    domain.User: "users",
    domain.Team: "teams",
    domain.CustomFieldDefinition: "custom_field_definitions",
}
