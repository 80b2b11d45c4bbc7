"""Typed custom fields: a CRM declares extra fields per entity and every write is checked
against those declarations (type, required, allowed choices)."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmkit.domain import values
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import ValidationFailed

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENTITIES = ("contact", "organization", "deal")
TEXT_MAX = 10_000
NUMBER_MAX = 2**53 - 1


class FieldType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOL = "bool"
    CHOICE = "choice"


@attrs.define(kw_only=True)
class CustomFieldDefinition:
    id: str = attrs.field(factory=new_id)
    entity: str
    name: str
    type: FieldType
    label: str | None = None
    required: bool = False
    choices: list[str] = attrs.field(factory=list)
    created_at: datetime = attrs.field(factory=utcnow)

    def __attrs_post_init__(self) -> None:
        collector = values.IssueCollector()
        if self.entity not in ENTITIES:
            collector.add("entity", "invalid_choice", f"{self.entity!r} is not one of: {', '.join(ENTITIES)}")
        if not _NAME.match(self.name or ""):
            collector.add("name", "invalid_name", "must start with a letter and use only a-z, 0-9 and _ (max 63)")
        if self.label is not None and len(self.label) > 255:
            collector.add("label", "too_long", "must be at most 255 characters")
        if self.type == FieldType.CHOICE and not self.choices:
            collector.add("choices", "required", "a choice field needs at least one choice")
        for index, choice in enumerate(self.choices):
            if not isinstance(choice, str) or not choice.strip() or choice != choice.strip():
                collector.add(f"choices[{index}]", "invalid_choice", f"{choice!r}: a choice is non-empty text without surrounding spaces")
        texts = [c for c in self.choices if isinstance(c, str)]
        if len(set(texts)) != len(texts):
            collector.add("choices", "duplicate", "every choice must appear once")
        collector.raise_if_any()

    def parse(self, value: Any) -> Any:
        """Parse one value for this field, JSON-safe on the way out (dates as ISO strings)."""
        field = f"custom.{self.name}"
        if value is None or value == "":
            return None
        if not isinstance(value, str | int | float | Decimal | date):
            raise ValidationFailed.single(field, "invalid_type", f"must be a single {self.type} value, not {type(value).__name__}")
        if self.type == FieldType.TEXT:
            text = str(value).strip()
            if len(text) > TEXT_MAX:
                raise ValidationFailed.single(field, "too_long", f"must be at most {TEXT_MAX} characters")
            return text
        if self.type == FieldType.NUMBER:
            if isinstance(value, bool):
                raise ValidationFailed.single(field, "invalid_number", "must be a number")
            number = values.parse_decimal(value, field)
            # Bounded before int(): "1e99999999" would otherwise build a 100-million-digit
            # integer. 2**53 is also where JSON readers stop counting exactly.
            if number.copy_abs() > NUMBER_MAX:
                raise ValidationFailed.single(field, "out_of_range", f"must be between -{NUMBER_MAX} and {NUMBER_MAX}")
            return int(number) if number == number.to_integral_value() else float(number)
        if self.type == FieldType.DATE:
            return values.parse_date(value, field).isoformat()
        if self.type == FieldType.BOOL:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "y"):
                return True
            if text in ("false", "no", "0", "n"):
                return False
            raise ValidationFailed.single(field, "invalid_bool", f"{value!r} is not yes/no")
        text = str(value).strip()
        if text not in self.choices:
            raise ValidationFailed.single(field, "invalid_choice", f"{text!r} is not one of: {', '.join(self.choices)}")
        return text


def validate_custom(definitions: Iterable[CustomFieldDefinition], data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate a ``custom`` mapping against the entity's definitions; unknown keys are errors."""
    by_name = {d.name: d for d in definitions}
    collector = values.IssueCollector()
    clean: dict[str, Any] = {}
    for key, value in data.items():
        definition = by_name.get(key)
        if definition is None:
            collector.add(f"custom.{key}", "unknown_field", "no custom field of that name is defined")
            continue
        parsed = collector.run(definition.parse, value)
        clean[key] = parsed
    for definition in by_name.values():
        if definition.required and clean.get(definition.name) is None and (not partial or definition.name in data):
            if not any(i.field == f"custom.{definition.name}" for i in collector.issues):
                collector.add(f"custom.{definition.name}", "required", "is required")
    collector.raise_if_any()
    return {k: v for k, v in clean.items() if v is not None}
