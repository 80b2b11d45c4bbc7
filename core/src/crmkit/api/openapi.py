"""The OpenAPI description of crmkit's endpoints.

Litestar documents paths, path parameters and security from the handlers. Bodies, query
parameters and responses are crmkit's own schemas (:mod:`crmkit.api.schemas`), attached per
handler through an ``operation_class`` built by :func:`operation`. Shared pieces — error
responses, paging parameters, headers — are OpenAPI components referenced by ``$ref``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import Components, OpenAPIMediaType, Operation, RequestBody, SecurityScheme

from crmkit.api.errors import ERROR_SCHEMA
from crmkit.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from crmkit.api.idempotency import MAX_LENGTH as IDEMPOTENCY_MAX_LENGTH
from crmkit.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from crmkit.api.schemas import JsonSchema

SECURITY_SCHEME = "apiKey"
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "A query parameter, a header or the body could not be read (the issues name which)."),
    401: ("Unauthorized", "No API key, or one that is invalid, expired or revoked."),
    403: ("Forbidden", "The API key's role or scopes do not allow this, or the body writes a field or an owner beyond its reach "
                       "(the issues name which)."),
    404: ("NotFound", "No record has this id that this API key may see (records outside its reach are not found)."),
    409: ("Conflict", "The record changed while it was written, or a request with this Idempotency-Key is still running."),
    412: ("PreconditionFailed", "If-Match names a version the record is no longer at."),
    422: ("Unprocessable", "The body was rejected: every issue names its field. Also: an Idempotency-Key reused for another request."),
}
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "The record's version; send it back in If-Match to write only if nobody changed it since.",
             "schema": {"type": "string"}},
    "Location": {"description": "The URL of the created record.", "schema": {"type": "string"}},
    "X-Intake-Outcome": {"description": "What the intake pipeline did with the contact.",
                         "schema": {"type": "string", "enum": ["created", "updated", "skipped"]}},
}
PARAMETERS: dict[str, dict[str, Any]] = {
    "Limit": {"name": "limit", "in": "query", "required": False, "description": "Page size.",
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
    "Cursor": {"name": "cursor", "in": "query", "required": False,
               "description": "The `next_cursor` of the previous page (with the same `sort` and filters).",
               "schema": {"type": "string"}},
    "IdempotencyKey": {"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
                       "description": "A unique key per intended write: a retry with the same key and request gets the first "
                                      "response again instead of writing twice (kept 24 hours).",
                       "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_MAX_LENGTH}},
    "IfMatch": {"name": "If-Match", "in": "header", "required": False,
                "description": "The ETag the change is based on; a record at another version answers 412.",
                "schema": {"type": "string"}},
}


def components() -> Components:
    return Components(
        security_schemes={SECURITY_SCHEME: SecurityScheme(
            type="http", scheme="bearer",
            description="An API key from `crmkit api-keys create` (or POST /api-keys): `Authorization: Bearer crmkit_…`.",
        )},
        responses={name: json_response(description, ERROR_SCHEMA) for name, description in ERRORS.values()},  # type: ignore[misc]
        parameters=PARAMETERS,  # type: ignore[arg-type]
        headers=HEADERS,  # type: ignore[arg-type]
    )


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_response(description: str, schema: JsonSchema, headers: Iterable[str] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    names = list(headers)
    if names:
        response["headers"] = {name: ref("headers", name) for name in names}
    return response


def no_content(description: str) -> dict[str, Any]:
    return {"description": description}


def query_parameter(name: str, schema: JsonSchema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def fields_parameter(names: Sequence[str]) -> dict[str, Any]:
    return {"name": "fields", "in": "query", "required": False, "style": "form", "explode": False,
            "description": "Sparse fields: return only these (and `id`), comma-separated.",
            "schema": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(names)}}}


def operation(
    summary: str,
    *,
    tag: str,
    ok: Mapping[int, dict[str, Any]],
    errors: Iterable[int],
    body: JsonSchema | None = None,
    parameters: Sequence[dict[str, Any]] = (),
    description: str | None = None,
) -> type[Operation]:
    """An ``operation_class`` that documents a handler with crmkit's schemas.

    :param ok: success responses by status; ``errors``: the error statuses it may answer.
    """
    responses = {str(status): response for status, response in ok.items()}
    responses.update({str(status): ref("responses", ERRORS[status][0]) for status in sorted(set(errors))})

    @dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            self.summary = summary
            self.description = description or self.description
            self.tags = [tag]
            self.parameters = [*(self.parameters or []), *parameters]  # type: ignore[list-item]
            self.request_body = None if body is None else RequestBody(
                required=True, content={"application/json": OpenAPIMediaType(schema=body)})  # type: ignore[arg-type]
            self.responses = responses  # type: ignore[assignment]

    return Documented
