"""Pipelines and deals: creating pipelines, moving deals between stages with history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crmkit import domain
from crmkit.domain.fields import text
from crmkit.domain.sales import build_pipeline
from crmkit.domain.values import Outcome, parse_datetime
from crmkit.errors import ConflictError, NotFound, ValidationFailed
from crmkit.serialize import to_jsonable
from crmkit.services.base import EntityService, Service, ValidationContext
from crmkit.services.records import check_references
from crmkit.storage.uow import UnitOfWork


def load_pipeline(uow: UnitOfWork, name_or_id: str) -> domain.Pipeline:
    pipeline = uow.pipelines.find(name_or_id) or uow.pipelines.first(uow.pipelines.where(name=name_or_id))
    if pipeline is None:
        names = ", ".join(p.name for p in uow.pipelines.list(order_by=("name",))) or "none yet"
        raise ValidationFailed.single("pipeline", "not_found", f"no pipeline named {name_or_id!r} (pipelines: {names})")
    pipeline.stages = uow.stages.list(uow.stages.where(pipeline_id=pipeline.id), order_by=("position",))
    return pipeline


class PipelineService(Service):
    def create(self, name: str, stages: Sequence[Sequence[Any]], *, actor: str | None = None) -> domain.Pipeline:
        """Create a pipeline from ``(stage name, probability[, outcome])`` stages, in order."""
        pipeline = build_pipeline(name, stages)
        with self.uow(actor) as uow:
            if uow.pipelines.first(uow.pipelines.where(name=pipeline.name)) is not None:
                raise ValidationFailed.single("name", "duplicate", f"a pipeline named {pipeline.name!r} exists already")
            uow.pipelines.add(pipeline)
            uow.stages.add_many(pipeline.stages)
            uow.emit("pipeline.created", pipeline.id, to_jsonable(pipeline))
        return pipeline

    def get(self, name_or_id: str) -> domain.Pipeline:
        with self.crm.read() as uow:
            return load_pipeline(uow, name_or_id)

    def list(self) -> list[domain.Pipeline]:
        with self.crm.read() as uow:
            pipelines = uow.pipelines.list(order_by=("name",))
            stages = uow.stages.list(order_by=("pipeline_id", "position"))
        for pipeline in pipelines:
            pipeline.stages = [s for s in stages if s.pipeline_id == pipeline.id]
        return pipelines


class DealService(EntityService[domain.Deal]):
    repo_name, kind, entity_cls, custom_entity = "deals", "deal", domain.Deal, "deal"

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"contact_id": "contacts", "organization_id": "organizations", "owner_id": "users"})

    def create_in(self, uow: UnitOfWork, data: Mapping[str, Any]) -> domain.Deal:
        """Create a deal. ``pipeline`` (name or id) is required; ``stage`` defaults to the
        pipeline's first stage. The initial placement is recorded as a stage change."""
        data = dict(data)
        pipeline_ref = data.pop("pipeline", None) or data.pop("pipeline_id", None)
        stage_ref = data.pop("stage", None) or data.pop("stage_id", None)
        # Imports may backdate a deal; parsed like any date-time input (naive means UTC).
        created = data.pop("created_at", None)
        at = None if created in (None, "") else parse_datetime(created, "created_at")
        if not pipeline_ref:
            try:
                self.parse(uow, data)
            except ValidationFailed as exc:
                raise ValidationFailed([*exc.issues, *ValidationFailed.single("pipeline", "required", "is required").issues]) from None
            raise ValidationFailed.single("pipeline", "required", "is required")
        pipeline = load_pipeline(uow, str(pipeline_ref))
        stage = pipeline.stage_named(str(stage_ref)) if stage_ref else pipeline.first_stage
        clean = self.parse(uow, data)
        if clean.get("currency") is None:
            clean["currency"] = self.crm.config.default_currency
        deal = domain.Deal(pipeline_id=pipeline.id, stage_id=stage.id, status=stage.outcome,
                           **{k: v for k, v in clean.items() if v is not None})
        if at is not None:
            deal.created_at = deal.updated_at = at
        if stage.outcome != Outcome.OPEN:
            deal.closed_at = deal.created_at
        uow.deals.add(deal)
        uow.stage_changes.add(domain.StageChange(deal_id=deal.id, from_stage_id=None, to_stage_id=stage.id,
                                                 changed_at=deal.created_at, changed_by=uow.actor))
        uow.emit("deal.created", deal.id, to_jsonable(deal))
        return deal

    def move(
        self,
        deal_id: str,
        stage: str,
        *,
        pipeline: str | None = None,
        allow_pipeline_change: bool = False,
        expected_version: int | None = None,
        lost_reason: str | None = None,
        at: datetime | None = None,
        actor: str | None = None,
    ) -> tuple[domain.Deal, domain.StageChange]:
        """Move a deal to ``stage`` (name or id) of its pipeline — or of ``pipeline`` when
        ``allow_pipeline_change`` is given. The deal update and its :class:`StageChange` commit
        together; ``deal.stage_changed`` and ``deal.won``/``deal.lost`` are emitted."""
        with self.uow(actor) as uow:
            return self.move_in(uow, deal_id, stage, pipeline=pipeline, allow_pipeline_change=allow_pipeline_change,
                                expected_version=expected_version, lost_reason=lost_reason, at=at)

    def move_in(
        self,
        uow: UnitOfWork,
        deal_id: str,
        stage: str,
        *,
        pipeline: str | None = None,
        allow_pipeline_change: bool = False,
        expected_version: int | None = None,
        lost_reason: str | None = None,
        at: datetime | str | None = None,
    ) -> tuple[domain.Deal, domain.StageChange]:
        """:meth:`move` inside the caller's unit of work (to combine it with other writes)."""
        when = None if at in (None, "") else parse_datetime(at, "at")
        reason = text(500)(lost_reason, "lost_reason")
        deal = uow.deals.get(deal_id)
        if expected_version is not None and deal.version != expected_version:
            raise ConflictError("deal", deal_id, expected_version)
        target_pipeline = load_pipeline(uow, pipeline or deal.pipeline_id)
        target = target_pipeline.stage_named(stage)
        change = deal.move_to(target_pipeline, target, by=uow.actor, at=when,
                              allow_pipeline_change=allow_pipeline_change, lost_reason=reason)
        uow.deals.update(deal)
        uow.stage_changes.add(change)
        payload = {"deal_id": deal.id, "from_stage_id": change.from_stage_id, "to_stage_id": change.to_stage_id,
                   "to_stage": target.name, "pipeline_id": target_pipeline.id, "amount": str(deal.amount)}
        uow.emit("deal.stage_changed", deal.id, payload)
        if target.outcome != Outcome.OPEN:
            uow.emit(f"deal.{target.outcome.value}", deal.id, payload)
        return deal, change

    def history(self, deal_id: str) -> list[domain.StageChange]:
        with self.crm.read() as uow:
            if uow.deals.find(deal_id) is None:
                raise NotFound("deal", deal_id)
            return uow.stage_changes.list(uow.stage_changes.where(deal_id=deal_id), order_by=("changed_at", "id"))
