"""``/api-keys``: create (the secret is in that response only), list, get and revoke keys.

Listing never shows a secret: only its hash is stored, and the hash is not shown either.
"""

from __future__ import annotations

from typing import Any

from litestar.handlers import HTTPRouteHandler

from crmkit.api.keys import ApiKey, ApiKeys, repository
from crmkit.api.resources import Api, Call, Resource, Written, action_route, collection_routes
from crmkit.api.roles import ALL_SCOPES
from crmkit.api.schemas import BodySchema, record_schema, value_schema
from crmkit.domain import Role
from crmkit.serialize import to_jsonable

STATUS = {"type": "string", "enum": ["active", "expired", "revoked"]}
SECRET = {"type": "string", "description": "the key to send as `Authorization: Bearer …`; in the response to its creation only"}
CREATE = BodySchema({
    "title": "ApiKeyCreate",
    "type": "object",
    "required": ["name", "role"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "who or what uses the key"},
        "role": value_schema(Role),
        "scopes": {"type": ["array", "null"], "items": {"type": "string", "enum": sorted(ALL_SCOPES)},
                   "description": "for integration keys (only): what the key may do, e.g. contacts:write"},
        "expires": {"type": ["string", "null"], "description": "a duration from now (30d, 12h, 2w) or an ISO date or date-time"},
        "user_id": {"type": ["string", "null"], "description": "the user the key acts for (recorded on what it changes)"},
    },
}, read_only=("id", "created_at", "expires_at", "revoked_at", "status", "key"))


def serialize(key: ApiKey) -> dict[str, Any]:
    return {**to_jsonable(key), "status": key.status}


def resource(keys: ApiKeys) -> Resource:
    def create(call: Call, data: dict[str, Any]) -> Written:
        key, secret = keys.create(data["name"], data["role"], scopes=data.get("scopes") or (), expires=data.get("expires"),
                                  user_id=data.get("user_id"))
        return Written(key, extra={"key": secret})

    return Resource(
        name="api-keys", label="API key", family="api_keys", tag="API keys",
        repository=repository,
        record=record_schema(ApiKey, title="ApiKey", extra={"status": STATUS, "key": SECRET}),
        serialize=serialize, create=create, create_body=CREATE,
    )


def routes(api: Api, keys: ApiKeys) -> list[HTTPRouteHandler]:
    keys_resource = resource(keys)
    return [
        *collection_routes(keys_resource, api),
        action_route(keys_resource, api, "revoke", lambda call, key, data, version: keys.revoke(key.id),
                     summary="Revoke an API key for good"),
    ]
