"""``[plugins.scoring]`` in ``crmkit.toml``: points per activity kind and per profile field,
decay, and the lifecycle thresholds. Checked when the CRM opens, naming the bad key.

::

    [plugins.scoring]
    enabled = true               # scoring is off until switched on
    half_life_days = 30          # an activity's points halve every 30 days (0: no decay)
    mql_threshold = 50           # lead -> mql at 50 points
    sql_threshold = 100          # lead/mql -> sql at 100 points

    [plugins.scoring.activity_points]
    "email.opened" = 5
    "form.submitted" = 20
    meeting = 30

    [[plugins.scoring.field_rules]]
    field = "job_title"          # a contact field: industry, tags, address.country, custom.budget …
    op = "contains"              # eq, ne, in, contains, gt, gte, lt, lte, exists
    value = "director"
    points = 10
"""

from __future__ import annotations

from typing import Any

import attrs

from crmkit.errors import ValidationFailed

SECTION = "scoring"

DEFAULT_ACTIVITY_POINTS: dict[str, float] = {
    "email.opened": 5, "email.clicked": 10, "email.received": 10, "form.submitted": 20, "survey.answered": 10,
    "call": 10, "meeting": 30, "purchase": 40, "email.bounced": -10,
}


@attrs.define(kw_only=True)
class FieldRule:
    """Points for a profile field: ``field`` (of the contact), ``op`` and ``value`` as in
    automation conditions; ``label`` names the rule in explanations."""

    field: str
    op: str
    value: Any = None
    points: float = 0.0
    label: str | None = None

    def describe(self) -> str:
        if self.label:
            return self.label
        return f"{self.field} {self.op}" + ("" if self.op == "exists" else f" {self.value!r}")

    def condition(self) -> dict[str, Any]:
        """As an automation condition over the contact (``contact.<field>``)."""
        leaf: dict[str, Any] = {"field": f"contact.{self.field}", "op": self.op}
        if self.value is not None or self.op != "exists":
            leaf["value"] = self.value
        return leaf


def _default_field_rules() -> list[FieldRule]:
    return [FieldRule(field="job_title", op="contains", value="director", points=10)]


@attrs.define(kw_only=True)
class ScoringSettings:
    """:ivar enabled: scoring writes scores and lifecycle stages only once switched on: it
        takes ``score`` over (a score set by hand or imported lasts until the contact's next
        scored event) and its writes count as changes to the contact (a merge followed by a
        scored activity can then only be undone with ``force``). ``crmkit scores show``
        explains scores either way.
    :ivar half_life_days: an activity's points halve every this many days; 0 turns decay off.
    :ivar horizon_days: activities older than this are not counted at all (at a 30-day half
        life a year-old activity keeps 0.02 % of its points).
    :ivar promote: move contacts up the lifecycle at the thresholds (never down).
    """

    enabled: bool = False
    half_life_days: float = 30.0
    horizon_days: float = 365.0
    activity_points: dict[str, float] = attrs.field(factory=lambda: dict(DEFAULT_ACTIVITY_POINTS))
    field_rules: list[FieldRule] = attrs.field(factory=_default_field_rules)
    mql_threshold: float = 50.0
    sql_threshold: float = 100.0
    promote: bool = True

    def problems(self) -> list[str]:
        """Every problem cattrs' type checks cannot see, each naming its key (checked when the
        CRM opens, by :mod:`crmkit.builtin.scoring_plugin`)."""
        from crmkit.automation import conditions, facts
        from crmkit.domain.engagement import kind_name

        found = [f"{name} cannot be negative, got {getattr(self, name)}" for name in ("half_life_days", "horizon_days") if getattr(self, name) < 0]
        if self.sql_threshold < self.mql_threshold:
            found.append(f"sql_threshold ({self.sql_threshold}) must not be below mql_threshold ({self.mql_threshold})")
        for kind in self.activity_points:
            try:
                kind_name(kind, f"activity_points.{kind}")
            except ValidationFailed as exc:
                found.extend(f"{i.field}: {i.message}" for i in exc.issues)
        schema = facts.schema(["contact"])
        for index, rule in enumerate(self.field_rules):
            try:
                conditions.parse(rule.condition(), schema=schema, where=f"field_rules[{index}]")
            except ValidationFailed as exc:
                found.extend(f"{i.field}: {i.message}" for i in exc.issues)
        return found
