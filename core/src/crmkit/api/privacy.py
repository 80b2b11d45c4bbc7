"""``/contacts/{id}/personal-data``: a person's right of access (``GET``, the export) and right
to erasure (``DELETE``), through the same service as ``crmkit privacy export|erase``.

Erasure is ``DELETE`` on the personal data rather than a ``POST /erase`` action: it names what
goes (the personal data; the contact's id, deals and counts stay for the books), it is
idempotent by nature (erasing again finds nothing left and answers the same way), and generic
clients and API fuzzers treat a DELETE as destructive and leave it alone unless asked. It still
honours ``Idempotency-Key`` (a retry gets the first receipt) and ``If-Match`` (erase only the
contact the caller looked at).

Who may do it: exporting needs read rights on the contact; erasing needs write rights on the
contact *and* an ``admin`` key (:data:`ERASING_ROLES`). Managers may not erase: it cannot be
undone and is a data-protection officer's decision, so it stays with the keys that administer
the CRM. Both go through :func:`crmkit.api.auth.authorize` with the contact, so record-level
rules apply here as on every other endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, delete, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from crmkit.api import openapi as doc
from crmkit.api.auth import authorize, principal
from crmkit.api.concurrency import expected_version
from crmkit.api.errors import ApiError
from crmkit.api.keys import ApiKey
from crmkit.api.pagination import read_query
from crmkit.api.resources import Api, Resource
from crmkit.api.schemas import JsonSchema, object_schema
from crmkit.api.visibility import PERSONAL_DATA
from crmkit.domain import Role
from crmkit.privacy import Erasure
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM

PATH = "/contacts/{id:str}/personal-data"
TAG = "personal data"
#: Roles whose keys may erase (see the module docstring for why managers may not).
ERASING_ROLES = frozenset({Role.ADMIN})

EXPORT_SCHEMA: JsonSchema = {
    "title": "PersonalDataExport",
    "type": "object",
    "required": ["contact_id", "exported_at"],
    "description": "One section per part of the CRM holding data about the person: the core's `contact`, `activities`, "
                   "`deals`, `tasks`, `consents`, and a section of its own for each plugin (`messages`, `audit_log`, "
                   "`webhook_deliveries`, `merges` …).",
    "properties": {
        "contact_id": {"type": "string"},
        "exported_at": {"type": "string", "format": "date-time"},
        "contact": {"type": "object"},
        "activities": {"type": "array", "items": {"type": "object"}},
        "deals": {"type": "array", "items": {"type": "object"}},
        "tasks": {"type": "array", "items": {"type": "object"}},
        "consents": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}
ERASURE_SCHEMA: JsonSchema = {
    "title": "Erasure",
    "description": "The record of the erasure (it holds no personal data): `event_id` is the `contact.erased` event "
                   "(and its audit entry); `plugins` are the plugins whose erasers ran.",
    **object_schema(Erasure),
}


def may_erase(key: ApiKey) -> None:
    """Refuse (403) a key whose role may not erase personal data."""
    if key.role not in ERASING_ROLES:
        allowed = ", ".join(sorted(role.value for role in ERASING_ROLES))
        raise ApiError(403, "forbidden", f"erasing personal data needs an API key of role {allowed}; this key's role is {key.role.value}")


def routes(api: Api, contacts: Resource) -> list[HTTPRouteHandler]:
    """The export and erase endpoints of ``contacts`` (the API's contacts resource, whose
    ``load`` checks the caller's right to the record)."""
    crm: CRM = api.crm

    @get(PATH, sync_to_thread=True, operation_id="export_personal_data", operation_class=doc.operation(
        "Export everything held about a person", tag=TAG, errors=(400, 401, 403, 404),
        ok={200: doc.json_response("Everything the core and every plugin holds about the person.", EXPORT_SCHEMA)},
        description="The same JSON as `crmkit privacy export`. Needs read rights on the contact and the scope "
                    "`personal_data:read` (the export holds the fields hidden from keys without it: phone, birth date, "
                    "address, and their copies in the audit log).",
    ))
    def export_personal_data(request: Request[Any, Any, Any], id: FromPath[str]) -> Response[Any]:  # noqa: A002 - the path's name
        read_query(request.query_params, {})
        contact = contacts.load(crm, principal(request), id, "read")
        authorize(principal(request), "read", PERSONAL_DATA)
        return Response(crm.privacy.export(contact.id))

    @delete(PATH, sync_to_thread=True, status_code=200, operation_id="erase_personal_data", operation_class=doc.operation(
        "Erase a person's personal data everywhere", tag=TAG, errors=(400, 401, 403, 404, 409, 412, 422),
        ok={200: doc.json_response("The person's data is erased; the record of the erasure.", ERASURE_SCHEMA)},
        parameters=[doc.ref("parameters", "IdempotencyKey"), doc.ref("parameters", "IfMatch")],
        description="Removes or irreversibly anonymises the person's data in the core and every plugin, in one "
                    "transaction (the same as `crmkit privacy erase`); the contact's id stays, so deals and counts "
                    "stay true. Cannot be undone. Admin keys only. Erasing again erases whatever arrived since.",
    ))
    def erase_personal_data(request: Request[Any, Any, Any], id: FromPath[str]) -> Response[Any]:  # noqa: A002
        key = principal(request)
        read_query(request.query_params, {})
        may_erase(key)
        contact = contacts.load(crm, key, id, "write")

        def produce() -> Response[Any]:
            erasure = crm.privacy.erase(contact.id, actor=key.user_id, expected_version=expected_version(request.headers, contact))
            return Response(to_jsonable(erasure), status_code=200)

        return api.post(request, None, produce)

    return [export_personal_data, erase_personal_data]
