"""JSON Schemas of the API's bodies, derived from the domain's attrs classes.

A response body is an entity as :func:`crmkit.serialize.to_jsonable` writes it, so its schema
is derived from the same attrs class by the same rules (decimals as strings, enums as their
values, dates and times in ISO 8601). A request body lists the fields the service accepts —
the names of its ``FieldSpec`` s — typed from the entity. That request schema is both what
OpenAPI documents and what :class:`BodySchema` enforces before the service runs, so the
document cannot drift from what the server accepts: a wrong JSON type, an unknown or read-only
field is a 422 naming the field; the service then checks meaning (a valid e-mail, an existing
owner) and reports its issues the same way.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs
import jsonschema_rs

from crmkit.errors import FieldIssue, ValidationFailed

JsonSchema = dict[str, Any]

#: Custom field values are scalars; their definitions decide which (checked by the service).
CUSTOM_VALUES: JsonSchema = {"type": ["string", "number", "boolean", "null"]}


def nullable(schema: JsonSchema) -> JsonSchema:
    """``schema`` or null."""
    if not schema:
        return schema  # {} accepts anything already
    result = dict(schema)
    if "type" in result:
        kinds = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = kinds if "null" in kinds else [*kinds, "null"]
    if "enum" in result and None not in result["enum"]:
        result["enum"] = [*result["enum"], None]
    if "type" not in result and "enum" not in result:
        return {"anyOf": [result, {"type": "null"}]}
    return result


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; entities use no other unions."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint, False
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) != 1:
        raise TypeError(f"no JSON Schema for the union {hint!r}")
    return args[0], len(args) != len(typing.get_args(hint))


def value_schema(hint: Any, *, writing: bool = False) -> JsonSchema:
    """The JSON Schema of a value of type ``hint`` as serialised (or, ``writing``, as accepted)."""
    inner, optional = _split_optional(hint)
    schema = _plain_schema(inner, writing=writing)
    return nullable(schema) if optional else schema


def _plain_schema(hint: Any, *, writing: bool) -> JsonSchema:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {}
    if origin in (list, tuple, set, frozenset, Sequence):
        return {"type": "array", "items": value_schema(args[0], writing=writing) if args else {}}
    if origin in (dict, Mapping):
        return {"type": "object", "additionalProperties": value_schema(args[1], writing=writing) if len(args) == 2 else {}}
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return {"type": "string", "enum": [member.value for member in hint]}
        if issubclass(hint, bool):
            return {"type": "boolean"}
        if issubclass(hint, int):
            return {"type": "integer"}
        if issubclass(hint, float):
            return {"type": "number"}
        if issubclass(hint, Decimal):
            # Amounts travel as strings (JSON numbers are binary floats to most readers); a
            # writer may send a number, which is read through its shortest representation.
            return {"type": ["string", "number"] if writing else "string", "description": "a decimal amount, e.g. \"1250.00\""}
        if issubclass(hint, datetime):
            return {"type": "string", "format": "date-time"}
        if issubclass(hint, date):
            return {"type": "string", "format": "date"}
        if issubclass(hint, str):
            return {"type": "string"}
        if attrs.has(hint):
            return object_schema(hint, writing=writing)
    raise TypeError(f"no JSON Schema for {hint!r}")


def object_schema(cls: type, *, writing: bool = False, required: Iterable[str] | None = None,
                  only: Iterable[str] | None = None) -> JsonSchema:
    """An attrs class as a JSON object; ``only`` restricts the properties. ``required``
    defaults to every field when reading (nested values are serialised whole) and to none when
    writing (a writer names only what it sets)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in attrs.fields(cls)] if only is None else list(only)
    properties = {name: value_schema(hints[name], writing=writing) for name in names}
    if writing:
        properties = {name: nullable(schema) for name, schema in properties.items()}
    return {
        "type": "object",
        "properties": properties,
        "required": list(required if required is not None else [] if writing else names),
        "additionalProperties": False,
    }


def record_schema(cls: type, *, title: str, extra: Mapping[str, JsonSchema] | None = None) -> JsonSchema:
    """A record in a response. Only ``id`` is required: ``?fields=`` may leave the rest out."""
    schema = object_schema(cls, required=["id"])
    schema["properties"].update(extra or {})
    return {"title": title, **schema}


def input_schema(
    cls: type,
    fields: Iterable[tuple[str, bool]],
    *,
    partial: bool,
    overrides: Mapping[str, JsonSchema] | None = None,
    extra: Mapping[str, tuple[JsonSchema, bool]] | None = None,
    title: str,
) -> JsonSchema:
    """The body of a create (``partial=False``) or an update of ``cls``.

    :param fields: ``(name, required)`` for each writable field (the service's field specs).
    :param overrides: schemas for fields whose accepted form differs from the entity's type.
    :param extra: ``name -> (schema, required)`` for inputs that are not entity fields (a deal's
        ``pipeline``).
    """
    hints = typing.get_type_hints(cls)
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    specs = [(name, needed, (overrides or {}).get(name) or value_schema(hints[name], writing=True)) for name, needed in fields]
    specs += [(name, needed, schema) for name, (schema, needed) in (extra or {}).items()]
    for name, needed, schema in specs:
        inner = _strip_null(schema) if needed else nullable(schema)
        properties[name] = inner
        if needed and not partial:
            required.append(name)
    body: JsonSchema = {"title": title, "type": "object", "properties": properties, "additionalProperties": False}
    if required:
        body["required"] = required
    return body


def entity_bodies(
    cls: type,
    fields: Iterable[tuple[str, bool]],
    *,
    title: str,
    extra: Mapping[str, tuple[JsonSchema, bool]] | None = None,
) -> tuple[BodySchema, BodySchema]:
    """The create and update bodies of an entity whose service takes ``fields`` (``(name,
    required)`` from its field specs). Entity fields that are not writable are read-only."""
    writable = list(fields)
    overrides = {"custom": {"type": "object", "additionalProperties": CUSTOM_VALUES,
                            "description": "custom fields by name (see /custom-fields); null removes one"}}
    read_only = {f.name for f in attrs.fields(cls)} - {name for name, _ in writable}
    create = input_schema(cls, writable, partial=False, overrides=overrides, extra=extra, title=f"{title}Create")
    update = input_schema(cls, writable, partial=True, overrides=overrides, title=f"{title}Update")
    update["minProperties"] = 1  # an update names at least one field
    return BodySchema(create, read_only), BodySchema(update, read_only)


def _strip_null(schema: JsonSchema) -> JsonSchema:
    """A required field cannot be null: the service would refuse it anyway."""
    result = dict(schema)
    if isinstance(result.get("type"), list):
        kinds = [k for k in result["type"] if k != "null"]
        result["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "enum" in result:
        result["enum"] = [v for v in result["enum"] if v is not None]
    return result


def page_schema(item: JsonSchema, title: str) -> JsonSchema:
    return {
        "title": title,
        "type": "object",
        "required": ["data", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "data": {"type": "array", "items": item},
            "next_cursor": {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last page"},
        },
    }


class BodySchema:
    """A request body's JSON Schema, documented in OpenAPI and enforced on every request.

    :param read_only: names a client may read but not write; sending one is reported as
        ``read_only`` rather than ``unknown_field``.
    """

    def __init__(self, schema: JsonSchema, read_only: Iterable[str] = ()):
        self.schema = schema
        self.read_only = frozenset(read_only)
        self._validator = jsonschema_rs.validator_for(schema, validate_formats=True)

    def check(self, data: Any) -> dict[str, Any]:
        """Return ``data`` if it fits the schema; raise :class:`ValidationFailed` with every
        issue otherwise."""
        issues = [issue for error in self._validator.iter_errors(data) for issue in self._issues(error)]
        issues += _nul_characters(data, "")
        if issues:
            raise ValidationFailed(issues)
        return data  # type: ignore[no-any-return]

    def _issues(self, error: Any) -> list[FieldIssue]:
        where = field_path(error.instance_path)
        kind = error.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            return [FieldIssue(_join(where, kind.property), "required", "is required")]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            return [
                FieldIssue(_join(where, name), "read_only", "is read-only") if not where and name in self.read_only
                else FieldIssue(_join(where, name), "unknown_field", "is not a field of this record")
                for name in kind.unexpected
            ]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
            return [FieldIssue(where or "body", "invalid_type", "must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in kind.types))]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
            allowed = ", ".join("null" if v is None else str(v) for v in kind.options)
            return [FieldIssue(where, "invalid_choice", f"must be one of: {allowed}")]
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.Format):
            return [FieldIssue(where, f"invalid_{kind.format.replace('-', '')}", _FORMATS.get(kind.format, f"must be a {kind.format}"))]
        return [FieldIssue(where or "body", "invalid", error.message)]


_TYPE_NAMES = {"string": "a string", "number": "a number", "integer": "an integer", "boolean": "true or false",
               "object": "an object", "array": "an array", "null": "null"}
_FORMATS = {"date": "must be a date (YYYY-MM-DD)", "date-time": "must be an RFC 3339 date-time with an offset, e.g. 2025-03-01T09:30:00Z"}


def field_path(parts: Iterable[str | int]) -> str:
    """``["stages", 2, "name"]`` → ``stages[2].name``, the way crmkit names fields."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _nul_characters(value: Any, where: str) -> list[FieldIssue]:
    """NUL cannot be stored in PostgreSQL text and is never meaningful in a CRM field."""
    if isinstance(value, str):
        return [FieldIssue(where or "body", "invalid_character", "must not contain NUL characters")] if "\x00" in value else []
    if isinstance(value, Mapping):
        return [issue for key, item in value.items() for issue in _nul_characters(key, where) + _nul_characters(item, _join(where, str(key)))]
    if isinstance(value, list):
        return [issue for index, item in enumerate(value) for issue in _nul_characters(item, f"{where}[{index}]")]
    return []
