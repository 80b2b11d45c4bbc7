"""``create_app(crm)``: the Litestar application of the headless HTTP API.

The app is built per CRM (no module-level app), from the core's resources and the routes
plugins contribute through ``crmkit_register_routes``; every write goes through the same services
as the CLI. Serve it with ``crmkit serve`` (uvicorn) or any ASGI server, or test it with
``litestar.testing.TestClient(create_app(crm))``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components
from litestar.routes import HTTPRoute

from crmkit.api import access, docs, engagement, errors, privacy, ratelimit, records, sales
from crmkit.api import openapi as doc
from crmkit.api.auth import authentication
from crmkit.api.keys import ApiKeys
from crmkit.api.ratelimit import RateLimits
from crmkit.api.resources import Api
from crmkit.errors import ConfigError, PluginError
from crmkit.plugins import Registry

if TYPE_CHECKING:
    from crmkit.app import CRM

DESCRIPTION = """The headless API of a crmkit CRM.

Authenticate with an API key (`crmkit api-keys create`): `Authorization: Bearer <key>`.
Lists are pages in a stable order: pass `next_cursor` back as `cursor`; `fields=a,b` returns only
those fields. Records carry an `ETag` (their version): send it as `If-Match` to write only if
nobody changed the record since (412 otherwise). A POST with an `Idempotency-Key` header is
performed once however often it is retried. Every error has the same shape:
`{"error": {"code", "message", "issues": [{"field", "code", "message"}]}}`.
Requests are rate-limited per API key, and per client address on public endpoints: over the limit
the answer is 429 with `Retry-After` (seconds)."""


def create_app(crm: CRM, *, debug: bool = False, rate_limits: RateLimits | None = None) -> Litestar:
    """The HTTP API of ``crm``, with the routes its plugins register.

    :param rate_limits: the limits to enforce; by default those of ``[plugins.api]`` in the
        CRM's configuration (``RateLimits.of("off", "off")`` disables both).
    """
    from crmkit import __version__

    api = Api(crm)
    keys = ApiKeys(crm)
    core: list[HTTPRouteHandler] = [
        *records.routes(api), *sales.routes(api), *engagement.routes(api), *access.routes(api, keys),
        *privacy.routes(api, records.contacts(crm)), *docs.routes(),
    ]
    limits = rate_limits if rate_limits is not None else RateLimits.from_settings(api_settings(crm))
    app = Litestar(
        # One Router, not a list: Litestar 2.25 wraps a sync_to_thread handler a second time
        # (and then serves a coroutine) when another handler of its path is registered on the
        # app after it; a router registers each route once.
        route_handlers=[Router("/", route_handlers=[*core, *plugin_routes(crm, core)])],
        exception_handlers={Exception: errors.handle},
        # Authentication first: the limiter counts requests against the key that authenticated.
        middleware=[authentication(keys), *([ratelimit.rate_limiting(limits)] if limits.enabled else [])],
        dependencies={"crm": Provide(lambda: crm, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(
            title="crmkit", version=__version__, description=DESCRIPTION,
            path="/schema", render_plugins=[JsonRenderPlugin()],
            components=[doc.components(), rate_limit_components()], security=[{doc.SECURITY_SCHEME: []}],
            use_handler_docstrings=False, create_examples=False,
        ),
        # Logging is the host's (uvicorn's, a test runner's): Litestar's default would replace
        # the root logger's handlers when the app starts.
        logging_config=None,
        debug=debug,
    )
    ratelimit.document(app.openapi_schema)
    return app


def api_settings(crm: CRM) -> ratelimit.ApiSettings:
    """``[plugins.api]`` (declared by ``crmkit.cli.serve_commands``), or the defaults when
    that built-in plugin is disabled."""
    try:
        return crm.settings_for(ratelimit.SECTION)  # type: ignore[no-any-return]
    except ConfigError:
        return ratelimit.ApiSettings()


def rate_limit_components() -> Components:
    return Components(
        responses={ratelimit.RESPONSE_NAME: {  # type: ignore[dict-item]
            **doc.json_response("Too many requests from this API key (or, on a public endpoint, this address): "
                                "retry after `Retry-After` seconds.", errors.ERROR_SCHEMA),
            "headers": {"Retry-After": ratelimit.RETRY_AFTER},
        }},
    )


def plugin_routes(crm: CRM, core: Iterable[HTTPRouteHandler]) -> list[Any]:
    """What plugins register through ``crmkit_register_routes``, refusing a method and path
    that is already served (Litestar's own error would not say which plugin)."""
    registry: Registry[Any] = crm.plugins.collect("crmkit_register_routes", Registry("route", key=_route_name))
    served = {claim: "the crmkit core" for handler in core for claim in _claims(handler)}
    routes = []
    for name, route in registry.items():
        plugin = registry.owners[name]
        for claim in _claims(route):
            if claim in served:
                raise PluginError(plugin, f"route {claim[0]} {claim[1]} is already served by {served[claim]}")
            served[claim] = f"plugin {plugin!r}"
        routes.append(route)
    return routes


def _route_name(route: Any) -> str:
    claims = sorted(_claims(route))
    return ", ".join(f"{method} {path}" for method, path in claims) or repr(route)


def _claims(route: Any) -> set[tuple[str, str]]:
    """``(method, path)`` pairs a handler or router serves, path parameters' names erased."""
    if isinstance(route, Router):  # its routes' paths include the router's own
        pairs = {(method, http.path) for http in route.routes if isinstance(http, HTTPRoute)
                 for handler in http.route_handlers for method in handler.http_methods}
    elif isinstance(route, HTTPRouteHandler):
        pairs = {(method, path) for method in route.http_methods for path in route.paths}
    else:
        return set()
    # OPTIONS is answered automatically for every path; it is nobody's claim.
    return {(method, re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")) for method, path in pairs if method != "OPTIONS"}
