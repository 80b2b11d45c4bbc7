"""The HTTP API's resources and conventions, through Litestar's TestClient against real
databases: every write reaches the same services as the CLI, lists are cursor pages, POSTs are
idempotent, writes honour If-Match, and every error has one shape."""

from __future__ import annotations

from decimal import Decimal

import jsonschema_rs
import pytest
import sqlalchemy as sa
from crmkit.api.errors import ERROR_SCHEMA, ApiError
from crmkit.api.idempotency import IdempotencyStore
from crmkit.api.testing import api_client
from crmkit.errors import ConflictError
from litestar import Response

ERROR = jsonschema_rs.validator_for(ERROR_SCHEMA)


@pytest.fixture
def api(crm):
    with api_client(crm) as client:
        yield client


@pytest.fixture
def sales(api):
    response = api.post("/pipelines", json={"name": "Sales", "stages": [
        {"name": "Lead", "probability": 0.1}, {"name": "Proposal", "probability": 0.5},
        {"name": "Won", "probability": 1, "outcome": "won"}, {"name": "Lost", "probability": 0, "outcome": "lost"}]})
    assert response.status_code == 201, response.text
    return response.json()


def error_of(response, status: int) -> dict:
    """The error body of ``response``, checked to have the API's one error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    ERROR.validate(body)
    return body["error"]


def issues_of(response) -> dict[str, str]:
    return {issue["field"]: issue["code"] for issue in error_of(response, 422)["issues"]}


def count(crm, table: str) -> int:
    with crm.read() as uow:
        return uow.connection.execute(sa.select(sa.func.count()).select_from(uow.table(table))).scalar_one()


# --- contacts: the intake pipeline ----------------------------------------------------------


def test_contacts_are_created_through_the_intake_and_matched(api, crm, events):
    created = api.post("/contacts", json={"email": "Ada@Example.com", "first_name": " Ada ", "tags": ["VIP"]})
    assert created.status_code == 201, created.text
    contact = created.json()
    assert (contact["email"], contact["first_name"], contact["tags"]) == ("ada@example.com", "Ada", ["vip"])
    assert created.headers["location"] == f"/contacts/{contact['id']}"
    assert created.headers["etag"] == '"1"' and created.headers["x-intake-outcome"] == "created"
    assert crm.contacts.get(contact["id"]).first_name == "Ada"
    assert "contact.created" in events.types()

    # The same person again is matched by e-mail and updated, not duplicated.
    again = api.post("/contacts", json={"email": "ada@example.com", "last_name": "Lovelace"})
    assert again.status_code == 200 and again.headers["x-intake-outcome"] == "updated"
    assert again.json()["id"] == contact["id"] and again.json()["last_name"] == "Lovelace"
    skipped = api.post("/contacts?on_duplicate=skip", json={"email": "ada@example.com", "last_name": "Byron"})
    assert skipped.status_code == 200 and skipped.headers["x-intake-outcome"] == "skipped"
    assert crm.contacts.get(contact["id"]).last_name == "Lovelace"
    assert error_of(api.post("/contacts?on_duplicate=merge", json={"email": "x@example.com"}), 400)["issues"][0]["field"] == "on_duplicate"
    assert crm.contacts.count() == 1

    fetched = api.get(f"/contacts/{contact['id']}")
    assert fetched.status_code == 200 and fetched.headers["etag"] == '"2"'
    assert api.get(f"/contacts/{contact['id']}?fields=email,tags").json() == {"id": contact["id"], "email": "ada@example.com", "tags": ["vip"]}

    changed = api.patch(f"/contacts/{contact['id']}", json={"job_title": "Analyst", "address": {"city": "London"}})
    assert changed.status_code == 200 and changed.headers["etag"] == '"3"'
    stored = crm.contacts.get(contact["id"])
    assert (stored.job_title, stored.address.city, stored.last_name) == ("Analyst", "London", "Lovelace")

    assert api.delete(f"/contacts/{contact['id']}").status_code == 204
    assert error_of(api.get(f"/contacts/{contact['id']}"), 404)["code"] == "not_found"
    assert crm.contacts.find(contact["id"]) is None


def test_unknown_read_only_and_mistyped_fields_are_422_naming_each_and_nothing_is_written(api, crm):
    response = api.post("/contacts", json={
        "emial": "ada@example.com", "id": "mine", "version": 7, "score": "3", "tags": "vip",
        "address": {"town": "London", "city": 5}, "lifecycle_stage": "LEAD", "birth_date": "2020-02-30",
    })
    assert issues_of(response) == {
        "emial": "unknown_field", "id": "read_only", "version": "read_only", "score": "invalid_type", "tags": "invalid_type",
        "address.town": "unknown_field", "address.city": "invalid_type", "lifecycle_stage": "invalid_choice",
        "birth_date": "invalid_date",
    }
    # Once the JSON is well-typed, the domain's own rules report every issue together.
    assert issues_of(api.post("/contacts", json={"email": "not-an-address", "phone": "12", "score": 2e9})) == {
        "email": "invalid_email", "phone": "invalid_phone", "score": "out_of_range"}
    assert issues_of(api.post("/contacts", json={"email": "ada@example.com", "owner_id": "nobody"})) == {"owner_id": "not_found"}
    assert issues_of(api.post("/organizations", json={"domain": "acme.test"})) == {"name": "required"}
    assert issues_of(api.post("/contacts", json={"first_name": "Nul\x00"})) == {"first_name": "invalid_character"}
    assert crm.contacts.count() == 0 and crm.organizations.count() == 0

    contact = api.post("/contacts", json={"email": "ada@example.com"}).json()
    assert issues_of(api.patch(f"/contacts/{contact['id']}", json={"created_at": "2020-01-01T00:00:00Z", "emails": "x"})) == {
        "created_at": "read_only", "emails": "unknown_field"}
    assert issues_of(api.patch(f"/contacts/{contact['id']}", json={})) == {"body": "invalid"}
    assert crm.contacts.get(contact["id"]).version == 1


def test_bodies_that_are_not_json_objects_are_400(api, crm):
    for content in (b"{not json", b"[1, 2]", b"null", b""):
        error = error_of(api.post("/contacts", content=content, headers={"Content-Type": "application/json"}), 400)
        assert error["code"] == "invalid_request"
    assert crm.contacts.count() == 0


# --- every resource -------------------------------------------------------------------------


def test_organizations_campaigns_users_and_teams(api, crm):
    org = api.post("/organizations", json={"name": "Acme", "tags": ["b2b"], "address": {"city": "Paris"}, "custom": {}})
    assert org.status_code == 201, org.text
    assert crm.organizations.get(org.json()["id"]).address.city == "Paris"
    assert api.patch(f"/organizations/{org.json()['id']}", json={"industry": "Tools"}).json()["industry"] == "Tools"

    campaign = api.post("/campaigns", json={"name": "Spring", "spend": "1200.50", "starts_on": "2025-03-01", "ends_on": "2025-04-01"})
    assert campaign.status_code == 201 and campaign.json()["spend"] == "1200.5"
    assert crm.campaigns.get(campaign.json()["id"]).spend == Decimal("1200.50")
    assert issues_of(api.post("/campaigns", json={"name": "Late", "starts_on": "2025-03-01", "ends_on": "2025-01-01"})) == {"ends_on": "before_start"}

    team = api.post("/teams", json={"name": "Sales"}).json()
    user = api.post("/users", json={"email": "Bob@Example.com", "role": "manager", "team_id": team["id"]})
    assert user.status_code == 201 and user.json()["email"] == "bob@example.com"
    assert issues_of(api.post("/users", json={"email": "bob@example.com"})) == {"email": "duplicate"}
    assert [u["email"] for u in api.get(f"/users?team_id={team['id']}").json()["data"]] == ["bob@example.com"]
    # Teams have no version: created and deleted, never edited (no PATCH is routed).
    assert error_of(api.patch(f"/teams/{team['id']}", json={"name": "x"}), 405)["code"] == "method_not_allowed"
    assert "etag" not in api.get(f"/teams/{team['id']}").headers
    # A second team of one name (ignoring case) is refused naming the field, like a taken e-mail.
    assert issues_of(api.post("/teams", json={"name": "sales"})) == {"name": "duplicate"}
    assert api.delete(f"/teams/{team['id']}").status_code == 204
    assert crm.users.get(user.json()["id"]).team_id is None


def test_pipelines_deals_move_and_history(api, crm, sales, events):
    assert [s["name"] for s in sales["stages"]] == ["Lead", "Proposal", "Won", "Lost"]
    assert api.get(f"/pipelines/{sales['id']}/stages").json()["data"] == sales["stages"]
    assert [p["name"] for p in api.get("/pipelines").json()["data"]] == ["Sales"]
    assert issues_of(api.post("/pipelines", json={"name": "Bad", "stages": [{"name": "A", "probability": 1.5}, {"name": "A", "probability": 0}]})) == {
        "stages[0].probability": "out_of_range", "stages[1].name": "duplicate"}
    assert issues_of(api.post("/pipelines", json={"name": "Sales", "stages": [{"name": "A", "probability": 0.5}]})) == {"name": "duplicate"}

    contact = api.post("/contacts", json={"email": "ada@example.com"}).json()
    deal = api.post("/deals", json={"title": "Big", "pipeline": "Sales", "amount": "1000.00", "contact_id": contact["id"]})
    assert deal.status_code == 201, deal.text
    deal = deal.json()
    assert (deal["stage_id"], deal["status"], deal["amount"]) == (sales["stages"][0]["id"], "open", "1000")
    assert issues_of(api.post("/deals", json={"title": "No pipeline"})) == {"pipeline": "required"}
    assert issues_of(api.post("/deals", json={"title": "x", "pipeline": "Sales", "stage_id": "s", "status": "won"})) == {
        "stage_id": "read_only", "status": "read_only"}

    moved = api.post(f"/deals/{deal['id']}/move", json={"stage": "Won"}, headers={"If-Match": '"1"'})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], moved.headers["etag"]) == ("won", '"2"')
    assert moved.json()["closed_at"] is not None and "deal.won" in events.types()
    stale = api.post(f"/deals/{deal['id']}/move", json={"stage": "Lead"}, headers={"If-Match": '"1"'})
    assert error_of(stale, 412)["code"] == "precondition_failed"
    assert issues_of(api.post(f"/deals/{deal['id']}/move", json={"stage": "Nowhere"})) == {"stage": "unknown_stage"}
    assert error_of(api.post("/deals/missing/move", json={"stage": "Won"}), 404)["code"] == "not_found"

    history = api.get(f"/deals/{deal['id']}/history").json()["data"]
    assert [(h["from_stage_id"], h["to_stage_id"]) for h in history] == [
        (None, sales["stages"][0]["id"]), (sales["stages"][0]["id"], sales["stages"][2]["id"])]
    assert [d["id"] for d in api.get("/deals?status=won").json()["data"]] == [deal["id"]]
    assert api.get("/deals?status=open").json()["data"] == []
    assert api.patch(f"/deals/{deal['id']}", json={"title": "Bigger", "amount": 1200}).json()["amount"] == "1200"


def test_activities_tasks_consents_and_custom_fields(api, crm):
    contact = api.post("/contacts", json={"email": "ada@example.com"}).json()
    logged = api.post("/activities", json={"kind": "call", "contact_id": contact["id"], "payload": {"minutes": 12}})
    assert logged.status_code == 201 and "etag" not in logged.headers
    assert crm.activities.get(logged.json()["id"]).payload == {"minutes": 12}
    assert issues_of(api.post("/activities", json={"kind": "Phone Call!"})) == {"kind": "invalid_kind"}
    webhook = {"kind": "email.opened", "channel": "email", "external_id": "msg-1", "contact_id": contact["id"]}
    first, redelivered = api.post("/activities", json=webhook), api.post("/activities", json=webhook)
    assert (first.status_code, redelivered.status_code) == (201, 200) and first.json() == redelivered.json()
    assert error_of(api.patch(f"/activities/{logged.json()['id']}", json={"subject": "x"}), 405)  # append-only
    assert [a["kind"] for a in api.get(f"/activities?contact_id={contact['id']}").json()["data"]] == ["call", "email.opened"]

    task = api.post("/tasks", json={"title": "Call back", "contact_id": contact["id"], "due_at": "2030-01-01T09:00:00+02:00"}).json()
    assert task["due_at"] == "2030-01-01T07:00:00+00:00"
    assert issues_of(api.post("/tasks", json={"title": "When?", "due_at": "2030-01-01 09:00"})) == {"due_at": "invalid_datetime"}
    done = api.post(f"/tasks/{task['id']}/complete")
    assert done.status_code == 200 and done.json()["done_at"] is not None
    assert issues_of(api.post(f"/tasks/{task['id']}/complete")) == {"done_at": "already_done"}
    assert crm.tasks.get(task["id"]).is_done

    consent = api.post("/consents", json={"contact_id": contact["id"], "channel": "email", "purpose": "marketing", "status": "granted"})
    assert consent.status_code == 201
    assert crm.consents.current(contact["id"], "email", "marketing").value == "granted"
    assert issues_of(api.post("/consents", json={"contact_id": "nobody", "channel": "email", "purpose": "x", "status": "maybe"})) == {
        "status": "invalid_choice"}

    field = api.post("/custom-fields", json={"entity": "contact", "name": "budget", "type": "number", "required": False})
    assert field.status_code == 201
    assert api.patch(f"/contacts/{contact['id']}", json={"custom": {"budget": 12}}).json()["custom"] == {"budget": 12}
    assert issues_of(api.patch(f"/contacts/{contact['id']}", json={"custom": {"budgte": 1, "budget": "lots"}})) == {
        "custom.budgte": "unknown_field", "custom.budget": "invalid_number"}
    assert [f["name"] for f in api.get("/custom-fields?entity=contact").json()["data"]] == ["budget"]


# --- conventions ----------------------------------------------------------------------------


def test_pagination_walks_every_row_once_in_each_order_with_filters_and_sparse_fields(api, crm):
    ids = [crm.contacts.create({"first_name": f"P{i:02}", "lifecycle_stage": "customer" if i % 3 == 0 else "lead"}).id for i in range(23)]

    def walk(query: str) -> list[dict]:
        rows, cursor, pages = [], None, 0
        while True:
            response = api.get(f"/contacts?limit=5{query}" + (f"&cursor={cursor}" if cursor else ""))
            assert response.status_code == 200, response.text
            page = response.json()
            rows += page["data"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                return rows
            if pages == 2 and query == "":
                # Rows added mid-walk come after the cursor: seen once, nothing skipped.
                ids.append(crm.contacts.create({"first_name": "Late"}).id)

    assert [row["id"] for row in walk("")] == ids
    assert [row["id"] for row in walk("&sort=-created_at")] == ids[::-1]
    by_stage = walk("&sort=lifecycle_stage&fields=lifecycle_stage")
    assert sorted(row["id"] for row in by_stage) == sorted(ids) and all(set(row) == {"id", "lifecycle_stage"} for row in by_stage)
    assert [row["lifecycle_stage"] for row in by_stage] == sorted(row["lifecycle_stage"] for row in by_stage)
    customers = walk("&lifecycle_stage=customer")
    assert [row["id"] for row in customers] == [ids[i] for i in range(0, 23, 3)]

    cursor = api.get("/contacts?limit=5").json()["next_cursor"]
    for query, field in ((f"sort=-created_at&cursor={cursor}", "cursor"), ("cursor=bm9wZQ", "cursor"), ("limit=0", "limit"),
                         ("limit=many", "limit"), ("sort=email", "sort"), ("fields=email,secret", "fields"),
                         ("lifecycle_stage=king", "lifecycle_stage"), ("colour=red", "colour"), ("limit=1&limit=2", "limit")):
        assert error_of(api.get(f"/contacts?{query}"), 400)["issues"][0]["field"] == field, query


def test_idempotency_key_replays_the_first_response_and_refuses_another_request(api, crm):
    key = {"Idempotency-Key": "order-7-contact"}
    first = api.post("/contacts", json={"email": "ada@example.com"}, headers=key)
    replay = api.post("/contacts", json={"email": "ada@example.com"}, headers=key)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers["etag"] == first.headers["etag"]
    assert replay.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert crm.contacts.count() == 1 and crm.contacts.get(first.json()["id"]).version == 1

    other = api.post("/contacts", json={"email": "bob@example.com"}, headers=key)
    assert error_of(other, 422)["code"] == "idempotency_key_reused"
    assert crm.contacts.count() == 1

    # Errors are first responses too: the retry of a rejected request is rejected the same way.
    bad = {"Idempotency-Key": "bad-1"}
    assert issues_of(api.post("/contacts", json={"email": "nope"}, headers=bad)) == {"email": "invalid_email"}
    again = api.post("/contacts", json={"email": "nope"}, headers=bad)
    assert issues_of(again) == {"email": "invalid_email"} and again.headers["idempotent-replayed"] == "true"

    # Keys belong to the API key that sent them: another client's same key is a new request.
    with api_client(crm) as other_client:
        assert other_client.post("/contacts", json={"email": "bob@example.com"}, headers=key).status_code == 201
    assert crm.contacts.count() == 2
    assert error_of(api.post("/contacts", json={"email": "c@example.com"}, headers={"Idempotency-Key": " "}), 400)["issues"][0]["field"] == "Idempotency-Key"

    # Stored hashed: neither the key nor the API key's secret is in the table.
    with crm.read() as uow:
        rows = [dict(row._mapping) for row in uow.connection.execute(sa.select(uow.table("idempotency_keys")))]
    assert len(rows) == 3 and all(len(row["key_hash"]) == 64 for row in rows)
    assert "order-7-contact" not in repr(rows) and api.token not in repr(rows)


def test_a_retry_while_the_first_request_runs_gets_409(crm):
    store = IdempotencyStore(crm)

    def first() -> Response:
        with pytest.raises(ApiError) as excinfo:  # the retry arrives while the first still runs
            store.run("k", "key-1", "same", lambda: Response({}))
        assert (excinfo.value.status, excinfo.value.code) == (409, "idempotency_in_progress")
        return Response({"done": True}, status_code=201)

    assert store.run("k", "key-1", "same", first).status_code == 201
    assert store.run("k", "key-1", "same", lambda: Response({}, status_code=500)).content == {"done": True}


def test_etag_and_if_match_refuse_stale_writes_with_412_and_lost_updates_with_409(api, crm, monkeypatch):
    contact = api.post("/contacts", json={"email": "ada@example.com"}).json()
    url = f"/contacts/{contact['id']}"
    assert api.get(url).headers["etag"] == '"1"'

    ok = api.patch(url, json={"first_name": "Ada"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = api.patch(url, json={"first_name": "Eve"}, headers={"If-Match": '"1"'})
    assert error_of(stale, 412)["code"] == "precondition_failed"
    assert error_of(api.delete(url, headers={"If-Match": '"1"'}), 412)
    assert error_of(api.patch(url, json={"first_name": "Eve"}, headers={"If-Match": "2"}), 400)["issues"][0]["field"] == "If-Match"
    assert crm.contacts.get(contact["id"]).first_name == "Ada"
    assert api.patch(url, json={"last_name": "L"}, headers={"If-Match": '"9", "2"'}).headers["etag"] == '"3"'
    assert api.patch(url, json={"last_name": "Lovelace"}, headers={"If-Match": "*"}).status_code == 200

    # Another writer changes the record after the If-Match check passed and before this write
    # lands: the service's versioned UPDATE refuses it (409), nothing is overwritten.
    original = crm.contacts.update

    def racing_update(ident, changes, *, expected_version=None, actor=None):
        original(ident, {"job_title": "Racer"})
        return original(ident, changes, expected_version=expected_version, actor=actor)

    monkeypatch.setattr(crm.contacts, "update", racing_update)
    lost = api.patch(url, json={"first_name": "Eve"}, headers={"If-Match": '"4"'})
    assert error_of(lost, 409)["code"] == "conflict"
    stored = crm.contacts.get(contact["id"])
    assert (stored.first_name, stored.job_title, stored.version) == ("Ada", "Racer", 5)
    with pytest.raises(ConflictError):
        crm.contacts.update(contact["id"], {"first_name": "Eve"}, expected_version=4)


def test_every_error_has_one_shape(api, crm):
    assert error_of(api.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(api.put("/contacts"), 405)["code"] == "method_not_allowed"
    assert error_of(api.get("/contacts/" + "x" * 300), 404)
    assert error_of(api.get("/contacts", headers={"Authorization": "Bearer nope"}), 401)["code"] == "unauthorized"
    assert error_of(api.post("/contacts", content=b"{", headers={"Content-Type": "application/json"}), 400)


def test_smoke_on_every_database(database_url, crm_factory):
    crm = crm_factory(database_url)
    with api_client(crm) as api:
        created = api.post("/contacts", json={"email": "ada@example.com", "first_name": "Ada"}, headers={"Idempotency-Key": "k"})
        assert created.status_code == 201, created.text
        assert api.post("/contacts", json={"email": "ada@example.com", "first_name": "Ada"}, headers={"Idempotency-Key": "k"}).json() == created.json()
        for i in range(4):
            api.post("/contacts", json={"first_name": f"C{i}"})
        rows, cursor = [], ""
        while cursor is not None:
            page = api.get(f"/contacts?limit=2{cursor and f'&cursor={cursor}'}").json()
            rows += [row["id"] for row in page["data"]]
            cursor = page["next_cursor"]
        assert len(rows) == len(set(rows)) == 5
        url = f"/contacts/{created.json()['id']}"
        assert api.patch(url, json={"last_name": "Lovelace"}, headers={"If-Match": '"1"'}).headers["etag"] == '"2"'
        assert error_of(api.patch(url, json={"last_name": "X"}, headers={"If-Match": '"1"'}), 412)
        assert api.delete(url, headers={"If-Match": '"2"'}).status_code == 204
        assert crm.contacts.count() == 4

