"""Survivorship: which value of two duplicate contacts the merged contact keeps, field by field.

Pure domain rules (no storage): :func:`resolve` takes the two records — ``a`` and ``b`` in the
order the caller named them — and which of them survives, and returns the merged values plus
a decision per field saying which rule chose which side.

Rules (:class:`Rule`; given per field as ``"most_recent"``, ``"prefer_source:web"`` …):

``keep_a`` / ``keep_b``
    that record's value, even when it is empty.
``most_recent``
    the value of the record updated last (``updated_at``).
``most_complete``
    a non-empty value beats an empty one; between two values the longer text (names, job
    title, location …), the address/attribution with more parts filled, the longer list or
    mapping wins. For values where length means nothing (e-mail, phone, ids, dates, numbers)
    the survivor's is kept.
``prefer_source:X``
    the value of the record whose ``source.channel`` is ``X``; when both or neither came from
    ``X``, the field's default rule decides.
``oldest``
    the value of the record created first.
``union`` (tags), ``merge_keys`` (custom), ``most_advanced`` (lifecycle_stage), ``max`` (score)
    combine both values.

Except for ``keep_a``/``keep_b``, an empty value never beats a non-empty one, and a tie goes to
the survivor. Nested values (address, source) are taken whole from one record, never mixed:
one person's street with another's city would be a wrong address.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from crmkit.domain.contacts import Contact
from crmkit.domain.values import LifecycleStage
from crmkit.errors import FieldIssue, ValidationFailed


class Side(enum.StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


class RuleKind(enum.StrEnum):
    KEEP_A = "keep_a"
    KEEP_B = "keep_b"
    MOST_RECENT = "most_recent"
    MOST_COMPLETE = "most_complete"
    PREFER_SOURCE = "prefer_source"
    OLDEST = "oldest"
    UNION = "union"
    MERGE_KEYS = "merge_keys"
    MOST_ADVANCED = "most_advanced"
    MAX = "max"


#: Rules that combine both values and so only make sense for one field.
FIELD_ONLY_RULES: dict[RuleKind, str] = {
    RuleKind.UNION: "tags",
    RuleKind.MERGE_KEYS: "custom",
    RuleKind.MOST_ADVANCED: "lifecycle_stage",
    RuleKind.MAX: "score",
}


@attrs.frozen
class Rule:
    kind: RuleKind
    source: str | None = None  # the channel of ``prefer_source``

    def __str__(self) -> str:
        return f"{self.kind}:{self.source}" if self.kind is RuleKind.PREFER_SOURCE else str(self.kind)


#: The contact fields a merge decides, with their default rule. Identity and descriptive fields
#: keep the most complete value; attribution is first touch, so the oldest record's.
DEFAULT_RULES: dict[str, Rule] = {
    **{name: Rule(RuleKind.MOST_COMPLETE) for name in (
        "first_name", "last_name", "email", "phone", "address", "birth_date", "account_number",
        "job_title", "industry", "location", "owner_id", "organization_id",
    )},
    "source": Rule(RuleKind.OLDEST),
    "lifecycle_stage": Rule(RuleKind.MOST_ADVANCED),
    "score": Rule(RuleKind.MAX),
    "tags": Rule(RuleKind.UNION),
    "custom": Rule(RuleKind.MERGE_KEYS),
}

#: Free-text fields where a longer value is a more complete one ("J." < "John").
_LENGTH_MEANS_MORE = frozenset({"first_name", "last_name", "job_title", "industry", "location"})

#: How far along the lifecycle a stage is. A churned customer ranks above every prospect
#: stage but below a current customer.
_STAGE_RANK = {
    stage: rank for rank, stage in enumerate([
        LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.MQL, LifecycleStage.SQL,
        LifecycleStage.OPPORTUNITY, LifecycleStage.CHURNED, LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST,
    ])
}

IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name")


@attrs.frozen
class FieldDecision:
    """How one field was decided: the rule and the side whose value was kept
    (``both`` when the rule combined them, ``none`` when both were empty)."""

    rule: str
    chosen: str


@attrs.define
class Resolution:
    values: dict[str, Any]
    decisions: dict[str, FieldDecision]


def parse_rule(text: str | Rule, field: str) -> Rule:
    """Parse ``"most_recent"`` / ``"prefer_source:web"`` … for ``field``; raise naming the field."""
    if isinstance(text, Rule):
        rule = text
    else:
        name, _, arg = str(text).strip().partition(":")
        try:
            kind = RuleKind(name.strip().lower())
        except ValueError:
            allowed = ", ".join(k.value + (":CHANNEL" if k is RuleKind.PREFER_SOURCE else "") for k in RuleKind)
            raise ValidationFailed.single(f"rules.{field}", "unknown_rule", f"{text!r} is not a survivorship rule (rules: {allowed})") from None
        if kind is RuleKind.PREFER_SOURCE and not arg.strip():
            raise ValidationFailed.single(f"rules.{field}", "missing_source", "prefer_source needs a channel, e.g. prefer_source:web")
        if kind is not RuleKind.PREFER_SOURCE and arg:
            raise ValidationFailed.single(f"rules.{field}", "unexpected_argument", f"rule {kind} takes no argument (got {arg!r})")
        rule = Rule(kind, arg.strip() if kind is RuleKind.PREFER_SOURCE else None)
    only = FIELD_ONLY_RULES.get(rule.kind)
    if only is not None and only != field:
        raise ValidationFailed.single(f"rules.{field}", "rule_not_applicable", f"rule {rule.kind} applies to {only} only")
    return rule


def parse_rules(rules: Mapping[str, str | Rule] | None) -> dict[str, Rule]:
    """The effective rule of every field: the defaults overridden by ``rules``; every bad entry
    reported at once."""
    effective = dict(DEFAULT_RULES)
    issues: list[FieldIssue] = []
    for field, text in (rules or {}).items():
        if field not in DEFAULT_RULES:
            issues.append(FieldIssue(f"rules.{field}", "unknown_field", f"{field!r} is not a mergeable contact field (fields: {', '.join(DEFAULT_RULES)})"))
            continue
        try:
            effective[field] = parse_rule(text, field)
        except ValidationFailed as exc:
            issues.extend(exc.issues)
    if issues:
        raise ValidationFailed(issues)
    return effective


def is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str | list | dict):
        return not value
    if attrs.has(type(value)):
        return all(is_empty(v) for v in attrs.astuple(value, recurse=False))
    return False


def completeness(field: str, value: Any) -> int:
    """How much of ``field`` ``value`` fills; only ever compared between two values of one field."""
    if is_empty(value):
        return 0
    if attrs.has(type(value)):
        return sum(not is_empty(v) for v in attrs.astuple(value, recurse=False))
    if isinstance(value, list | dict):
        return len(value)
    if isinstance(value, str) and field in _LENGTH_MEANS_MORE:
        return len(value)
    return 1


def choose_survivor(a: Contact, b: Contact) -> Side:
    """The default survivor: the older record (its id is the one other systems are likeliest
    to hold; field values are chosen per field anyway); on a tie the more complete one, then a."""
    if a.created_at != b.created_at:
        return Side.A if a.created_at < b.created_at else Side.B
    filled_a = sum(completeness(name, getattr(a, name)) > 0 for name in DEFAULT_RULES)
    filled_b = sum(completeness(name, getattr(b, name)) > 0 for name in DEFAULT_RULES)
    return Side.B if filled_b > filled_a else Side.A


def resolve(a: Contact, b: Contact, survivor: Side, rules: Mapping[str, Rule]) -> Resolution:
    """Merge the field values of ``a`` and ``b`` by ``rules`` (every field of
    :data:`DEFAULT_RULES` must have one; see :func:`parse_rules`)."""
    records = {Side.A: a, Side.B: b}
    values: dict[str, Any] = {}
    decisions: dict[str, FieldDecision] = {}
    for field in DEFAULT_RULES:
        rule = rules[field]
        pair = {side: getattr(record, field) for side, record in records.items()}
        value, chosen = _apply(rule, field, pair, records, survivor)
        values[field] = value
        decisions[field] = FieldDecision(str(rule), chosen)
    # The merged record keeps the earliest creation: the person has been known since then.
    values["created_at"] = min(a.created_at, b.created_at)
    if not any(values.get(name) for name in IDENTITY_FIELDS):
        raise ValidationFailed.single("rules", "no_identity", "the merged contact would have none of email, phone, first_name or last_name")
    return Resolution(values, decisions)


def _pick(pair: dict[Side, Any], preferred: Side) -> tuple[Any, str]:
    """``preferred``'s value unless it is empty and the other is not."""
    if is_empty(pair[preferred]) and not is_empty(pair[preferred.other]):
        return pair[preferred.other], preferred.other.value
    if is_empty(pair[preferred]):
        return pair[preferred], "none"
    return pair[preferred], preferred.value


def _apply(rule: Rule, field: str, pair: dict[Side, Any], records: dict[Side, Contact], survivor: Side) -> tuple[Any, str]:
    kind = rule.kind
    if kind is RuleKind.KEEP_A:
        return pair[Side.A], Side.A.value
    if kind is RuleKind.KEEP_B:
        return pair[Side.B], Side.B.value
    if kind is RuleKind.MOST_RECENT:
        return _pick(pair, _by(records, lambda c: c.updated_at, survivor, latest=True))
    if kind is RuleKind.OLDEST:
        return _pick(pair, _by(records, lambda c: c.created_at, survivor, latest=False))
    if kind is RuleKind.MOST_COMPLETE:
        score = {side: completeness(field, value) for side, value in pair.items()}
        preferred = survivor if score[survivor] >= score[survivor.other] else survivor.other
        return _pick(pair, preferred)
    if kind is RuleKind.PREFER_SOURCE:
        from_source = [side for side, record in records.items() if record.source.channel == rule.source]
        if len(from_source) == 1:
            return _pick(pair, from_source[0])
        return _apply(DEFAULT_RULES[field], field, pair, records, survivor)
    if kind is RuleKind.UNION:
        first, second = pair[survivor], pair[survivor.other]
        return list(dict.fromkeys([*first, *second])), "both"
    if kind is RuleKind.MERGE_KEYS:
        merged = dict(pair[survivor.other])
        merged.update({k: v for k, v in pair[survivor].items() if not is_empty(v) or k not in merged})
        return merged, "both"
    if kind is RuleKind.MOST_ADVANCED:
        preferred = survivor if _STAGE_RANK[pair[survivor]] >= _STAGE_RANK[pair[survivor.other]] else survivor.other
        return pair[preferred], preferred.value
    if kind is RuleKind.MAX:
        preferred = survivor if pair[survivor] >= pair[survivor.other] else survivor.other
        return pair[preferred], preferred.value
    raise AssertionError(f"unhandled rule {kind}")  # pragma: no cover - RuleKind is exhaustive above


def _by(records: dict[Side, Contact], key: Callable[[Contact], Any], survivor: Side, *, latest: bool) -> Side:
    mine, theirs = key(records[survivor]), key(records[survivor.other])
    if mine == theirs:
        return survivor
    return survivor if (mine > theirs) == latest else survivor.other
