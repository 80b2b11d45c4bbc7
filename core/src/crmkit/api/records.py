"""``/contacts``, ``/organizations``, ``/campaigns``, ``/users`` and ``/teams``.

New contacts go through the intake pipeline (``crm.intake.submit(data, source="api")``) like an
import row or a web form, so they are matched against existing contacts and house plugins see
them; every other write calls the record's service, as the CLI does.

A key limited to its team (:mod:`crmkit.api.visibility`) may not reach a contact through the
intake's matching either: a new contact that matches one outside its reach is refused (409)
rather than merged into it, and a contact it creates is its user's unless the body names an
owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.handlers import HTTPRouteHandler

from crmkit import domain
from crmkit.api.errors import ApiError
from crmkit.api.pagination import Listing
from crmkit.api.resources import Api, Call, Resource, Written, collection_routes
from crmkit.api.schemas import entity_bodies, record_schema, value_schema
from crmkit.errors import ValidationFailed
from crmkit.intake import OnDuplicate

if TYPE_CHECKING:
    from crmkit.app import CRM

STRING: dict[str, Any] = {"type": "string"}


def enum_filter(enum_cls: type) -> dict[str, Any]:
    return value_schema(enum_cls)


def service_writes(service_name: str) -> dict[str, Any]:
    """``create``/``update``/``delete`` through ``crm.<service_name>`` (an ``EntityService``)."""

    def create(call: Call, data: dict[str, Any]) -> Written:
        return Written(getattr(call.crm, service_name).create(data, actor=call.actor))

    def update(call: Call, ident: str, data: dict[str, Any], version: int | None) -> Any:
        return getattr(call.crm, service_name).update(ident, data, expected_version=version, actor=call.actor)

    def delete(call: Call, ident: str, version: int | None) -> None:
        getattr(call.crm, service_name).delete(ident, expected_version=version, actor=call.actor)

    return {"create": create, "update": update, "delete": delete}


def fields_of(specs: list[Any]) -> list[tuple[str, bool]]:
    return [(spec.name, spec.required) for spec in specs]


def create_contact(call: Call, data: dict[str, Any]) -> Written:
    on_duplicate = call.query.get("on_duplicate", OnDuplicate.UPDATE.value)
    data = admit_contact(call, data, OnDuplicate(on_duplicate))
    result = call.crm.intake.submit(data, source="api", on_duplicate=on_duplicate, actor=call.actor)
    outcome = result.record.outcome or "created"
    return Written(result.contact, 201 if outcome == "created" else 200, {"X-Intake-Outcome": outcome})


def admit_contact(call: Call, data: dict[str, Any], on_duplicate: OnDuplicate) -> dict[str, Any]:
    """``data`` as the intake may take it from this caller. For a key limited to its team, the
    pipeline first runs without writing (``dry_run``) to see what the record would match: a
    match outside the key's reach is a 409 (updating or skipping it would write to, or reveal,
    a record the key may not see; the message does not say whose), and a record that matches
    nothing is owned by the key's user unless it names an owner. Unrestricted keys skip this."""
    access = call.access
    if access.unrestricted:
        return data
    match_id = None
    if on_duplicate != OnDuplicate.CREATE:
        trial = call.crm.intake.record(data, source="api", on_duplicate=on_duplicate)
        for record in call.crm.intake.submit_many([trial], dry_run=True):
            if record.rejected:
                raise ValidationFailed(record.issues)
            match_id = record.match_id
    if match_id is None:
        return access.with_default_owner("contacts", data)
    if not access.can_see("contacts", match_id):
        raise ApiError(409, "conflict", "this contact matches an existing contact outside this key's reach (by e-mail, phone, "
                                        "account number or external id); ask its owner or an admin, or send on_duplicate=create")
    return data


def service_resource(crm: CRM, service: str, *, label: str, tag: str, listing: Listing,
                     extra: dict[str, tuple[dict[str, Any], bool]] | None = None, **overrides: Any) -> Resource:
    """The usual resource: ``/<service>`` read from its repository and written through
    ``crm.<service>`` (an ``EntityService``), whose field specs make the bodies."""
    entity_service = getattr(crm, service)
    entity = entity_service.entity_cls
    create, update = entity_bodies(entity, fields_of(entity_service.specs()), title=entity.__name__, extra=extra)
    options: dict[str, Any] = {
        "name": service, "label": label, "family": service, "tag": tag, "listing": listing,
        "repository": lambda uow: getattr(uow, entity_service.repo_name),
        "record": record_schema(entity, title=entity.__name__),
        "create_body": create, "update_body": update, **service_writes(service),
    }
    return Resource(**{**options, **overrides})


def contacts(crm: CRM) -> Resource:
    return service_resource(
        crm, "contacts", label="contact", tag="contacts",
        listing=Listing(filters={"email": STRING, "phone": STRING, "account_number": STRING,
                                 "lifecycle_stage": enum_filter(domain.LifecycleStage), "owner_id": STRING,
                                 "organization_id": STRING}, sorts=("lifecycle_stage",)),
        create=create_contact, owned_on_create=False,
        create_found="The contact matched an existing one, which was updated or left as it was (see X-Intake-Outcome).",
        create_headers=("X-Intake-Outcome",),
        create_query={"on_duplicate": {
            "type": "string", "enum": [o.value for o in OnDuplicate], "default": OnDuplicate.UPDATE.value,
            "description": "When the contact matches an existing one (external id, e-mail, phone, account number): "
                           "update it (200), skip (200, unchanged) or create a new one anyway (201).",
        }},
    )


def organizations(crm: CRM) -> Resource:
    return service_resource(crm, "organizations", label="organization", tag="organizations",
                            listing=Listing(filters={"name": STRING, "domain": STRING, "owner_id": STRING}, sorts=("name",)))


def campaigns(crm: CRM) -> Resource:
    return service_resource(crm, "campaigns", label="campaign", tag="campaigns",
                            listing=Listing(filters={"channel": STRING}, sorts=("name",)))


def users(crm: CRM) -> Resource:
    return service_resource(crm, "users", label="user", tag="users and teams", listing=Listing(
        filters={"email": STRING, "role": enum_filter(domain.Role), "team_id": STRING}, sorts=("email",)))


def teams(crm: CRM) -> Resource:
    # Teams have no version column, so they are created and deleted but not edited.
    return service_resource(crm, "teams", label="team", tag="users and teams", listing=Listing(sorts=("name",)),
                            update=None, update_body=None)


def routes(api: Api) -> list[HTTPRouteHandler]:
    crm = api.crm
    return [handler for build in (contacts, organizations, campaigns, users, teams) for handler in collection_routes(build(crm), api)]
