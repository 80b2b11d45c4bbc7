"""The score itself: a pure function of a contact, its activities, the rules and a moment.

``score = Σ field-rule points (if the rule holds) + Σ activity points × 0.5 ** (age / half-life)``

Because the score is *derived* — recomputed from the stored activities at a given ``now`` —
handling the same event twice gives the same score: nothing is added up incrementally, so a
redelivered event cannot count twice, and an explanation can always be rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from crmkit.automation import conditions
from crmkit.domain.values import LifecycleStage
from crmkit.scoring.settings import ScoringSettings

#: The stages scoring may move a contact out of, in order; it never touches the others
#: (opportunity, customer …) and never moves anyone down.
LADDER = (LifecycleStage.SUBSCRIBER, LifecycleStage.LEAD, LifecycleStage.MQL, LifecycleStage.SQL)
PLACES = 2


@attrs.frozen(kw_only=True)
class Contribution:
    """What one rule added. ``points`` before decay, ``score`` after it."""

    rule: str
    source: str  # "activity" or "field"
    count: int
    points: float
    score: float
    newest: datetime | None = None

    @property
    def kept(self) -> float:
        """The share of the points decay left (1.0 for profile fields)."""
        return 1.0 if not self.points else self.score / self.points


@attrs.frozen(kw_only=True)
class ScoreCard:
    """A contact's score at ``at`` and the rules that drove it."""

    contact_id: str
    score: float
    at: datetime
    half_life_days: float
    contributions: tuple[Contribution, ...]
    stored_score: float
    lifecycle_stage: str
    promotes_to: str | None = None


def decay(age_days: float, half_life_days: float) -> float:
    """The share of its points an activity keeps at ``age_days`` (future dates count in full)."""
    if half_life_days <= 0:
        return 1.0
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


def compute(contact: Mapping[str, Any], activities: Iterable[tuple[str, datetime]], settings: ScoringSettings,
            now: datetime) -> tuple[float, list[Contribution]]:
    """The score and its contributions. ``contact`` is the contact as JSON data; ``activities``
    its ``(kind, occurred_at)`` pairs (kinds without points are ignored)."""
    per_kind: dict[str, list[datetime]] = {}
    for kind, occurred_at in activities:
        if kind in settings.activity_points:
            per_kind.setdefault(kind, []).append(occurred_at)
    contributions = []
    for kind in sorted(per_kind):
        each = float(settings.activity_points[kind])
        times = per_kind[kind]
        kept = sum(decay((now - at).total_seconds() / 86400, settings.half_life_days) for at in times)
        contributions.append(Contribution(rule=f"activity {kind} ({each:+g} each)", source="activity", count=len(times),
                                          points=each * len(times), score=round(each * kept, PLACES), newest=max(times)))
    facts = {"contact": contact}
    for rule in settings.field_rules:
        if conditions.parse(rule.condition()).holds(facts):
            contributions.append(Contribution(rule=rule.describe(), source="field", count=1, points=float(rule.points),
                                              score=float(rule.points)))
    return round(sum(c.score for c in contributions), PLACES), contributions


def promotion(current: str, score: float, settings: ScoringSettings) -> LifecycleStage | None:
    """The stage a contact at ``current`` moves up to with ``score``, or None."""
    if not settings.promote or current not in LADDER:
        return None
    target = LifecycleStage.SQL if score >= settings.sql_threshold else LifecycleStage.MQL if score >= settings.mql_threshold else None
    if target is None or LADDER.index(target) <= LADDER.index(LifecycleStage(current)):
        return None
    return target
