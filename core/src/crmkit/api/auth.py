"""Authentication (``Authorization: Bearer <API key>``) and authorisation.

Every request but the documentation's carries an API key; a missing, malformed, unknown,
expired or revoked key is a 401. What a key may do is decided in one place, :func:`authorize`:
endpoints on a collection call it with the action and the family, endpoints on one record call
it with the record too (through :func:`crmkit.api.resources.Resource.load`), so record-level
rules — an agent sees only its own and its team's records — are added there and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from crmkit.api.errors import ApiError
from crmkit.api.keys import ApiKey, ApiKeys

if TYPE_CHECKING:
    from litestar import Request

#: Handlers with this ``opt`` key set are served without a key (the API's documentation).
PUBLIC = "public"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crmkit"'}
_REFUSALS = {
    "missing": "send an API key: Authorization: Bearer <key> (create one with `crmkit api-keys create`)",
    "invalid": "the API key is not valid",
    "expired": "the API key has expired",
    "revoked": "the API key has been revoked",
}


def unauthorized(reason: str) -> ApiError:
    return ApiError(401, "unauthorized", _REFUSALS[reason], headers=CHALLENGE)


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    """Resolves the bearer key to its :class:`ApiKey` (``request.user``). Never logs the key."""

    def __init__(self, app: Any, keys: ApiKeys, **kwargs: Any):
        super().__init__(app, exclude_from_auth_key=PUBLIC, **kwargs)
        self.keys = keys

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing")
        key, reason = await anyio.to_thread.run_sync(self.keys.authenticate, token.strip())
        if key is None:
            raise unauthorized(reason)
        return AuthenticationResult(user=key, auth=None)


def authentication(keys: ApiKeys) -> DefineMiddleware:
    return DefineMiddleware(ApiKeyAuthentication, keys=keys)


def principal(request: Request[Any, Any, Any]) -> ApiKey:
    """The API key the request was authenticated with."""
    key = request.scope.get("user")
    if not isinstance(key, ApiKey):
        raise unauthorized("missing")
    return key


def authorize(key: ApiKey, action: str, family: str, record: Any = None) -> None:
    """Refuse (403) unless ``key`` may ``action`` (``read``/``write``) records of ``family``.

    ``record`` is the record an endpoint acts on, when there is one. Record-level rules go
    here. Not implemented yet: agents limited to records they own (``owner_id`` /
    ``assignee_id`` equal to the key's ``user_id``) and their team's (owners whose ``team_id``
    is the key user's team); lists would need the same rule as a query condition
    (:func:`crmkit.api.pagination.fetch_page` takes ``conditions``).
    """
    scope = f"{family}:{action}"
    if scope not in key.granted:
        raise ApiError(403, "forbidden", f"this API key (role {key.role.value}) does not have the scope {scope}")


def require(request: Request[Any, Any, Any], scope: str) -> ApiKey:
    """For plugin routes: the request's key, if it holds ``scope`` (``family:action``)."""
    family, _, action = scope.partition(":")
    key = principal(request)
    authorize(key, action, family)
    return key
