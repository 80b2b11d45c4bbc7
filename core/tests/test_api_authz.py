"""The authorisation matrix: every route of the live app, every verb, against callers of another
team, of a lower role and without a user, on SQLite and PostgreSQL.

Routes are read from the Litestar app itself (core, privacy and plugin routes alike) and each
must have a rule in :data:`RULES`: a route added without one fails
``test_every_route_has_an_authorisation_rule``, so a new endpoint cannot ship unexamined. For
each rule the test makes fresh records owned by a user of team Red and checks that callers who
may not touch them get 403/404 (and that nothing changed), that their lists leave them out, and
that a caller who may (an agent of team Red, or the role the route needs) gets a 2xx.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import crmkit
import pytest
from crmkit.api import create_app
from crmkit.api.auth import require
from crmkit.api.keys import ApiKeys
from crmkit.testing import create_server_database
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

# --- a plugin route that checks its record through require(..., record=) -----------------------


class LoyaltyPlugin:
    crmkit_plugin_name = "loyalty-authz"

    @crmkit.hookimpl
    def crmkit_register_routes(self, register: Any) -> None:
        @get("/loyalty/{contact_id:str}", sync_to_thread=True, summary="A contact's loyalty points")
        def points(request: Request, crm: NamedDependency[Any], contact_id: FromPath[str]) -> dict[str, Any]:
            contact = crm.contacts.get(contact_id)
            require(request, "contacts:read", record=contact)
            return {"contact_id": contact.id, "points": len(contact.tags)}

        register(points)


# --- the world: teams Red and Blue, records owned in Red -------------------------------------

_serial = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_serial)}"


@dataclass
class World:
    crm: Any
    client: TestClient[Any]
    users: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, who: str, method: str, url: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who != "anonymous" else {}
        return self.client.request(method, url, json=body, headers=headers)

    def red_records(self) -> dict[str, str]:
        """Fresh records of Red's ``mate`` (owner or assignee), linked to each other."""
        crm, mate = self.crm, self.users["red_mate"]
        org = crm.organizations.create({"name": unique("Red Org "), "owner_id": mate})
        contact = crm.contacts.create({"email": f"{unique('red')}@example.com", "phone": "+14155550001",
                                       "birth_date": "1990-01-01", "owner_id": mate, "organization_id": org.id})
        deal = crm.deals.create({"title": unique("Red deal "), "pipeline": "Sales", "owner_id": mate,
                                 "contact_id": contact.id, "organization_id": org.id})
        task = crm.tasks.create({"title": unique("Call "), "assignee_id": mate, "contact_id": contact.id, "deal_id": deal.id})
        activity = crm.activities.log({"kind": "note", "contact_id": contact.id, "deal_id": deal.id})
        consent = crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": "granted"})
        return {"organizations": org.id, "contacts": contact.id, "deals": deal.id, "tasks": task.id,
                "activities": activity.id, "consents": consent.id}

    def config_records(self) -> dict[str, str]:
        """Fresh records of the families that are configuration (limited by scopes only)."""
        crm = self.crm
        team = crm.teams.create({"name": unique("Team ")})
        return {
            "pipelines": crm.pipelines.create(unique("Pipeline "), [("Open", 0.5, "open"), ("Won", 1, "won")]).id,
            "campaigns": crm.campaigns.create({"name": unique("Campaign ")}).id,
            "users": crm.users.create({"email": f"{unique('u')}@example.com"}).id,
            "teams": team.id,
            "custom-fields": crm.custom_fields.define("contact", unique("field_"), "text").id,
            "api-keys": ApiKeys(crm).create(unique("key "), "read_only")[0].id,
        }


#: Callers who may not touch Red's records, whatever their role.
OUTSIDERS = ("blue_agent", "blue_manager", "blue_reader", "agent_without_user")


def build_world(crm: Any, client: TestClient[Any]) -> World:
    red, blue = crm.teams.create({"name": "Red"}), crm.teams.create({"name": "Blue"})
    users = {name: crm.users.create({"email": f"{name}@example.com", "team_id": team.id}).id
             for name, team in (("red_agent", red), ("red_mate", red), ("blue_agent", blue), ("blue_manager", blue))}
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Proposal", 0.5, "open"), ("Won", 1, "won"), ("Lost", 0, "lost")])
    world = World(crm, client, users)
    keys = ApiKeys(crm)
    for name, role, options in (
        ("admin", "admin", {}),
        ("red_agent", "agent", {"user_id": users["red_agent"]}),
        ("red_reader", "read_only", {"user_id": users["red_agent"]}),
        ("blue_agent", "agent", {"user_id": users["blue_agent"]}),
        ("blue_manager", "manager", {"user_id": users["blue_manager"]}),
        ("blue_reader", "read_only", {"user_id": users["blue_agent"]}),
        ("agent_without_user", "agent", {}),
        ("deals_only", "integration", {"scopes": ["deals:read"]}),
    ):
        world.tokens[name] = keys.create(name, role, **options)[1]
    return world


# --- the rules: one per route ----------------------------------------------------------------

Body = Callable[[World, dict[str, str]], Any]


@dataclass(frozen=True)
class Listing:
    """``GET /<family>`` of records limited by reach: outsiders' lists leave Red's out."""

    family: str


@dataclass(frozen=True)
class Create:
    """``POST /<family>``: an outsider may not attach the new record to Red's (422 ``not_found``
    for a parent, like a missing one) nor give it to Red's user (403)."""

    family: str
    body: Body
    parent: str | None = None  # the reference field pointing at Red's record
    owner: str | None = None  # the owner field an outsider may not set to Red's user


@dataclass(frozen=True)
class Item:
    """A route taking the id of one of Red's records: outsiders get 404 (403 where the role
    itself may not) and change nothing; ``insider`` gets ``ok``."""

    family: str
    body: Body | None = None
    insider: str = "red_agent"
    ok: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class Config:
    """A configuration route (scopes only): a role without the scope gets 403, admin a 2xx."""

    family: str
    lower: str  # a key whose role or scopes do not reach this
    body: Body | None = None
    ok: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class Public:
    """Served without an API key; the route authenticates its caller itself (a signed token,
    a provider's signature) or is documentation."""


def email(world: World, ids: dict[str, str]) -> str:
    return f"{unique('new')}@example.com"


RULES: dict[tuple[str, str], Any] = {
    # Records limited by reach.
    ("GET", "/contacts"): Listing("contacts"),
    ("POST", "/contacts"): Create("contacts", lambda w, ids: {"email": email(w, ids), "organization_id": ids["organizations"],
                                                              "owner_id": w.users["red_agent"]}, "organization_id", "owner_id"),
    ("GET", "/contacts/{id}"): Item("contacts"),
    ("PATCH", "/contacts/{id}"): Item("contacts", lambda w, ids: {"job_title": "CFO"}),
    ("DELETE", "/contacts/{id}"): Item("contacts", ok=(204,)),
    ("GET", "/contacts/{id}/personal-data"): Item("contacts"),
    ("DELETE", "/contacts/{id}/personal-data"): Item("contacts", insider="admin"),  # erasure: admin keys only
    ("GET", "/loyalty/{contact_id}"): Item("contacts"),
    ("GET", "/organizations"): Listing("organizations"),
    ("POST", "/organizations"): Create("organizations", lambda w, ids: {"name": unique("Org "), "owner_id": w.users["red_mate"]},
                                       owner="owner_id"),
    ("GET", "/organizations/{id}"): Item("organizations"),
    ("PATCH", "/organizations/{id}"): Item("organizations", lambda w, ids: {"industry": "Retail"}),
    ("DELETE", "/organizations/{id}"): Item("organizations", ok=(204,)),
    ("GET", "/deals"): Listing("deals"),
    ("POST", "/deals"): Create("deals", lambda w, ids: {"title": unique("Deal "), "pipeline": "Sales", "contact_id": ids["contacts"],
                                                        "owner_id": w.users["red_mate"]}, "contact_id", "owner_id"),
    ("GET", "/deals/{id}"): Item("deals"),
    ("PATCH", "/deals/{id}"): Item("deals", lambda w, ids: {"title": "Bigger"}),
    ("DELETE", "/deals/{id}"): Item("deals", ok=(204,)),
    ("POST", "/deals/{id}/move"): Item("deals", lambda w, ids: {"stage": "Proposal"}),
    ("GET", "/deals/{id}/history"): Item("deals"),
    ("GET", "/tasks"): Listing("tasks"),
    ("POST", "/tasks"): Create("tasks", lambda w, ids: {"title": unique("Task "), "deal_id": ids["deals"],
                                                        "assignee_id": w.users["red_mate"]}, "deal_id", "assignee_id"),
    ("GET", "/tasks/{id}"): Item("tasks"),
    ("PATCH", "/tasks/{id}"): Item("tasks", lambda w, ids: {"notes": "left a message"}),
    ("DELETE", "/tasks/{id}"): Item("tasks", ok=(204,)),
    ("POST", "/tasks/{id}/complete"): Item("tasks"),
    ("GET", "/activities"): Listing("activities"),
    ("POST", "/activities"): Create("activities", lambda w, ids: {"kind": "call", "contact_id": ids["contacts"]}, "contact_id"),
    ("GET", "/activities/{id}"): Item("activities"),
    ("GET", "/consents"): Listing("consents"),
    ("POST", "/consents"): Create("consents", lambda w, ids: {"contact_id": ids["contacts"], "channel": "sms", "purpose": "news",
                                                              "status": "withdrawn"}, "contact_id"),
    ("GET", "/consents/{id}"): Item("consents"),
    # Configuration: scopes only.
    ("GET", "/pipelines"): Config("pipelines", "deals_only"),
    ("POST", "/pipelines"): Config("pipelines", "blue_agent", lambda w, ids: {"name": unique("P "), "stages": [{"name": "A", "probability": 0.5}]},
                                   ok=(201,)),
    ("GET", "/pipelines/{id}"): Config("pipelines", "deals_only"),
    ("GET", "/pipelines/{id}/stages"): Config("pipelines", "deals_only"),
    ("GET", "/campaigns"): Config("campaigns", "deals_only"),
    ("POST", "/campaigns"): Config("campaigns", "blue_agent", lambda w, ids: {"name": unique("C ")}, ok=(201,)),
    ("GET", "/campaigns/{id}"): Config("campaigns", "deals_only"),
    ("PATCH", "/campaigns/{id}"): Config("campaigns", "blue_agent", lambda w, ids: {"channel": "email"}),
    ("DELETE", "/campaigns/{id}"): Config("campaigns", "blue_reader", ok=(204,)),
    ("GET", "/custom-fields"): Config("custom-fields", "deals_only"),
    ("POST", "/custom-fields"): Config("custom-fields", "blue_manager",
                                       lambda w, ids: {"entity": "deal", "name": unique("f_"), "type": "number"}, ok=(201,)),
    ("GET", "/custom-fields/{id}"): Config("custom-fields", "deals_only"),
    ("GET", "/users"): Config("users", "deals_only"),
    ("POST", "/users"): Config("users", "blue_manager", lambda w, ids: {"email": email(w, ids)}, ok=(201,)),
    ("GET", "/users/{id}"): Config("users", "deals_only"),
    ("PATCH", "/users/{id}"): Config("users", "blue_manager", lambda w, ids: {"name": "Renamed"}),
    ("DELETE", "/users/{id}"): Config("users", "blue_manager", ok=(204,)),
    ("GET", "/teams"): Config("teams", "deals_only"),
    ("POST", "/teams"): Config("teams", "blue_manager", lambda w, ids: {"name": unique("T ")}, ok=(201,)),
    ("GET", "/teams/{id}"): Config("teams", "deals_only"),
    ("DELETE", "/teams/{id}"): Config("teams", "blue_manager", ok=(204,)),
    ("GET", "/api-keys"): Config("api-keys", "blue_manager"),
    ("POST", "/api-keys"): Config("api-keys", "blue_manager", lambda w, ids: {"name": "k", "role": "read_only"}, ok=(201,)),
    ("GET", "/api-keys/{id}"): Config("api-keys", "blue_manager"),
    ("POST", "/api-keys/{id}/revoke"): Config("api-keys", "blue_manager"),
    # Litestar's own schema pages: documentation, no records.
    ("GET", "/schema"): Config("schema", "anonymous"),
    ("GET", "/schema/openapi.json"): Config("schema", "anonymous"),
    ("GET", "/schema/{path}"): Config("schema", "anonymous"),
    # Served without a key.
    ("GET", "/openapi.json"): Public(),
    ("GET", "/docs"): Public(),
    ("GET", "/email/unsubscribe/{token}"): Public(),
    ("POST", "/email/unsubscribe/{token}"): Public(),
    ("GET", "/email/preferences/{token}"): Public(),
    ("POST", "/email/preferences/{token}"): Public(),
    ("GET", "/email/o/{name}"): Public(),  # open tracking pixel
    ("GET", "/email/c/{token}"): Public(),  # click tracking redirect
    **{("POST", f"/channels/sms/{provider}/{kind}"): Public() for provider in ("twilio", "gateway") for kind in ("status", "inbound")},
}


def served_routes(app: Any) -> dict[tuple[str, str], Any]:
    """``(method, path)`` → handler for every route of ``app``, path parameters' types erased."""
    routes = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                    routes[(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))] = handler
    return routes


def fill(path: str, ident: str) -> str:
    return re.sub(r"\{\w+\}", ident, path)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Any, crm_factory: Callable[..., Any]) -> Iterator[World]:
    """The world on each backend (the ``database_url`` pattern, for the two databases the
    issue asks the matrix to run on)."""
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'authz.db'}"
    else:
        url, drop = create_server_database(request.param)
    try:
        crm = crm_factory(url, plugins=[LoyaltyPlugin()])
        with TestClient(create_app(crm)) as client:
            yield build_world(crm, client)
        crm.close()
    finally:
        if drop is not None:
            drop()


@pytest.fixture
def red(crm_factory: Callable[..., Any]) -> Iterator[World]:
    """The world on SQLite only, for what does not depend on the database."""
    crm = crm_factory()
    with TestClient(create_app(crm)) as client:
        yield build_world(crm, client)


# --- the matrix -------------------------------------------------------------------------------


def test_every_route_has_an_authorisation_rule(red):
    """The routes do not depend on the database: checked once, on SQLite."""
    served = served_routes(red.client.app)
    public = {route for route, handler in served.items() if handler.opt.get("public")}
    missing = sorted(set(served) - set(RULES))
    assert not missing, f"routes without an authorisation rule in test_api_authz.RULES: {missing}"
    wrongly_public = sorted(route for route in public if not isinstance(RULES[route], Public))
    assert not wrongly_public, f"served without an API key but not a Public rule: {wrongly_public}"
    assert all(route in public for route, rule in RULES.items() if isinstance(rule, Public) and route in served)


def test_the_authorisation_matrix(world):
    served = served_routes(world.client.app)
    failures: list[str] = []
    for (method, path), rule in sorted(RULES.items()):
        if (method, path) not in served:
            continue
        check = CHECKS[type(rule)]
        try:
            check(world, method, path, rule)
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


def snapshot(world: World, family: str, ident: str) -> Any:
    response = world.call("admin", "GET", f"/{family}/{ident}")
    return response.status_code, response.json() if response.status_code == 200 else None


def check_listing(world: World, method: str, path: str, rule: Listing) -> None:
    ident = world.red_records()[rule.family]
    for who in ("red_agent", "red_reader"):
        assert ident in listed(world, who, path), f"{who} does not see its team's {rule.family} in the list"
    for who in OUTSIDERS:
        assert ident not in listed(world, who, path), f"{who} sees Red's {rule.family} in the list"


def listed(world: World, who: str, path: str) -> set[str]:
    """Every id of a walk through all pages (2 per page, so the cursor is exercised)."""
    ids: set[str] = set()
    url = f"{path}?limit=2"
    while url:
        response = world.call(who, "GET", url)
        assert response.status_code == 200, f"{who}: {response.status_code} {response.text}"
        page = response.json()
        ids |= {row["id"] for row in page["data"]}
        url = f"{path}?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    return ids


def check_create(world: World, method: str, path: str, rule: Create) -> None:
    ids = world.red_records()

    def body(*leave_out: str | None) -> dict[str, Any]:
        return {k: v for k, v in rule.body(world, ids).items() if k not in leave_out}

    for who in OUTSIDERS:
        response = world.call(who, method, path, body())
        if who == "blue_reader":  # no write scope at all
            assert response.status_code == 403, f"{who}: {response.status_code} {response.text}"
            continue
        assert response.status_code in (403, 422), f"{who} created a record tied to Red's: {response.status_code}"
        if rule.parent is not None:
            response = world.call(who, method, path, body(rule.owner))
            issues = {i["field"]: i["code"] for i in response.json()["error"]["issues"]} if response.status_code == 422 else {}
            assert issues.get(rule.parent) == "not_found", f"{who} attached a {rule.family} to Red's {rule.parent}: {response.text}"
        if rule.owner is not None:
            response = world.call(who, method, path, body(rule.parent))
            assert response.status_code == 403 and response.json()["error"]["issues"][0]["field"] == rule.owner, \
                f"{who} gave a {rule.family} to Red's user: {response.status_code} {response.text}"
    response = world.call("red_agent", method, path, body())
    assert response.status_code in (200, 201), f"red_agent: {response.status_code} {response.text}"
    assert response.json()["id"] in listed(world, "red_agent", path)


def check_item(world: World, method: str, path: str, rule: Item) -> None:
    ids = world.red_records()
    ident = ids[rule.family]
    before = snapshot(world, rule.family, ident)
    body = rule.body(world, ids) if rule.body else None
    for who in (*OUTSIDERS, *(("red_reader",) if method != "GET" else ())):
        response = world.call(who, method, fill(path, ident), body)
        expected = (403,) if who == "red_reader" else (403, 404)
        assert response.status_code in expected, f"{who}: {response.status_code} {response.text}"
    assert snapshot(world, rule.family, ident) == before, "an outsider's request changed the record"
    response = world.call(rule.insider, method, fill(path, ident), body)
    assert response.status_code in rule.ok, f"{rule.insider}: {response.status_code} {response.text}"


def check_config(world: World, method: str, path: str, rule: Config) -> None:
    ids = world.config_records()
    url = fill(path, ids.get(rule.family, "openapi.json"))
    body = rule.body(world, ids) if rule.body else None
    lower = world.call(rule.lower, method, url, body)
    assert lower.status_code in ((401,) if rule.lower == "anonymous" else (403,)), f"{rule.lower}: {lower.status_code} {lower.text}"
    response = world.call("admin", method, url, body)
    assert response.status_code in rule.ok, f"admin: {response.status_code} {response.text}"


def check_public(world: World, method: str, path: str, rule: Public) -> None:
    """Public routes check their caller themselves: a forged token must reveal no record."""
    ids = world.red_records()
    secret = world.crm.contacts.get(ids["contacts"]).email
    response = world.call("anonymous", method, fill(path, "forged-token-0000"), {} if method == "POST" else None)
    assert response.status_code < 500 and secret not in response.text, f"anonymous, forged token: {response.status_code}"


CHECKS: dict[type, Callable[..., None]] = {Listing: check_listing, Create: check_create, Item: check_item, Config: check_config,
                                           Public: check_public}


# --- the rules in detail (SQLite; the matrix above runs every route on both databases) --------


def test_sensitive_fields_need_the_personal_data_scopes(red):
    contact_id = red.red_records()["contacts"]
    sensitive = {"birth_date", "phone", "address"}

    seen = red.call("red_agent", "GET", f"/contacts/{contact_id}").json()
    assert sensitive <= set(seen) and seen["phone"] == "+14155550001"
    for response in (red.call("red_reader", "GET", f"/contacts/{contact_id}"),
                     red.call("red_reader", "GET", f"/contacts/{contact_id}?fields=phone,email")):
        assert response.status_code == 200 and not sensitive & set(response.json()), response.text
    listed_rows = red.call("red_reader", "GET", "/contacts").json()["data"]
    assert contact_id in {row["id"] for row in listed_rows} and all(not sensitive & set(row) for row in listed_rows)
    probe = red.call("red_reader", "GET", "/contacts?phone=%2B14155550001")
    assert probe.status_code == 403 and probe.json()["error"]["issues"][0] == {
        "field": "phone", "code": "needs_scope", "message": "needs the scope personal_data:read"}

    keys = ApiKeys(red.crm)
    red.tokens["form"] = keys.create("form", "integration", scopes=["contacts:write"])[1]
    red.tokens["shop"] = keys.create("shop", "integration", scopes=["contacts:write", "personal_data:write"])[1]
    refused = red.call("form", "POST", "/contacts", {"email": "lead@example.com", "phone": "+14155550002", "birth_date": "2000-01-01"})
    assert refused.status_code == 403 and {i["field"] for i in refused.json()["error"]["issues"]} == {"phone", "birth_date"}
    assert red.crm.contacts.find_by_email("lead@example.com") is None
    created = red.call("shop", "POST", "/contacts", {"email": "lead@example.com", "phone": "+14155550002"})
    assert created.status_code == 201 and "phone" not in created.json()  # written, but this key may not read it back
    assert red.crm.contacts.get(created.json()["id"]).phone == "+14155550002"


def test_owners_stay_within_reach(red):
    users = red.users
    contact_id = red.red_records()["contacts"]
    url = f"/contacts/{contact_id}"
    given_away = red.call("red_agent", "PATCH", url, {"owner_id": users["blue_agent"]})
    assert given_away.status_code == 403 and given_away.json()["error"]["issues"][0]["field"] == "owner_id"
    assert red.call("red_agent", "PATCH", url, {"owner_id": users["red_agent"]}).json()["owner_id"] == users["red_agent"]

    # What an agent creates is its own unless it names a teammate; without a user, nobody's.
    mine = red.call("red_agent", "POST", "/deals", {"title": "Mine", "pipeline": "Sales"}).json()
    assert mine["owner_id"] == users["red_agent"]
    task = red.call("red_agent", "POST", "/tasks", {"title": "For my mate", "assignee_id": users["red_mate"]}).json()
    assert task["assignee_id"] == users["red_mate"]
    pooled = red.call("agent_without_user", "POST", "/organizations", {"name": "Walk-in"})
    assert pooled.status_code == 201 and pooled.json()["owner_id"] is None
    assert red.call("blue_agent", "GET", f"/organizations/{pooled.json()['id']}").status_code == 200  # the shared pool

    # Released to the pool, the contact follows its organization, which is still Red's.
    assert red.call("red_agent", "PATCH", url, {"owner_id": None}).status_code == 200
    assert red.call("blue_agent", "GET", url).status_code == 404 and red.call("red_reader", "GET", url).status_code == 200


def test_the_intake_does_not_match_into_records_outside_reach(red):
    contact_id = red.red_records()["contacts"]
    email = red.crm.contacts.get(contact_id).email
    before = red.crm.contacts.get(contact_id)
    for query in ("", "?on_duplicate=skip"):
        refused = red.call("blue_agent", "POST", f"/contacts{query}", {"email": email, "first_name": "Mallory"})
        assert refused.status_code == 409 and "outside this key's reach" in refused.json()["error"]["message"]
        assert contact_id not in refused.text
    assert red.crm.contacts.get(contact_id).version == before.version

    matched = red.call("red_agent", "POST", "/contacts", {"email": email, "first_name": "Ada"})
    assert matched.status_code == 200 and matched.json()["id"] == contact_id and matched.json()["owner_id"] == before.owner_id
    separate = red.call("blue_agent", "POST", "/contacts?on_duplicate=create", {"email": email})
    assert separate.status_code == 201 and separate.json()["owner_id"] == red.users["blue_agent"]


def test_a_key_whose_user_left_the_team_loses_the_teams_records(red):
    contact_id = red.red_records()["contacts"]
    assert red.call("red_agent", "GET", f"/contacts/{contact_id}").status_code == 200
    red.crm.users.update(red.users["red_agent"], {"team_id": None})
    assert red.call("red_agent", "GET", f"/contacts/{contact_id}").status_code == 404
