"""The API's description: OpenAPI 3.1 at /openapi.json that the server keeps (schemathesis
against the live schema), a docs page that needs no network, request schemas that agree with
the services, and plugin routes (``crmkit_register_routes``) served and documented."""

from __future__ import annotations

import re
import time
from typing import Any

import crmkit
import pytest
import schemathesis
from crmkit import domain
from crmkit.api import create_app
from crmkit.api.auth import require
from crmkit.api.testing import api_client
from crmkit.errors import PluginError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Request, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.testing import TestClient
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation import GenerationMode


@pytest.fixture
def document(crm) -> dict[str, Any]:
    with TestClient(create_app(crm)) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    return response.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()
            if method in ("get", "post", "patch", "put", "delete")]


def test_openapi_document_is_3_1_with_every_resource_secured_and_documented(document):
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["apiKey"]["description"]}
    assert document["security"] == [{"apiKey": []}]
    paths = set(document["paths"])
    for resource in ("contacts", "organizations", "pipelines", "deals", "activities", "tasks", "campaigns", "consents",
                     "custom-fields", "users", "teams", "api-keys"):
        assert {f"/{resource}", f"/{resource}/{{id}}"} <= paths, resource
    assert {"/deals/{id}/move", "/deals/{id}/history", "/tasks/{id}/complete", "/pipelines/{id}/stages", "/api-keys/{id}/revoke"} <= paths
    for method, path, op in operations(document):
        assert {"400", "401", "403"} <= set(op["responses"]), (method, path)
        assert op.get("summary") and op.get("tags"), (method, path)
        if method == "post":
            assert {"$ref": "#/components/parameters/IdempotencyKey"} in op["parameters"], path
        if method in ("patch", "delete"):
            assert {"$ref": "#/components/parameters/IfMatch"} in op["parameters"], path
    assert "/openapi.json" not in paths and "/docs" not in paths
    # A contact that matches an existing one is answered 200, not 201: both are documented.
    assert {"200", "201"} <= set(document["paths"]["/contacts"]["post"]["responses"])


def test_request_schemas_are_the_services_fields(crm, document):
    def body(path: str, method: str) -> dict[str, Any]:
        return document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]

    for path, specs, extra in (
        ("/contacts", crm.contacts.specs(), set()), ("/organizations", crm.organizations.specs(), set()),
        ("/deals", domain.Deal.field_specs(), {"pipeline", "stage"}), ("/tasks", domain.Task.field_specs(), set()),
        ("/activities", domain.Activity.field_specs(), set()), ("/campaigns", domain.Campaign.field_specs(), set()),
        ("/users", domain.User.field_specs(), set()), ("/consents", domain.Consent.field_specs(), set()),
    ):
        created = body(path, "post")
        assert set(created["properties"]) == {s.name for s in specs} | extra, path
        assert set(created.get("required", [])) == {s.name for s in specs if s.required} | ({"pipeline"} & extra), path
        assert created["additionalProperties"] is False
        if "patch" in document["paths"][f"{path}/{{id}}"]:
            changed = body(f"{path}/{{id}}", "patch")
            assert set(changed["properties"]) == {s.name for s in specs} and "required" not in changed, path


def test_docs_page_is_self_contained_and_lists_every_operation(crm, document):
    with TestClient(create_app(crm)) as client:
        page = client.get("/docs")  # no API key needed, like /openapi.json
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script" not in html and not re.search(r"(src|href)=['\"]https?:", html)
    for method, path, _ in operations(document):
        assert f"<span class='m {method}'>{method}</span> <span class='path'>{path}</span>" in html


def test_the_api_keeps_its_schema_under_generated_requests(crm):
    """Schemathesis against the served schema, positive and negative cases for every operation,
    with all its checks — no 5xx, every status and response body as documented, invalid input
    rejected, 401 without a key — but one: ``positive_data_acceptance``. A schema-valid value
    can still be refused with a 4xx for reasons no JSON Schema states (a cursor the server did
    not issue, an e-mail domain, a phone numbering plan, an id that does not exist)."""
    existing = {
        "/contacts/{id}": crm.contacts.create({"email": "ada@example.com"}).id,
        "/organizations/{id}": crm.organizations.create({"name": "Acme"}).id,
        "/tasks/{id}": crm.tasks.create({"title": "Call"}).id,
        "/campaigns/{id}": crm.campaigns.create({"name": "Spring"}).id,
    }
    with api_client(crm) as client:
        token = client.token
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(crm))
    failures, started = [], time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
        ident = next((i for path, i in existing.items() if operation.path.startswith(path)), None)
        if ident is not None and operation.method != "delete":
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": ident}))

        @given(case=st.one_of(strategies))
        @settings(max_examples=8, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 300  # a guard against an accidentally unbounded run, not a benchmark


# --- crmkit_register_routes -----------------------------------------------------------------


class LoyaltyRoutes:
    """A plugin adding one endpoint: a contact's loyalty points (one per tag)."""

    crmkit_plugin_name = "loyalty-api"

    @crmkit.hookimpl
    def crmkit_register_routes(self, register: Any) -> None:
        @get("/loyalty/{contact_id:str}", sync_to_thread=True, summary="A contact's loyalty points")
        def points(request: Request, crm: NamedDependency[Any], contact_id: FromPath[str]) -> dict[str, Any]:
            require(request, "contacts:read")
            contact = crm.contacts.get(contact_id)
            return {"contact_id": contact.id, "points": len(contact.tags)}

        @get("/top", sync_to_thread=True, summary="Contacts with the most points")
        def top(request: Request, crm: NamedDependency[Any]) -> list[str]:
            require(request, "contacts:read")
            return [c.id for c in sorted(crm.contacts.list(), key=lambda c: -len(c.tags))[:3]]

        register(points)
        register(Router("/loyalty-board", route_handlers=[top]))


class ShadowingRoutes:
    crmkit_plugin_name = "shadow"

    @crmkit.hookimpl
    def crmkit_register_routes(self, register: Any) -> None:
        @get("/{cid:str}", sync_to_thread=False)
        def mine(cid: FromPath[str]) -> dict[str, Any]:
            return {}

        register(Router("/contacts", route_handlers=[mine]))


def test_a_plugin_route_is_served_behind_the_api_key_and_documented(crm_factory):
    crm = crm_factory(plugins=[LoyaltyRoutes()])
    contact = crm.contacts.create({"email": "ada@example.com", "tags": ["vip", "early"]})
    app = create_app(crm)
    with api_client(crm, app=app) as client:
        assert client.get(f"/loyalty/{contact.id}").json() == {"contact_id": contact.id, "points": 2}
        missing = client.get("/loyalty/nobody")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get("/loyalty-board/top").json() == [contact.id]
        assert {"/loyalty/{contact_id}", "/loyalty-board/top"} <= set(client.get("/openapi.json").json()["paths"])
    with TestClient(app) as anonymous:
        assert anonymous.get(f"/loyalty/{contact.id}").status_code == 401
    with api_client(crm, "integration", scopes=["deals:read"], app=app) as integration:
        assert integration.get(f"/loyalty/{contact.id}").json()["error"]["code"] == "forbidden"


def test_a_plugin_route_that_shadows_a_core_route_is_refused_naming_the_plugin(crm_factory):
    crm = crm_factory(plugins=[ShadowingRoutes()])
    with pytest.raises(PluginError, match=r"plugin 'shadow': route GET /contacts/\{\} is already served by the crmkit core"):
        create_app(crm)
