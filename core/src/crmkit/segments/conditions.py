"""Segment conditions: the automation condition format over a contact's own fields, checked
against the fields that exist when a segment is saved, compiled to a SQL ``WHERE`` clause for a
full rebuild and evaluated in Python on one contact row for the incremental path.

::

    {"all": [{"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
             {"field": "tags", "op": "contains", "value": "vip"},
             {"field": "score", "op": "gte", "value": 50}]}

The structure (``all`` / ``any`` / ``not`` / leaves, the operators and the shape of values) is
parsed by :func:`crmkit.automation.conditions.parse`, so rules and segments read alike. What is
added here is a *type* per field, which decides the operators it takes and their meaning:

``text`` (names, e-mail, job title, address and source fields, owner and organization ids)
    ``eq``, ``ne``, ``in``, ``contains``, ``exists``. Comparisons are exact (case matters):
    SQL and Python must agree on every backend, and only byte equality means the same thing on
    SQLite, PostgreSQL and MariaDB (whose default collation ignores case and accents). Stored
    text is trimmed, e-mail addresses are lower-case.
``choice`` (``lifecycle_stage``)
    ``eq``, ``ne``, ``in``, with values checked against the stages.
``number`` (``score``)
    ``eq``, ``ne``, ``gt``, ``gte``, ``lt``, ``lte``.
``tags``
    ``contains`` (has the tag), ``in`` (has one of them), ``exists`` (has any tag). Values are
    trimmed and lower-cased like tags are when stored.

``ne`` holds for an empty field; every other comparison fails on one. Evaluation never executes
anything from the condition: it walks the parsed tree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from crmkit.automation.conditions import OPS, All, Any_, Condition, Leaf, Not, Schema, closest, parse
from crmkit.domain.values import LifecycleStage
from crmkit.errors import FieldIssue, ValidationFailed

Kind = Literal["text", "choice", "number", "tags"]

OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "text": ("eq", "ne", "in", "contains", "exists"),
    "choice": ("eq", "ne", "in"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte"),
    "tags": ("contains", "in", "exists"),
}
_MYSQL = ("mysql", "mariadb")
_BINARY = "utf8mb4_bin"  # byte comparison on MariaDB/MySQL, like SQLite's and PostgreSQL's default


@attrs.frozen
class SegmentField:
    """A contact field a segment may test: its name in conditions and its column."""

    name: str
    column: str
    kind: Kind
    choices: tuple[str, ...] = ()


def _fields() -> dict[str, SegmentField]:
    text = ["first_name", "last_name", "email", "phone", "account_number", "job_title", "industry", "location", "owner_id", "organization_id"]
    fields = [SegmentField(name, name, "text") for name in text]
    fields += [SegmentField(f"address.{part}", f"address_{part}", "text") for part in ("city", "region", "postcode", "country")]
    fields += [SegmentField(f"source.{part}", f"source_{part}", "text")
               for part in ("channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")]
    fields += [
        SegmentField("lifecycle_stage", "lifecycle_stage", "choice", tuple(s.value for s in LifecycleStage)),
        SegmentField("score", "score", "number"),
        SegmentField("tags", "tags", "tags"),
    ]
    return {f.name: f for f in fields}


FIELDS: Mapping[str, SegmentField] = _fields()


class _ContactFields(Schema):
    """Field check for :func:`parse`: a segment names contact fields without a ``contact.`` root."""

    def check_field(self, path: str, where: str) -> FieldIssue | None:
        if path in FIELDS:
            return None
        hint = closest(path, list(FIELDS))
        return FieldIssue(where, "unknown_field", f"{path!r} is not a contact field a segment can use"
                          + (f" (did you mean {hint!r}?)" if hint else f"; fields: {', '.join(FIELDS)}"))


@attrs.frozen
class SegmentCondition:
    """A checked condition: ``as_data()`` is what is stored, ``where(...)`` the SQL and
    ``holds(row)`` the same test in Python."""

    tree: Condition

    def as_data(self) -> dict[str, Any]:
        return self.tree.as_data()

    def fields(self) -> set[str]:
        return self.tree.fields()

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether a ``contacts`` row (column name → value, as read from the database) matches."""
        return _holds(self.tree, row)

    def where(self, contacts: sa.Table, dialect: str) -> sa.ColumnElement[bool]:
        """The condition as a SQL expression over the ``contacts`` table for ``dialect``."""
        return _sql(self.tree, contacts, dialect)


def compile_condition(data: Any, where: str = "where") -> SegmentCondition:
    """Check a condition structure against the contact fields; every problem is reported at
    once, each naming its place (``where.all[1].value``).

    :raises ValidationFailed: the structure, a field, an operator or a value is wrong.
    """
    if data is None or data == {}:
        raise ValidationFailed.single(where, "required", 'give a condition, e.g. {"field": "lifecycle_stage", "op": "eq", "value": "mql"}')
    issues: list[FieldIssue] = []
    tree: Condition | None = None
    try:
        tree = parse(data, schema=_ContactFields(roots={}), where=where)
    except ValidationFailed as exc:
        issues.extend(exc.issues)
    seen = {(i.field, i.code) for i in issues}
    issues.extend(i for i in _typed_issues(data, where) if (i.field, i.code) not in seen)
    if issues or tree is None:
        raise ValidationFailed(issues)
    return SegmentCondition(_normalised(tree))


# --- save-time checks that need the field's type ------------------------------------------


def _leaves(data: Any, where: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Every leaf of a (possibly malformed) condition with its place; parse reports the shape."""
    if not isinstance(data, Mapping):
        return
    for key in ("all", "any"):
        if isinstance(data.get(key), list):
            for i, item in enumerate(data[key]):
                yield from _leaves(item, f"{where}.{key}[{i}]")
    if "not" in data:
        yield from _leaves(data["not"], f"{where}.not")
    if "field" in data:
        yield data, where


def _typed_issues(data: Any, where: str) -> Iterator[FieldIssue]:
    for leaf, place in _leaves(data, where):
        field = FIELDS.get(leaf.get("field", "").strip() if isinstance(leaf.get("field"), str) else "")
        op = leaf.get("op")
        if field is None or op not in OPS:
            continue  # parse names the unknown field or operator
        if op not in OPS_BY_KIND[field.kind]:
            yield FieldIssue(f"{place}.op", "unsupported_op", f"{field.name} ({field.kind}) takes {', '.join(OPS_BY_KIND[field.kind])}, not {op}")
            continue
        if op == "exists" or "value" not in leaf:
            continue
        value = leaf["value"]
        for item in (value if op == "in" and isinstance(value, list | tuple) else [value]):
            problem = _value_problem(field, op, item)
            if problem:
                yield FieldIssue(f"{place}.value", "invalid_value", problem)
                break


def _value_problem(field: SegmentField, op: str, value: Any) -> str | None:
    if field.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{field.name} is a number; {value!r} is not"
        return None
    if not isinstance(value, str) or not value.strip():
        empty = f"; to test for an empty {field.name} use exists false" if field.kind != "choice" else ""
        return f"{field.name} compares with text, got {value!r}{empty}"
    if field.kind == "choice" and value.strip().lower() not in field.choices:
        return f"{value!r} is not a {field.name} (one of {', '.join(field.choices)})"
    return None


def _normalised(tree: Condition) -> Condition:
    """Values as they are stored: text trimmed, tags and stages lower-case."""
    if isinstance(tree, All | Any_):
        return type(tree)(tuple(_normalised(c) for c in tree.items))
    if isinstance(tree, Not):
        return Not(_normalised(tree.item))
    assert isinstance(tree, Leaf)
    field = FIELDS[tree.field]
    if tree.op == "exists" or field.kind == "number":
        return tree

    def clean(value: str) -> str:
        return value.strip().lower() if field.kind in ("tags", "choice") else value.strip()

    value = [clean(v) for v in tree.value] if tree.op == "in" else clean(tree.value)
    return attrs.evolve(tree, value=value)


# --- evaluation in Python -----------------------------------------------------------------


def _holds(tree: Condition, row: Mapping[str, Any]) -> bool:
    if isinstance(tree, All):
        return all(_holds(c, row) for c in tree.items)
    if isinstance(tree, Any_):
        return any(_holds(c, row) for c in tree.items)
    if isinstance(tree, Not):
        return not _holds(tree.item, row)
    assert isinstance(tree, Leaf)
    field = FIELDS[tree.field]
    actual = row.get(field.column)
    op, value = tree.op, tree.value
    if field.kind == "tags":
        tags = actual if isinstance(actual, list) else []
        if op == "exists":
            return bool(tags) is bool(value)
        return any(v in tags for v in (value if op == "in" else [value]))
    if op == "ne":
        return actual is None or actual != value
    if actual is None:
        return op == "exists" and value is False
    if op == "exists":
        return (actual != "") is bool(value)
    if op == "eq":
        return bool(actual == value)
    if op == "in":
        return actual in value
    if op == "contains":
        return isinstance(actual, str) and value in actual
    return bool({"gt": actual > value, "gte": actual >= value, "lt": actual < value, "lte": actual <= value}[op])


# --- compilation to SQL -------------------------------------------------------------------


def _sql(tree: Condition, contacts: sa.Table, dialect: str) -> sa.ColumnElement[bool]:
    if isinstance(tree, All):
        return sa.and_(sa.true(), *(_sql(c, contacts, dialect) for c in tree.items))
    if isinstance(tree, Any_):
        return sa.or_(sa.false(), *(_sql(c, contacts, dialect) for c in tree.items))
    if isinstance(tree, Not):
        # A leaf's SQL is never NULL (every comparison is guarded), so NOT is plain negation.
        return sa.not_(_sql(tree.item, contacts, dialect))
    assert isinstance(tree, Leaf)
    field = FIELDS[tree.field]
    column: sa.ColumnElement[Any] = contacts.c[field.column]
    op, value = tree.op, tree.value
    if field.kind == "tags":
        return _tags_sql(column, op, value, dialect)
    if field.kind != "number" and dialect in _MYSQL:
        column = column.collate(_BINARY)
    present = contacts.c[field.column].is_not(None)
    if op == "ne":
        return sa.or_(contacts.c[field.column].is_(None), column != value)
    if op == "exists":
        filled = sa.and_(present, column != "")
        return filled if value else sa.not_(filled)
    if op == "contains":
        position = sa.func.strpos(column, value) if dialect == "postgresql" else sa.func.instr(column, value)
        return sa.and_(present, position > 0)
    compared = {"eq": lambda: column == value, "in": lambda: column.in_(value), "gt": lambda: column > value,
                "gte": lambda: column >= value, "lt": lambda: column < value, "lte": lambda: column <= value}[op]()
    return sa.and_(present, compared)


def _has_tag(column: sa.ColumnElement[Any], tag: str, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.type_coerce(column, postgresql.JSONB).contains([tag])
    if dialect in _MYSQL:
        # MariaDB's JSON functions compare the stored text without decoding \u escapes, and
        # tags are stored as json.dumps writes them (non-ASCII escaped); match that form, and
        # the literal one for rows written by other tools.
        forms = dict.fromkeys([json.dumps(tag), json.dumps(tag, ensure_ascii=False)])
        return sa.or_(*(sa.func.json_contains(column, form) == 1 for form in forms))
    items = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(items).where(items.c.value == tag))


def _tags_sql(column: sa.ColumnElement[Any], op: str, value: Any, dialect: str) -> sa.ColumnElement[bool]:
    if op == "exists":
        length = {"postgresql": sa.func.jsonb_array_length, "sqlite": sa.func.json_array_length}.get(dialect, sa.func.json_length)
        filled = length(column) > 0
        return filled if value else sa.not_(filled)
    return sa.or_(*(_has_tag(column, tag, dialect) for tag in (value if op == "in" else [value])))


def describe(data: Mapping[str, Any]) -> str:
    """A condition as one line of JSON, for tables and messages."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ": "))
