"""Declarative input parsing for entities.

Every entity declares which fields callers may write and how each is parsed (:class:`FieldSpec`).
:func:`parse_input` runs every parser, collects *all* issues, rejects unknown and read-only
fields by name, and returns clean values — or raises :class:`ValidationFailed`. The CLI, the HTTP
API and the intake pipeline all go through it, so a field is validated the same way everywhere.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from crmkit.domain import values
from crmkit.errors import FieldIssue, ValidationFailed

Parser = Callable[[Any, str], Any]


@attrs.frozen
class FieldSpec:
    name: str
    parse: Parser
    required: bool = False
    nullable: bool = True


def text(max_length: int = 255) -> Parser:
    def parse(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str | int | float):
            raise ValidationFailed.single(field, "invalid_type", "must be text")
        result = str(value).strip()
        if len(result) > max_length:
            raise ValidationFailed.single(field, "too_long", f"must be at most {max_length} characters")
        return result or None

    return parse


def email(value: Any, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValidationFailed.single(field, "invalid_type", "must be text")
    return values.normalize_email(value, field)


def phone(default_region: str | None = None) -> Parser:
    def parse(value: Any, field: str) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return values.normalize_phone(str(value), default_region, field)

    return parse


def enum_of(enum_cls: type[enum.StrEnum]) -> Parser:
    def parse(value: Any, field: str) -> Any:
        return None if value is None else values.parse_enum(enum_cls, value, field)

    return parse


def date_(value: Any, field: str) -> Any:
    return None if value in (None, "") else values.parse_date(value, field)


def datetime_(value: Any, field: str) -> Any:
    return None if value in (None, "") else values.parse_datetime(value, field)


def money(minimum: Decimal | int | None = None) -> Parser:
    """An amount of money: exact to four decimal places and within what storage can hold."""
    floor = None if minimum is None else Decimal(minimum)

    def parse(value: Any, field: str) -> Decimal | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            raise ValidationFailed.single(field, "invalid_number", "must be a number")
        # Floats (JSON numbers) are read through their shortest repr, so 19.99 stays 19.99.
        return values.parse_money(value, field, floor)

    return parse


def number(minimum: float | None = None, maximum: float | None = None) -> Parser:
    def parse(value: Any, field: str) -> float | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            raise ValidationFailed.single(field, "invalid_number", "must be a number")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValidationFailed.single(field, "invalid_number", f"{value!r} is not a number") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise ValidationFailed.single(field, "invalid_number", "must be a finite number")
        if minimum is not None and result < minimum or maximum is not None and result > maximum:
            raise ValidationFailed.single(field, "out_of_range", f"must be between {minimum} and {maximum}")
        return result

    return parse


def currency(value: Any, field: str) -> str | None:
    return None if value in (None, "") else values.normalize_currency(str(value), field)


def tags(value: Any, field: str) -> list[str]:
    if value in (None, ""):
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set):
        raise ValidationFailed.single(field, "invalid_type", "must be a list of tags")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationFailed.single(field, "invalid_type", "every tag must be text")
        tag = item.strip().lower()
        if len(tag) > 64:
            raise ValidationFailed.single(field, "too_long", f"tag {tag[:20]!r}… is longer than 64 characters")
        if tag and tag not in result:
            result.append(tag)
    return result


def custom_values(value: Any, field: str) -> dict[str, Any]:
    """The ``custom`` object: only its shape is checked here; each value is parsed (dates and
    decimals made JSON-safe) against its custom field definition by ``validate_custom``."""
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed.single(field, "invalid_type", "must be an object")
    return dict(value)


def mapping(value: Any, field: str) -> dict[str, Any]:
    """A JSON object stored as given. Checked here, not by the database: a datetime or NaN inside would
    otherwise fail the whole write with a driver error that names no field."""
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise ValidationFailed.single(field, "invalid_type", "must be an object")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.single(field, "invalid_json", f"must hold only JSON values (text, numbers, true/false, null, lists, objects): {exc}") from None
    return dict(value)


def nested(cls: type, specs: Iterable[FieldSpec]) -> Parser:
    """Parse a nested object (e.g. an address) with its own field specs."""
    parser = FieldParser(specs)  # built once per spec list, not once per value

    def parse(value: Any, field: str) -> Any:
        if value in (None, ""):
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValidationFailed.single(field, "invalid_type", "must be an object")
        return cls(**parser.parse(value, prefix=f"{field}."))

    return parse


class FieldParser:
    """A list of field specs made ready for parsing many records.

    Validating a bulk import calls this once per row, so what depends only on the specs (the
    by-name lookup, the read-only names) is built once, and each field's parser is called
    directly rather than through an :class:`~crmkit.domain.values.IssueCollector`. The checks,
    their order and the issues reported are exactly :func:`parse_input`'s, which uses this.
    """

    __slots__ = ("_by_name", "_specs", "_blocked")

    def __init__(self, specs: Iterable[FieldSpec], read_only: Iterable[str] = ()) -> None:
        self._by_name = {s.name: s for s in specs}
        self._specs = tuple(self._by_name.values())
        self._blocked = frozenset(read_only)

    def parse(self, data: Mapping[str, Any], *, partial: bool = False, prefix: str = "") -> dict[str, Any]:
        """Clean values of ``data``, or :class:`ValidationFailed` with every issue found
        (see :func:`parse_input` for ``partial`` and ``prefix``)."""
        issues: list[FieldIssue] = []
        by_name, blocked = self._by_name, self._blocked
        for key in data:
            if key in blocked:
                issues.append(FieldIssue(prefix + key, "read_only", "is read-only"))
            elif key not in by_name:
                issues.append(FieldIssue(prefix + key, "unknown_field", "is not a field of this record"))
        clean: dict[str, Any] = {}
        for spec in self._specs:
            name = spec.name
            if name not in data:
                if spec.required and not partial:
                    issues.append(FieldIssue(prefix + name, "required", "is required"))
                continue
            field = prefix + name
            try:
                result = spec.parse(data[name], field)
            except ValidationFailed as exc:
                issues.extend(exc.issues)
                result = None
            if result is None and spec.required and not any(i.field == field for i in issues):
                issues.append(FieldIssue(field, "required", "is required and cannot be empty"))
            clean[name] = result
        if issues:
            raise ValidationFailed(issues)
        return clean


def parse_input(
    data: Mapping[str, Any],
    specs: Iterable[FieldSpec],
    *,
    partial: bool = False,
    prefix: str = "",
    read_only: Iterable[str] = (),
) -> dict[str, Any]:
    """Parse ``data`` against ``specs``; return clean values or raise with every issue found.

    :param partial: an update: absent fields are left alone and ``required`` is not enforced
        for them (but a required field cannot be set to empty).
    :param read_only: names a caller may see but not write (``id``, ``version`` …); writing
        one is an error naming it rather than a silent drop.
    """
    return FieldParser(specs, read_only).parse(data, partial=partial, prefix=prefix)
