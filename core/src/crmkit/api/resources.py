"""A resource of the HTTP API and the endpoints every resource gets.

A :class:`Resource` says how to read one kind of record (its repository), how to write it
(functions calling the same services as the CLI), and its schemas. :func:`collection_routes`
turns it into ``GET /<name>``, ``POST /<name>``, ``GET/PATCH/DELETE /<name>/{id}`` — whichever
the resource supports — with the API's conventions applied in one place: authentication and
:func:`~crmkit.api.auth.authorize`, record- and field-level rules
(:class:`~crmkit.api.visibility.Access`: lists filtered in SQL, records outside reach 404,
writes checked, hidden fields left out), strict bodies, idempotent POSTs, ETags and
``If-Match``, cursor pages and sparse fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from litestar import Request, Response, delete, get, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

from crmkit.api import openapi as doc
from crmkit.api.auth import authorize, caller
from crmkit.api.concurrency import etag_headers, expected_version
from crmkit.api.idempotency import IdempotencyStore, guarded, request_hash
from crmkit.api.keys import ApiKey
from crmkit.api.pagination import Listing, fetch_page, parse_fields, parse_page_request, project, read_query
from crmkit.api.schemas import BodySchema, JsonSchema, page_schema
from crmkit.api.visibility import Access
from crmkit.errors import NotFound
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.sql.repository import Repository
    from crmkit.storage.uow import UnitOfWork

#: Ids crmkit generates are 32 hex characters; anything much longer cannot be one.
MAX_ID_LENGTH = 64


@attrs.frozen
class Call:
    """What a resource's write functions get: the CRM, what the caller may reach and the query."""

    crm: CRM
    access: Access
    query: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def key(self) -> ApiKey:
        return self.access.key

    @property
    def actor(self) -> str | None:
        """The user the key acts for (recorded as ``changed_by``/``created_by``), if any."""
        return self.key.user_id


@attrs.frozen
class Written:
    """A created record, the status to answer and any extra headers."""

    entity: Any
    status: int = 201
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: Shown in this response only, beside the record (a new API key's secret).
    extra: Mapping[str, Any] = attrs.field(factory=dict)


Creator = Callable[[Call, dict[str, Any]], Written]
Updater = Callable[[Call, str, dict[str, Any], "int | None"], Any]
Deleter = Callable[[Call, str, "int | None"], None]


@attrs.frozen(kw_only=True)
class Resource:
    """One kind of record under ``/<name>``.

    :param family: the scope family (``contacts`` → ``contacts:read`` / ``contacts:write``).
    :param repository: the repository to read it from in a unit of work.
    :param record: the JSON Schema of one record in a response.
    :param create/update/delete: write functions; None when the record cannot be written so.
    :param create_query: query parameters ``POST`` takes (name → JSON Schema).
    :param create_found: when ``POST`` may answer 200 with a record that existed already
        (a matched contact), what that means.
    """

    name: str
    label: str
    family: str
    tag: str
    repository: Callable[[UnitOfWork], Repository[Any]]
    record: JsonSchema
    listing: Listing = Listing()
    serialize: Callable[[Any], dict[str, Any]] = to_jsonable
    finder: Callable[[CRM, str], Any] | None = None
    create: Creator | None = None
    create_body: BodySchema | None = None
    create_query: Mapping[str, JsonSchema] = attrs.field(factory=dict)
    create_found: str | None = None
    create_headers: tuple[str, ...] = ()
    update: Updater | None = None
    update_body: BodySchema | None = None
    delete: Deleter | None = None
    #: Completes listed rows before they are serialised (a pipeline's stages).
    decorate: Callable[[CRM, list[Any]], list[Any]] = lambda crm, rows: rows
    #: A new record is owned by the caller's user unless the body names an owner (see
    #: ``Access.with_default_owner``); False when ``create`` decides itself (contacts: a
    #: record matching an existing contact must not take it over).
    owned_on_create: bool = True

    @property
    def fields(self) -> list[str]:
        return list(self.record["properties"])

    def find(self, crm: CRM, ident: str) -> Any:
        if not ident or len(ident) > MAX_ID_LENGTH or "\x00" in ident:
            return None  # cannot exist; asking the database could fail on some backends
        if self.finder is not None:
            return self.finder(crm, ident)
        with crm.read() as uow:
            return self.repository(uow).find(ident)

    def load(self, crm: CRM, who: Access | ApiKey, ident: str, action: str) -> Any:
        """The record ``ident`` if the caller may ``action`` it: every endpoint taking an id
        comes through here, so the scope and record-level rules in ``authorize`` cover them
        all. A record outside the caller's reach is a 404, like a missing one."""
        access = who if isinstance(who, Access) else Access(crm, who)
        authorize(access, action, self.family)
        entity = self.find(crm, ident)
        if entity is None:
            raise NotFound(self.label, ident)
        authorize(access, action, self.family, entity)
        return entity

    def present(self, access: Access, entity: Any) -> dict[str, Any]:
        """A record as ``access`` may see it (fields it may not see left out)."""
        return access.hide(self.family, self.serialize(entity))

    def page(self, access: Access, params: Any) -> dict[str, Any]:
        """One page of the records ``access`` may see (the rule is a condition of the query,
        so pages are full and cursors walk only visible rows)."""
        page = parse_page_request(params, self.listing, self.fields)
        access.check_filters(self.family, page.filters)
        # The (owner, created_at, id) indexes serve the default order; other orders take the
        # whole condition in one query.
        partitions = access.partitions(self.family) if page.column == "created_at" else None
        if partitions is not None:
            rows, next_cursor = fetch_page(access.crm, self.repository, page, partitions=partitions)
        else:
            condition = access.condition(self.family)
            rows, next_cursor = fetch_page(access.crm, self.repository, page, [] if condition is None else [condition])
        data = [project(self.present(access, row), page.fields) for row in self.decorate(access.crm, rows)]
        return {"data": data, "next_cursor": next_cursor}

    def written(self, access: Access, entity: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                extra: Mapping[str, Any] | None = None) -> Response[Any]:
        """The response to a write: the record as stored (read back, so it looks exactly like
        a later GET — times in UTC, amounts as kept), with its ETag."""
        entity = self.find(access.crm, entity.id) or entity
        return Response({**self.present(access, entity), **(extra or {})}, status_code=status,
                        headers={**etag_headers(entity), **(headers or {})})


class Api:
    """What every handler of one app shares: the CRM and the idempotency store."""

    def __init__(self, crm: CRM):
        self.crm = crm
        self.idempotency = IdempotencyStore(crm)

    def post(self, request: Request[Any, Any, Any], body: Any, produce: Callable[[], Response[Any]]) -> Response[Any]:
        """Answer a POST through the idempotency store (errors become error responses first,
        so a retry gets the same error)."""
        key = caller(request).key
        fingerprint = request_hash(request.method, request.url.path, request.url.query or "", body)
        return self.idempotency.run(request.headers.get("idempotency-key"), key.id, fingerprint, guarded(produce))


ID_ERRORS = (400, 401, 403, 404)
WRITE_ERRORS = (400, 401, 403, 404, 409, 412, 422)


def collection_routes(resource: Resource, api: Api) -> list[HTTPRouteHandler]:
    """The standard endpoints of ``resource``."""
    r, crm = resource, api.crm
    base, item = f"/{r.name}", f"/{r.name}/{{id:str}}"
    title = r.label.capitalize()
    record_response = doc.json_response(f"The {r.label}.", r.record, ["ETag"])
    handlers: list[HTTPRouteHandler] = []

    @get(base, sync_to_thread=True, operation_id=f"list_{r.family}", operation_class=doc.operation(
        f"List {r.name.replace('-', ' ')}", tag=r.tag, errors=(400, 401, 403),
        ok={200: doc.json_response(f"A page of {r.name}, in `sort` order.", page_schema(r.record, f"{title}Page"))},
        parameters=[doc.ref("parameters", "Limit"), doc.ref("parameters", "Cursor"),
                    doc.query_parameter("sort", {"type": "string", "enum": r.listing.sort_values, "default": r.listing.order_column},
                                        "Order: a column, descending with a leading `-`."),
                    doc.fields_parameter(r.fields),
                    *(doc.query_parameter(name, schema, f"Only {r.name} whose {name} equals this.") for name, schema in r.listing.filters.items())],
    ))
    def list_records(request: Request[Any, Any, Any]) -> Response[Any]:
        access = caller(request)
        authorize(access, "read", r.family)
        return Response(r.page(access, request.query_params))

    handlers.append(list_records)

    if r.create is not None:
        assert r.create_body is not None
        create, body = r.create, r.create_body

        @post(base, sync_to_thread=True, operation_id=f"create_{r.family}", operation_class=doc.operation(
            f"Create a {r.label}", tag=r.tag, body=body.schema, errors=(400, 401, 403, 409, 422),
            ok={201: doc.json_response(f"The new {r.label}.", r.record, ["ETag", "Location", *r.create_headers]),
                **({200: doc.json_response(r.create_found, r.record, ["ETag", "Location", *r.create_headers])} if r.create_found else {})},
            parameters=[doc.ref("parameters", "IdempotencyKey"),
                        *(doc.query_parameter(name, schema, schema.get("description", "")) for name, schema in r.create_query.items())],
        ))
        def create_record(request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]) -> Response[Any]:
            access = caller(request)
            authorize(access, "write", r.family)

            def produce() -> Response[Any]:
                query = read_query(request.query_params, r.create_query)
                clean = body.check(data)
                access.check_write(r.family, clean)
                if r.owned_on_create:
                    clean = access.with_default_owner(r.family, clean)
                written = create(Call(crm, access, query), clean)
                return r.written(access, written.entity, written.status, {"Location": f"{base}/{written.entity.id}", **written.headers},
                                 written.extra)

            return api.post(request, data, produce)

        handlers.append(create_record)

    @get(item, sync_to_thread=True, operation_id=f"get_{r.family}", operation_class=doc.operation(
        f"Get a {r.label}", tag=r.tag, errors=ID_ERRORS, ok={200: record_response},
        parameters=[doc.fields_parameter(r.fields)],
    ))
    def get_record(request: Request[Any, Any, Any], id: FromPath[str]) -> Response[Any]:  # noqa: A002 - the path's name
        read_query(request.query_params, {"fields": {}})
        fields = parse_fields(request.query_params, r.fields)
        access = caller(request)
        entity = r.load(crm, access, id, "read")
        return Response(project(r.present(access, entity), fields), headers=etag_headers(entity))

    handlers.append(get_record)

    if r.update is not None:
        assert r.update_body is not None
        update, update_body = r.update, r.update_body

        @patch(item, sync_to_thread=True, operation_id=f"update_{r.family}", operation_class=doc.operation(
            f"Change fields of a {r.label}", tag=r.tag, body=update_body.schema, errors=WRITE_ERRORS, ok={200: record_response},
            parameters=[doc.ref("parameters", "IfMatch")],
            description="Fields not named are left as they are; null clears a field.",
        ))
        def update_record(request: Request[Any, Any, Any], id: FromPath[str], data: JSONBody[dict[str, Any]]) -> Response[Any]:  # noqa: A002
            access = caller(request)
            read_query(request.query_params, {})
            entity = r.load(crm, access, id, "write")
            version = expected_version(request.headers, entity)
            changes = update_body.check(data)
            access.check_write(r.family, changes)
            return r.written(access, update(Call(crm, access), entity.id, changes, version))

        handlers.append(update_record)

    if r.delete is not None:
        remove = r.delete

        @delete(item, sync_to_thread=True, operation_id=f"delete_{r.family}", operation_class=doc.operation(
            f"Delete a {r.label}", tag=r.tag, errors=WRITE_ERRORS, ok={204: doc.no_content(f"The {r.label} is gone.")},
            parameters=[doc.ref("parameters", "IfMatch")],
        ))
        def delete_record(request: Request[Any, Any, Any], id: FromPath[str]) -> None:  # noqa: A002
            access = caller(request)
            read_query(request.query_params, {})
            entity = r.load(crm, access, id, "write")
            remove(Call(crm, access), entity.id, expected_version(request.headers, entity))

        handlers.append(delete_record)
    return handlers


def action_route(
    resource: Resource,
    api: Api,
    name: str,
    run: Callable[[Call, Any, dict[str, Any] | None, int | None], Any],
    *,
    summary: str,
    body: BodySchema | None = None,
    result: JsonSchema | None = None,
) -> HTTPRouteHandler:
    """``POST /<resource>/{id}/<name>``: an action on one record (move a deal, complete a task).

    ``run(call, record, body, expected_version)`` returns the record as changed.
    """
    r, crm = resource, api.crm
    schema = body.schema if body is not None else None

    def respond(request: Request[Any, Any, Any], ident: str, data: dict[str, Any] | None) -> Response[Any]:
        access = caller(request)
        entity = r.load(crm, access, ident, "write")

        def produce() -> Response[Any]:
            read_query(request.query_params, {})
            clean = body.check(data) if body is not None else None
            return r.written(access, run(Call(crm, access), entity, clean, expected_version(request.headers, entity)))

        return api.post(request, data, produce)

    documented = dict(
        sync_to_thread=True, operation_id=f"{name}_{r.family}",
        operation_class=doc.operation(summary, tag=r.tag, body=schema, errors=WRITE_ERRORS,
                                      ok={200: doc.json_response(f"The {r.label} afterwards.", result or r.record, ["ETag"])},
                                      parameters=[doc.ref("parameters", "IdempotencyKey"), doc.ref("parameters", "IfMatch")]),
    )
    path = f"/{r.name}/{{id:str}}/{name}"
    if body is None:
        def without_body(request: Request[Any, Any, Any], id: FromPath[str]) -> Response[Any]:  # noqa: A002
            return respond(request, id, None)

        return post(path, **documented)(without_body)  # type: ignore[call-overload,no-any-return]

    def with_body(request: Request[Any, Any, Any], id: FromPath[str], data: JSONBody[dict[str, Any]]) -> Response[Any]:  # noqa: A002
        return respond(request, id, data)

    return post(path, **documented)(with_body)  # type: ignore[call-overload,no-any-return]


def sub_collection_route(resource: Resource, api: Api, name: str, items: Callable[[CRM, Any], list[Any]], *,
                         summary: str, item_schema: JsonSchema) -> HTTPRouteHandler:
    """``GET /<resource>/{id}/<name>``: records that belong to one record, all of them (a
    deal's stage history, a pipeline's stages — short by nature)."""
    r, crm = resource, api.crm

    @get(f"/{r.name}/{{id:str}}/{name}", sync_to_thread=True, operation_id=f"{name}_of_{r.family}",
         operation_class=doc.operation(summary, tag=r.tag, errors=ID_ERRORS, ok={200: doc.json_response(summary + ".", {
             "type": "object", "required": ["data"], "additionalProperties": False,
             "properties": {"data": {"type": "array", "items": item_schema}}})}))
    def list_items(request: Request[Any, Any, Any], id: FromPath[str]) -> Response[Any]:  # noqa: A002
        read_query(request.query_params, {})
        entity = r.load(crm, caller(request), id, "read")
        return Response({"data": to_jsonable(items(crm, entity))})

    return list_items
