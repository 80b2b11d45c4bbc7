"""``/activities`` (append-only), ``/tasks`` (with ``POST /tasks/{id}/complete``),
``/consents`` (the ledger, append-only) and ``/custom-fields`` (definitions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.handlers import HTTPRouteHandler

from crmkit import domain
from crmkit.api.errors import ApiError
from crmkit.api.pagination import Listing
from crmkit.api.records import STRING, enum_filter, fields_of, service_resource
from crmkit.api.resources import Api, Call, Resource, Written, action_route, collection_routes
from crmkit.api.schemas import BodySchema, entity_bodies, record_schema, value_schema
from crmkit.domain.custom_fields import ENTITIES, FieldType

if TYPE_CHECKING:
    from crmkit.app import CRM

CUSTOM_FIELD_CREATE = BodySchema({
    "title": "CustomFieldCreate",
    "type": "object",
    "required": ["entity", "name", "type"],
    "additionalProperties": False,
    "properties": {
        "entity": {"type": "string", "enum": list(ENTITIES)},
        "name": {"type": "string", "description": "a-z, 0-9 and _, starting with a letter (at most 63)"},
        "type": value_schema(FieldType),
        "label": {"type": ["string", "null"]},
        "required": {"type": ["boolean", "null"], "description": "every record must have a value"},
        "choices": {"type": ["array", "null"], "items": {"type": "string"}, "description": "the allowed values of a choice field"},
    },
}, read_only=("id", "created_at"))


def log_activity(call: Call, data: dict[str, Any]) -> Written:
    # A channel's external_id is logged once: a redelivered webhook gets the first activity (200).
    external_id, channel = (data.get(name).strip() or None if isinstance(data.get(name), str) else None
                            for name in ("external_id", "channel"))
    known = None
    if external_id is not None:
        with call.crm.read() as uow:
            known = uow.activities.first(uow.activities.where(channel=channel, external_id=external_id))
        if known is not None and not call.access.can_see("activities", known.id):
            # Answering with the first activity would show a record outside the key's reach.
            raise ApiError(409, "conflict", "this channel's external_id was logged before, on a record outside this key's reach")
    activity = call.crm.activities.log(data, actor=call.actor)
    return Written(activity, 200 if known is not None and known.id == activity.id else 201)


def activities(crm: CRM) -> Resource:
    # Append-only: logged, never edited or deleted here (erasure anonymises them).
    return service_resource(
        crm, "activities", label="activity", tag="activities and tasks",
        listing=Listing(filters={"kind": STRING, "contact_id": STRING, "deal_id": STRING, "organization_id": STRING}),
        create=log_activity, update=None, update_body=None, delete=None,
        create_found="This channel's external_id was logged before: the activity logged then.",
    )


def tasks(crm: CRM) -> Resource:
    return service_resource(crm, "tasks", label="task", tag="activities and tasks",
                            listing=Listing(filters={"assignee_id": STRING, "contact_id": STRING, "deal_id": STRING}))


def complete_task(call: Call, task: domain.Task, data: dict[str, Any] | None, version: int | None) -> domain.Task:
    return call.crm.tasks.complete(task.id, actor=call.actor)  # type: ignore[no-any-return]


def record_consent(call: Call, data: dict[str, Any]) -> Written:
    return Written(call.crm.consents.record(data, actor=call.actor))


def consents() -> Resource:
    # The consent ledger is appended to, never edited: its history is the evidence.
    create, _ = entity_bodies(domain.Consent, fields_of(domain.Consent.field_specs()), title="Consent")
    return Resource(
        name="consents", label="consent", family="consents", tag="consents",
        repository=lambda uow: uow.consents,
        record=record_schema(domain.Consent, title="Consent"),
        listing=Listing(filters={"contact_id": STRING, "channel": STRING, "purpose": STRING,
                                 "status": enum_filter(domain.ConsentStatus)}, order_column="recorded_at"),
        create=record_consent, create_body=create,
    )


def define_custom_field(call: Call, data: dict[str, Any]) -> Written:
    definition = call.crm.custom_fields.define(
        data["entity"], data["name"], data["type"], label=data.get("label"), required=bool(data.get("required")),
        choices=data.get("choices") or [], actor=call.actor,
    )
    return Written(definition)


def custom_fields() -> Resource:
    return Resource(
        name="custom-fields", label="custom field", family="custom_fields", tag="custom fields",
        repository=lambda uow: uow.custom_fields,
        record=record_schema(domain.CustomFieldDefinition, title="CustomField"),
        listing=Listing(filters={"entity": {"type": "string", "enum": list(ENTITIES)}}),
        create=define_custom_field, create_body=CUSTOM_FIELD_CREATE,
    )


def routes(api: Api) -> list[HTTPRouteHandler]:
    task = tasks(api.crm)
    return [
        *collection_routes(activities(api.crm), api),
        *collection_routes(task, api),
        action_route(task, api, "complete", complete_task, summary="Mark a task done"),
        *collection_routes(consents(), api),
        *collection_routes(custom_fields(), api),
    ]
