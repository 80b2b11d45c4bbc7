"""Sales pipelines: ordered stages with a win probability and an outcome; deals that move
through them, every move recorded as a :class:`StageChange`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmkit.domain import fields as f
from crmkit.domain.values import IssueCollector, Outcome, new_id, utcnow
from crmkit.errors import ValidationFailed


@attrs.define(kw_only=True)
class Stage:
    id: str = attrs.field(factory=new_id)
    pipeline_id: str
    name: str
    position: int
    probability: float = attrs.field(validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0)))
    outcome: Outcome = Outcome.OPEN


@attrs.define(kw_only=True)
class Pipeline:
    id: str = attrs.field(factory=new_id)
    name: str
    stages: list[Stage] = attrs.field(factory=list)
    created_at: datetime = attrs.field(factory=utcnow)

    def stage_named(self, name_or_id: str) -> Stage:
        """Find a stage by id or by (case-insensitive) name."""
        for stage in self.stages:
            if stage.id == name_or_id or stage.name.lower() == name_or_id.lower():
                return stage
        known = ", ".join(s.name for s in self.stages)
        raise ValidationFailed.single("stage", "unknown_stage", f"pipeline {self.name!r} has no stage {name_or_id!r} (stages: {known})")

    @property
    def first_stage(self) -> Stage:
        return min(self.stages, key=lambda s: s.position)


def build_pipeline(name: Any, stages: Sequence[Sequence[Any]]) -> Pipeline:
    """Create a pipeline from ``(name, probability[, outcome])`` stages, in order.

    Input may be loose (probabilities as text, outcomes as ``"won"``): every value is parsed
    and every problem reported at once, named like ``stages[2].probability``.
    """
    collector = IssueCollector()
    clean_name = collector.run(f.text(255), name, "name")
    if clean_name is None and not any(i.field == "name" for i in collector.issues):
        collector.add("name", "required", "a pipeline needs a name")
    if not stages:
        collector.add("stages", "required", "a pipeline needs at least one stage")
    pipeline = Pipeline(name=clean_name or "")
    seen: set[str] = set()
    for position, spec in enumerate(stages or ()):
        label = f"stages[{position}]"
        if isinstance(spec, str | bytes) or not isinstance(spec, Sequence) or len(spec) not in (2, 3):
            collector.add(label, "invalid_type", "a stage is (name, probability) or (name, probability, outcome)")
            continue
        before = len(collector.issues)
        stage_name = collector.run(f.text(120), spec[0], f"{label}.name")
        probability = collector.run(f.number(0.0, 1.0), spec[1], f"{label}.probability")
        outcome = collector.run(f.enum_of(Outcome), spec[2] if len(spec) == 3 else Outcome.OPEN, f"{label}.outcome")
        reported = {i.field for i in collector.issues[before:]}
        if stage_name is None and f"{label}.name" not in reported:
            collector.add(f"{label}.name", "required", "a stage needs a name")
        elif stage_name is not None and stage_name.lower() in seen:
            collector.add(f"{label}.name", "duplicate", f"stage {stage_name!r} appears twice")
        elif stage_name is not None:
            seen.add(stage_name.lower())
        if probability is None and f"{label}.probability" not in reported:
            collector.add(f"{label}.probability", "required", "a stage needs a probability between 0 and 1")
        if len(collector.issues) > before:
            continue
        pipeline.stages.append(Stage(pipeline_id=pipeline.id, name=stage_name, position=position, probability=probability, outcome=outcome))
    if pipeline.stages and not any(stage.outcome == Outcome.OPEN for stage in pipeline.stages) and not collector.issues:
        collector.add("stages", "no_open_stage", "a pipeline needs at least one open stage for new deals")
    collector.raise_if_any()
    return pipeline


@attrs.define(kw_only=True)
class StageChange:
    id: str = attrs.field(factory=new_id)
    deal_id: str
    from_stage_id: str | None
    to_stage_id: str
    changed_at: datetime = attrs.field(factory=utcnow)
    changed_by: str | None = None


@attrs.define(kw_only=True)
class Deal:
    id: str = attrs.field(factory=new_id)
    title: str
    pipeline_id: str
    stage_id: str
    contact_id: str | None = None
    organization_id: str | None = None
    amount: Decimal = Decimal(0)
    currency: str = "USD"
    expected_close: date | None = None
    owner_id: str | None = None
    status: Outcome = Outcome.OPEN
    lost_reason: str | None = None
    closed_at: datetime | None = None
    custom: dict[str, Any] = attrs.field(factory=dict)
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    @staticmethod
    def field_specs() -> list[f.FieldSpec]:
        return [
            f.FieldSpec("title", f.text(255), required=True),
            f.FieldSpec("contact_id", f.text(64)),
            f.FieldSpec("organization_id", f.text(64)),
            f.FieldSpec("amount", f.money(minimum=0)),
            f.FieldSpec("currency", f.currency),
            f.FieldSpec("expected_close", f.date_),
            f.FieldSpec("owner_id", f.text(64)),
            f.FieldSpec("lost_reason", f.text(500)),
            f.FieldSpec("custom", f.custom_values),
        ]

    def move_to(
        self,
        pipeline: Pipeline,
        target: Stage,
        *,
        by: str | None = None,
        at: datetime | None = None,
        allow_pipeline_change: bool = False,
        lost_reason: str | None = None,
    ) -> StageChange:
        """Move this deal to ``target`` and return the :class:`StageChange` to record.

        Moving to a stage of another pipeline is refused unless ``allow_pipeline_change``; moving
        to the current stage is refused as a no-op. Entering a won/lost stage sets ``closed_at``;
        leaving one (re-opening) clears it.
        """
        if target.pipeline_id != pipeline.id:
            raise ValidationFailed.single("stage", "wrong_pipeline", f"stage {target.name!r} is not in pipeline {pipeline.name!r}")
        if pipeline.id != self.pipeline_id and not allow_pipeline_change:
            raise ValidationFailed.single(
                "stage", "pipeline_change", f"deal {self.id} is in another pipeline; moving it to {pipeline.name!r} must be asked for explicitly"
            )
        if target.id == self.stage_id:
            raise ValidationFailed.single("stage", "same_stage", f"deal is already in stage {target.name!r}")
        when = at or utcnow()
        change = StageChange(deal_id=self.id, from_stage_id=self.stage_id, to_stage_id=target.id, changed_at=when, changed_by=by)
        self.pipeline_id = pipeline.id
        self.stage_id = target.id
        self.status = target.outcome
        if target.outcome == Outcome.OPEN:
            self.closed_at = None
            self.lost_reason = None
        else:
            self.closed_at = when
            if target.outcome == Outcome.LOST and lost_reason:
                self.lost_reason = lost_reason
        self.updated_at = when
        return change
