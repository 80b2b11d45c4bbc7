"""``/pipelines`` (with their stages) and ``/deals``, including ``POST /deals/{id}/move`` and
``GET /deals/{id}/history``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.handlers import HTTPRouteHandler

from crmkit import domain
from crmkit.api.pagination import Listing
from crmkit.api.records import STRING, enum_filter, service_resource
from crmkit.api.resources import Api, Call, Resource, Written, action_route, collection_routes, sub_collection_route
from crmkit.api.schemas import BodySchema, object_schema, record_schema, value_schema

if TYPE_CHECKING:
    from crmkit.app import CRM

STAGE_INPUT = {
    "type": "object",
    "required": ["name", "probability"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "probability": {"type": "number", "description": "chance of winning a deal in this stage, 0 to 1"},
        "outcome": value_schema(domain.Outcome | None),
    },
}
PIPELINE_CREATE = BodySchema({
    "title": "PipelineCreate",
    "type": "object",
    "required": ["name", "stages"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "stages": {"type": "array", "minItems": 1, "items": STAGE_INPUT}},
}, read_only=("id", "created_at"))
MOVE = BodySchema({
    "title": "DealMove",
    "type": "object",
    "required": ["stage"],
    "additionalProperties": False,
    "properties": {
        "stage": {"type": "string", "description": "the target stage's name or id"},
        "pipeline": {"type": ["string", "null"], "description": "another pipeline (name or id); needs allow_pipeline_change"},
        "allow_pipeline_change": {"type": ["boolean", "null"]},
        "lost_reason": {"type": ["string", "null"], "description": "why the deal was lost (for a lost stage)"},
        "at": {"type": ["string", "null"], "format": "date-time", "description": "when the move happened (default: now)"},
    },
})


def find_pipeline(crm: CRM, ident: str) -> domain.Pipeline | None:
    with crm.read() as uow:
        pipeline = uow.pipelines.find(ident)
        if pipeline is not None:
            pipeline.stages = uow.stages.list(uow.stages.where(pipeline_id=ident), order_by=("position",))
        return pipeline


def with_stages(crm: CRM, pipelines: list[domain.Pipeline]) -> list[domain.Pipeline]:
    if pipelines:
        with crm.read() as uow:
            stages = uow.stages.list([uow.stages.table.c.pipeline_id.in_([p.id for p in pipelines])], order_by=("pipeline_id", "position"))
        for pipeline in pipelines:
            pipeline.stages = [stage for stage in stages if stage.pipeline_id == pipeline.id]
    return pipelines


def create_pipeline(call: Call, data: dict[str, Any]) -> Written:
    stages = [(s["name"], s["probability"], s.get("outcome") or domain.Outcome.OPEN.value) for s in data["stages"]]
    return Written(call.crm.pipelines.create(data["name"], stages, actor=call.actor))


def pipelines() -> Resource:
    return Resource(
        name="pipelines", label="pipeline", family="pipelines", tag="pipelines and deals",
        repository=lambda uow: uow.pipelines,
        record=record_schema(domain.Pipeline, title="Pipeline"),
        listing=Listing(sorts=("name",)),
        finder=find_pipeline, decorate=with_stages,
        create=create_pipeline, create_body=PIPELINE_CREATE,
    )


def deals(crm: CRM) -> Resource:
    return service_resource(
        crm, "deals", label="deal", tag="pipelines and deals",
        listing=Listing(filters={"pipeline_id": STRING, "stage_id": STRING, "status": enum_filter(domain.Outcome),
                                 "contact_id": STRING, "organization_id": STRING, "owner_id": STRING}, sorts=("status",)),
        extra={"pipeline": ({"type": "string", "description": "the pipeline's name or id"}, True),
               "stage": ({"type": "string", "description": "a stage's name or id (default: the pipeline's first stage)"}, False)},
    )


def move_deal(call: Call, deal: domain.Deal, data: dict[str, Any] | None, version: int | None) -> domain.Deal:
    assert data is not None
    moved, _change = call.crm.deals.move(
        deal.id, data["stage"], pipeline=data.get("pipeline"), allow_pipeline_change=bool(data.get("allow_pipeline_change")),
        expected_version=version, lost_reason=data.get("lost_reason"), at=data.get("at"), actor=call.actor,
    )
    return moved  # type: ignore[no-any-return]


def routes(api: Api) -> list[HTTPRouteHandler]:
    pipeline, deal = pipelines(), deals(api.crm)
    stage_schema = object_schema(domain.Stage)
    return [
        *collection_routes(pipeline, api),
        sub_collection_route(pipeline, api, "stages", lambda crm, p: p.stages, summary="The pipeline's stages, in order",
                             item_schema=stage_schema),
        *collection_routes(deal, api),
        action_route(deal, api, "move", move_deal, summary="Move a deal to another stage", body=MOVE),
        sub_collection_route(deal, api, "history", lambda crm, d: crm.deals.history(d.id),
                             summary="The deal's stage changes, oldest first", item_schema=object_schema(domain.StageChange)),
    ]
