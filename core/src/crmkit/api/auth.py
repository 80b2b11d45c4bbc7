"""Authentication (``Authorization: Bearer <API key>``) and authorisation.

Every request but the documentation's carries an API key; a missing, malformed, unknown,
expired or revoked key is a 401. What a key may do is decided in one place, :func:`authorize`:
endpoints on a collection call it with the action and the family, endpoints on one record call
it with the record too (through :func:`crmkit.api.resources.Resource.load`), and it applies
the scopes (:mod:`crmkit.api.roles`) and then the record-level rules
(:class:`crmkit.api.visibility.Access`: agents, managers and read-only keys reach only their
user's and their team's records). Lists apply the same rules as a query condition
(``Access.condition``), writes through ``Access.check_write``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from crmkit.api.errors import ApiError
from crmkit.api.keys import ApiKey, ApiKeys
from crmkit.api.visibility import Access

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
    """Resolves the bearer key to its :class:`ApiKey` (``request.user``) and what it may reach
    (:class:`Access`, ``request.auth``). Never logs the key."""

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
        return AuthenticationResult(user=key, auth=Access(self.keys.crm, key))


def authentication(keys: ApiKeys) -> DefineMiddleware:
    return DefineMiddleware(ApiKeyAuthentication, keys=keys)


def principal(request: Request[Any, Any, Any]) -> ApiKey:
    """The API key the request was authenticated with."""
    key = request.scope.get("user")
    if not isinstance(key, ApiKey):
        raise unauthorized("missing")
    return key


def caller(request: Request[Any, Any, Any]) -> Access:
    """What the request's key may reach (records and fields); see :mod:`crmkit.api.visibility`."""
    access = request.scope.get("auth")
    if not isinstance(access, Access):
        raise unauthorized("missing")
    return access


def authorize(who: Access | ApiKey, action: str, family: str, record: Any = None) -> None:
    """Refuse unless the caller may ``action`` (``read``/``write``) records of ``family`` —
    a 403 naming the missing scope — and, given the ``record`` an endpoint acts on, unless that
    record is within the caller's reach: a 404, exactly like a record that does not exist, so
    a key cannot learn what it may not see.

    ``who`` is the request's :class:`Access` (:func:`caller`); a bare :class:`ApiKey` is
    enough for the scope check alone.
    """
    key = who.key if isinstance(who, Access) else who
    scope = f"{family}:{action}"
    if scope not in key.granted:
        raise ApiError(403, "forbidden", f"this API key (role {key.role.value}) does not have the scope {scope}")
    if record is not None:
        if not isinstance(who, Access):
            raise TypeError("checking a record needs the request's Access (crmkit.api.auth.caller(request)), not a bare key")
        who.check_record(family, record)


def require(request: Request[Any, Any, Any], scope: str, *, record: Any = None) -> ApiKey:
    """For plugin routes: the request's key, if it holds ``scope`` (``family:action``) and,
    given a ``record`` (a contact, deal … the route acts on), if that record is within the
    key's reach (404 otherwise, like a missing record). For lists, filter with
    ``caller(request).condition(family)`` and leave out ``caller(request).hidden(family)``."""
    family, _, action = scope.partition(":")
    authorize(caller(request), action, family, record)
    return principal(request)
