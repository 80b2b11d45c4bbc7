"""A small, safe condition language: conditions are data (JSON / TOML), never code.

::

    {"all": [COND, ...]}     every one holds (an empty list holds)
    {"any": [COND, ...]}     at least one holds
    {"not": COND}
    {"field": "contact.job_title", "op": "contains", "value": "director"}

``field`` is a dotted path into the facts a rule sees (``contact``, ``deal``, ``stage``,
``pipeline``, ``activity``, ``task``, ``event``; see :class:`Schema`). Operators:

``eq`` / ``ne``
    equal / not equal. Text compares without regard to case; a number compares numerically
    with a field holding a number or numeric text (amounts travel as text).
``in``
    the field equals one of ``value`` (a list); a list field (tags) shares an element with it.
``contains``
    text contains ``value`` (ignoring case); a list field has ``value`` as an element.
``gt`` / ``gte`` / ``lt`` / ``lte``
    numeric comparison with ``value`` (a number); a field that is not a number never matches.
``exists``
    the field has a non-empty value (``value`` false: it has none). ``value`` defaults to true.

:func:`parse` turns the structure into a tree and reports *every* problem as a
:class:`~crmkit.errors.FieldIssue` naming where it is (``conditions.all[1].field``); with a
:class:`Schema` it also refuses fields that do not exist (with a suggestion). Evaluation
(:meth:`Condition.holds`) only walks dicts, so a condition cannot reach anything but the facts
it is handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import attrs

from crmkit.errors import FieldIssue, ValidationFailed

OPS = ("eq", "ne", "in", "contains", "gt", "gte", "lt", "lte", "exists")
MAX_DEPTH = 8
MAX_LEAVES = 100
_SCALARS = (str, int, float, bool, type(None))


class Condition(Protocol):
    def holds(self, facts: Mapping[str, Any]) -> bool: ...

    def failures(self, facts: Mapping[str, Any]) -> list[str]:
        """Why the condition does not hold (empty when it holds), for run records."""
        ...

    def fields(self) -> set[str]: ...

    def as_data(self) -> dict[str, Any]:
        """The condition as its (normalised) structure, as stored."""
        ...


@attrs.frozen
class Leaf:
    field: str
    op: str
    value: Any = None

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return _compare(self.op, resolve(facts, self.field), self.value)

    def failures(self, facts: Mapping[str, Any]) -> list[str]:
        return [] if self.holds(facts) else [f"{self.describe()} (is {resolve(facts, self.field)!r})"]

    def fields(self) -> set[str]:
        return {self.field}

    def as_data(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value}

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.field} {'exists' if self.value is not False else 'is empty'}"
        return f"{self.field} {self.op} {self.value!r}"


@attrs.frozen
class All:
    items: tuple[Condition, ...]

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return all(c.holds(facts) for c in self.items)

    def failures(self, facts: Mapping[str, Any]) -> list[str]:
        return [reason for c in self.items for reason in c.failures(facts)]

    def fields(self) -> set[str]:
        return set().union(*(c.fields() for c in self.items))

    def as_data(self) -> dict[str, Any]:
        return {"all": [c.as_data() for c in self.items]}


@attrs.frozen
class Any_:
    items: tuple[Condition, ...]

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return any(c.holds(facts) for c in self.items)

    def failures(self, facts: Mapping[str, Any]) -> list[str]:
        if self.holds(facts):
            return []
        return ["none of: " + "; ".join(reason for c in self.items for reason in c.failures(facts))]

    def fields(self) -> set[str]:
        return set().union(*(c.fields() for c in self.items))

    def as_data(self) -> dict[str, Any]:
        return {"any": [c.as_data() for c in self.items]}


@attrs.frozen
class Not:
    item: Condition

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return not self.item.holds(facts)

    def failures(self, facts: Mapping[str, Any]) -> list[str]:
        return [] if self.holds(facts) else ["not expected to hold but did: " + _describe(self.item)]

    def fields(self) -> set[str]:
        return self.item.fields()

    def as_data(self) -> dict[str, Any]:
        return {"not": self.item.as_data()}


ALWAYS = All(())


def _describe(condition: Condition) -> str:
    if isinstance(condition, Leaf):
        return condition.describe()
    if isinstance(condition, Not):
        return f"not ({_describe(condition.item)})"
    joiner = " and " if isinstance(condition, All) else " or "
    return "(" + joiner.join(_describe(c) for c in condition.items) + ")"  # type: ignore[attr-defined]


# --- the schema: which fields exist -------------------------------------------------------


@attrs.frozen
class Root:
    """One name a field path may start with (``contact``) and what lies under it.

    :param fields: attribute names, each mapped to the names under it for nested objects
        (``address`` -> city, country …) or None for plain values.
    :param open: attributes whose keys are free-form (``custom``, ``payload``, ``data``).
    """

    fields: Mapping[str, frozenset[str] | None]
    open: frozenset[str] = frozenset()


@attrs.frozen
class Schema:
    """The roots conditions may use, for checking fields when a rule is saved."""

    roots: Mapping[str, Root]

    def check_field(self, path: str, where: str) -> FieldIssue | None:
        if not isinstance(path, str) or not path.strip():
            return FieldIssue(where, "required", "give a field such as 'contact.lifecycle_stage'")
        parts = path.split(".")
        root = self.roots.get(parts[0])
        if root is None:
            known = ", ".join(sorted(self.roots))
            return FieldIssue(where, "unknown_field", f"{path!r}: {parts[0]!r} is not available here (available: {known})")
        if len(parts) == 1:
            return FieldIssue(where, "unknown_field", f"{path!r} names a whole record; name one of its fields, e.g. '{parts[0]}.{next(iter(sorted(root.fields)), 'id')}'")
        attr = parts[1]
        if attr not in root.fields:
            hint = closest(attr, list(root.fields))
            return FieldIssue(where, "unknown_field", f"{path!r}: {parts[0]} has no field {attr!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        nested = root.fields[attr]
        if attr in root.open:
            return None
        if len(parts) > 2:
            if nested is None or len(parts) > 3:
                return FieldIssue(where, "unknown_field", f"{path!r}: {parts[0]}.{attr} has no fields under it")
            if parts[2] not in nested:
                hint = closest(parts[2], list(nested))
                return FieldIssue(where, "unknown_field", f"{path!r}: {parts[0]}.{attr} has no field {parts[2]!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        return None


def entity_root(cls: type, *, open: tuple[str, ...] = ()) -> Root:
    """A root describing an attrs entity: its fields, nested attrs objects' fields, and the
    mapping-typed attributes (``custom``) whose keys are free."""
    fields: dict[str, frozenset[str] | None] = {}
    for field in attrs.fields(cls):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default  # type: ignore[attr-defined]
        fields[field.name] = frozenset(a.name for a in attrs.fields(type(default))) if attrs.has(type(default)) else None
    return Root(fields, frozenset(open))


def closest(name: str, candidates: list[str]) -> str | None:
    from rapidfuzz import process

    match = process.extractOne(name, candidates, score_cutoff=70)
    return match[0] if match else None


# --- parsing ------------------------------------------------------------------------------


def parse(data: Any, *, schema: Schema | None = None, where: str = "conditions") -> Condition:
    """Parse a condition structure (None or ``{}``: always holds).

    :raises ValidationFailed: with every problem, each naming its place (``conditions.all[0].op``).
    """
    if data is None or data == {}:
        return ALWAYS
    issues: list[FieldIssue] = []
    leaves = [0]
    result = _parse(data, schema, where, issues, 0, leaves)
    if leaves[0] > MAX_LEAVES:
        issues.append(FieldIssue(where, "too_large", f"at most {MAX_LEAVES} comparisons per condition"))
    if issues:
        raise ValidationFailed(issues)
    return result


def _parse(data: Any, schema: Schema | None, where: str, issues: list[FieldIssue], depth: int, leaves: list[int]) -> Condition:
    shape = "a condition is {\"all\": [...]}, {\"any\": [...]}, {\"not\": {...}} or {\"field\": ..., \"op\": ..., \"value\": ...}"
    if depth > MAX_DEPTH:
        issues.append(FieldIssue(where, "too_deep", f"conditions nest at most {MAX_DEPTH} levels"))
        return ALWAYS
    if not isinstance(data, Mapping):
        issues.append(FieldIssue(where, "invalid_condition", f"expected an object; {shape}"))
        return ALWAYS
    groups = [key for key in ("all", "any", "not") if key in data]
    if groups:
        extra = sorted(set(data) - {groups[0]})
        if len(groups) > 1 or extra:
            issues.append(FieldIssue(where, "invalid_condition", f"{groups[0]!r} cannot be combined with {', '.join(map(repr, extra))}; {shape}"))
            return ALWAYS
        key = groups[0]
        if key == "not":
            return Not(_parse(data["not"], schema, f"{where}.not", issues, depth + 1, leaves))
        items = data[key]
        if not isinstance(items, list | tuple):
            issues.append(FieldIssue(f"{where}.{key}", "invalid_condition", "must be a list of conditions"))
            return ALWAYS
        parsed = tuple(_parse(item, schema, f"{where}.{key}[{i}]", issues, depth + 1, leaves) for i, item in enumerate(items))
        return All(parsed) if key == "all" else Any_(parsed)
    return _parse_leaf(data, schema, where, issues, leaves, shape)


def _parse_leaf(data: Mapping[str, Any], schema: Schema | None, where: str, issues: list[FieldIssue], leaves: list[int], shape: str) -> Condition:
    leaves[0] += 1
    unknown = sorted(set(data) - {"field", "op", "value"})
    if unknown:
        issues.append(FieldIssue(f"{where}.{unknown[0]}", "unknown_key", f"is not part of a condition; {shape}"))
    field, op = data.get("field"), data.get("op")
    before = len(issues)
    if not isinstance(field, str) or not field.strip():
        issues.append(FieldIssue(f"{where}.field", "required", "give the field to test, e.g. 'contact.lifecycle_stage'"))
    elif schema is not None:
        problem = schema.check_field(field.strip(), f"{where}.field")
        if problem:
            issues.append(problem)
    if op not in OPS:
        issues.append(FieldIssue(f"{where}.op", "unknown_op", f"{op!r} is not an operator (operators: {', '.join(OPS)})"))
    else:
        problem = _check_value(op, data.get("value", True if op == "exists" else None), "value" in data, f"{where}.value")
        if problem:
            issues.append(problem)
    if len(issues) > before:
        return ALWAYS
    value = data.get("value", True) if op == "exists" else data.get("value")
    return Leaf(field.strip(), op, list(value) if isinstance(value, tuple) else value)


def _check_value(op: str, value: Any, given: bool, where: str) -> FieldIssue | None:
    if op == "exists":
        return None if isinstance(value, bool) else FieldIssue(where, "invalid_value", "exists takes true or false")
    if not given:
        return FieldIssue(where, "required", f"{op} needs a value")
    if op == "in":
        if not isinstance(value, list | tuple) or not value or not all(isinstance(v, _SCALARS) for v in value):
            return FieldIssue(where, "invalid_value", "in needs a non-empty list of values, e.g. [\"saas\", \"fintech\"]")
        return None
    if op in ("gt", "gte", "lt", "lte"):
        if _number(value) is None or isinstance(value, str):
            return FieldIssue(where, "invalid_value", f"{op} compares numbers; {value!r} is not a number")
        return None
    if not isinstance(value, _SCALARS):
        return FieldIssue(where, "invalid_value", f"{op} needs a single value (text, number, true/false or null)")
    if op == "contains" and value is None:
        return FieldIssue(where, "invalid_value", "contains needs a value to look for")
    return None


# --- evaluation ---------------------------------------------------------------------------


def resolve(facts: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path through nested dicts; None where anything is missing."""
    value: Any = facts
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal | str):
        try:
            result = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            return None
        return result if result.is_finite() else None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if expected is None:
        return actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(expected, int | float) or isinstance(actual, int | float | Decimal):
        left, right = _number(actual), _number(expected)
        return left is not None and left == right
    if isinstance(expected, str) and isinstance(actual, str):
        return actual.casefold() == expected.casefold()
    return bool(actual == expected)


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple | Mapping) and not value)


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return (not _empty(actual)) is bool(expected)
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        if isinstance(actual, list | tuple):
            return any(_equal(item, v) for item in actual for v in expected)
        return any(_equal(actual, v) for v in expected)
    if op == "contains":
        if isinstance(actual, str):
            return str(expected).casefold() in actual.casefold()
        if isinstance(actual, list | tuple):
            return any(_equal(item, expected) for item in actual)
        if isinstance(actual, Mapping):
            return expected in actual
        return False
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def leaf_from_text(text: str, where: str = "when") -> dict[str, Any]:
    """``"contact.lifecycle_stage eq mql"`` as a condition structure — a command-line shorthand.

    The value is read as JSON when it parses (``42``, ``true``, ``["a", "b"]``), otherwise as
    text; ``FIELD exists`` needs no value.
    """
    import json

    parts = text.strip().split(None, 2)
    if len(parts) == 2 and parts[1] == "exists":
        return {"field": parts[0], "op": "exists"}
    if len(parts) != 3:
        raise ValidationFailed.single(where, "invalid_condition", f"{text!r}: write FIELD OP VALUE, e.g. 'contact.lifecycle_stage eq mql'")
    field, op, raw = parts
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return {"field": field, "op": op, "value": value}
