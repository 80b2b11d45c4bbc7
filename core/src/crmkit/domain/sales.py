"""Sales pipelines: ordered stages with a win probability and an outcome; deals that move
through them, every move recorded as a :class:`StageChange`."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmkit.domain import fields as f
from crmkit.domain.values import Outcome, new_id, utcnow
from crmkit.errors import FieldIssue, ValidationFailed


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


def build_pipeline(name: str, stages: list[tuple[str, float, Outcome]]) -> Pipeline:
    """Create a pipeline from ``(name, probability, outcome)`` triples, validating all of them."""
    issues: list[FieldIssue] = []
    clean_name = (name or "").strip()
    if not clean_name:
        issues.append(FieldIssue("name", "required", "a pipeline needs a name"))
    if not stages:
        issues.append(FieldIssue("stages", "required", "a pipeline needs at least one stage"))
    seen: set[str] = set()
    pipeline = Pipeline(name=clean_name)
    for position, (stage_name, probability, outcome) in enumerate(stages):
        label = f"stages[{position}]"
        stage_name = (stage_name or "").strip()
        if not stage_name:
            issues.append(FieldIssue(f"{label}.name", "required", "a stage needs a name"))
        elif stage_name.lower() in seen:
            issues.append(FieldIssue(f"{label}.name", "duplicate", f"stage {stage_name!r} appears twice"))
        seen.add(stage_name.lower())
        if not 0.0 <= probability <= 1.0:
            issues.append(FieldIssue(f"{label}.probability", "out_of_range", f"probability {probability} is not between 0 and 1"))
            continue
        pipeline.stages.append(Stage(pipeline_id=pipeline.id, name=stage_name, position=position, probability=probability, outcome=outcome))
    if stages and not any(outcome == Outcome.OPEN for _, _, outcome in stages):
        issues.append(FieldIssue("stages", "no_open_stage", "a pipeline needs at least one open stage for new deals"))
    if issues:
        raise ValidationFailed(issues)
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
            f.FieldSpec("custom", f.mapping),
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
