"""``GET /contacts/{id}/personal-data`` (export) and ``DELETE /contacts/{id}/personal-data``
(erase): the same service as ``crmkit privacy``, read rights to export, admin keys only to
erase, record-level authorisation through ``authorize``, ``Idempotency-Key`` and ``If-Match``."""

from __future__ import annotations

from typing import Any

import pytest
from crmkit.api import create_app, resources
from crmkit.api.errors import ApiError
from crmkit.api.testing import api_client


@pytest.fixture
def ada(crm) -> Any:
    contact = crm.contacts.create({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "phone": "+14155550123"})
    crm.activities.log({"kind": "note", "contact_id": contact.id, "subject": "Met Ada at the fair", "payload": {"said": "call me"}})
    crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": "granted",
                         "evidence": {"form": "fair sign-up", "email": "ada@example.com"}})
    return contact


def path(contact_id: str) -> str:
    return f"/contacts/{contact_id}/personal-data"


def test_export_is_the_cli_export_for_any_key_that_may_read_the_contact_and_its_personal_data(crm, ada):
    app = create_app(crm)
    for role, scopes in (("admin", ()), ("agent", ()), ("integration", ["contacts:read", "personal_data:read"])):
        with api_client(crm, role, scopes=scopes, app=app) as client:
            response = client.get(path(ada.id))
            assert response.status_code == 200, (role, response.text)
            body = response.json()
            expected = crm.privacy.export(ada.id)
            assert {k: v for k, v in body.items() if k != "exported_at"} == {k: v for k, v in expected.items() if k != "exported_at"}
            assert body["contact"]["email"] == "ada@example.com" and body["activities"][0]["subject"] == "Met Ada at the fair"
            assert body["consents"][0]["evidence"]["form"] == "fair sign-up" and "audit_log" in body
    # The export holds what such keys may not see on the contact itself (phone, birth date, address).
    for role, scopes in (("read_only", ()), ("integration", ["contacts:read"])):
        with api_client(crm, role, scopes=scopes, app=app) as client:
            hidden = client.get(path(ada.id))
            assert hidden.status_code == 403 and "personal_data:read" in hidden.json()["error"]["message"], role
    with api_client(crm, "integration", scopes=["deals:read"], app=app) as client:
        refused = client.get(path(ada.id))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert client.get(path(ada.id), params={"fields": "email"}).status_code in (400, 403)
    with api_client(crm, app=app) as client:
        missing = client.get(path("no-such-contact"))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get(path(ada.id), params={"surprise": "1"}).status_code == 400


def test_only_admin_keys_erase_and_a_refusal_erases_nothing(crm, ada, events):
    app = create_app(crm)
    for role, scopes in (("manager", ()), ("agent", ()), ("read_only", ()), ("integration", ["contacts:write", "contacts:read"])):
        with api_client(crm, role, scopes=scopes, app=app) as client:
            refused = client.delete(path(ada.id))
            assert refused.status_code == 403, role
            assert refused.json()["error"]["code"] == "forbidden" and "admin" in refused.json()["error"]["message"]
    assert crm.contacts.get(ada.id).email == "ada@example.com" and "contact.erased" not in events.types()
    with api_client(crm, "manager", app=app) as manager:
        # A refused caller learns nothing about which ids exist.
        assert manager.delete(path("no-such-contact")).status_code == 403


def test_admin_erases_everything_and_gets_a_receipt_without_personal_data(crm, ada, events):
    with api_client(crm) as client:
        response = client.delete(path(ada.id))
        assert response.status_code == 200, response.text
        receipt = response.json()
        assert set(receipt) == {"contact_id", "event_id", "erased_at", "actor", "plugins"}
        assert receipt["contact_id"] == ada.id and "crmkit.builtin.privacy_core" in receipt["plugins"]
        assert not {"ada", "lovelace", "5550123"} & set(response.text.lower().replace('"', " ").split())
        erased = [e for e in events.events if e.type == "contact.erased"]
        assert [(e.id, e.subject_id, e.data) for e in erased] == [(receipt["event_id"], ada.id, {})]

        after = client.get(path(ada.id)).json()
        assert after["contact"]["email"] is None and after["contact"]["first_name"] is None
        assert "ada@example.com" not in str(after).lower() and "Met Ada" not in str(after)
        assert [entry["type"] for entry in after["audit_log"]][-1] == "contact.erased"

        # Erasing again is allowed (whatever arrived since goes too) and answers the same way.
        again = client.delete(path(ada.id))
        assert again.status_code == 200 and again.json()["event_id"] != receipt["event_id"]
        assert client.delete(path("no-such-contact")).status_code == 404


def test_erase_honours_idempotency_key_and_if_match(crm, ada, events):
    with api_client(crm) as client:
        stale = client.delete(path(ada.id), headers={"If-Match": '"999"'})
        assert stale.status_code == 412 and crm.contacts.get(ada.id).email == "ada@example.com"
        current = client.get(f"/contacts/{ada.id}").headers["ETag"]

        first = client.delete(path(ada.id), headers={"If-Match": current, "Idempotency-Key": "erase-ada-1"})
        assert first.status_code == 200
        replay = client.delete(path(ada.id), headers={"If-Match": current, "Idempotency-Key": "erase-ada-1"})
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
        assert events.types().count("contact.erased") == 1
        # The ETag the client held is stale now: without the idempotency key that is a 412.
        assert client.delete(path(ada.id), headers={"If-Match": current}).status_code == 412


def test_record_level_rules_in_authorize_apply_to_export_and_erase(crm, ada, monkeypatch):
    """``authorize`` is called with the contact itself, so a record-level rule refuses it."""
    seen: list[tuple[str, str, Any]] = []
    original = resources.authorize

    def private_ada(key: Any, action: str, family: str, record: Any = None) -> None:
        seen.append((action, family, getattr(record, "id", None)))
        if record is not None and getattr(record, "id", None) == ada.id:
            raise ApiError(404, "not_found", f"no contact {ada.id}")
        original(key, action, family, record)

    monkeypatch.setattr(resources, "authorize", private_ada)
    with api_client(crm) as client:
        assert client.get(path(ada.id)).status_code == 404
        assert client.delete(path(ada.id)).status_code == 404
    assert ("read", "contacts", ada.id) in seen and ("write", "contacts", ada.id) in seen
    assert crm.contacts.get(ada.id).email == "ada@example.com"


def test_endpoints_are_documented(crm):
    with api_client(crm) as client:
        document = client.get("/openapi.json").json()
    item = document["paths"]["/contacts/{id}/personal-data"]
    assert item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["required"] == ["contact_id", "exported_at"]
    erase = item["delete"]
    assert erase["responses"]["200"]["content"]["application/json"]["schema"]["title"] == "Erasure"
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in erase["parameters"]
    assert {"$ref": "#/components/parameters/IfMatch"} in erase["parameters"]
    assert {"403", "404", "412"} <= set(erase["responses"])


def test_a_kept_idempotent_response_holding_the_person_is_not_replayed_after_erasure(crm):
    with api_client(crm) as client:
        created = client.post("/contacts", json={"email": "grace@example.com", "first_name": "Grace"}, headers={"Idempotency-Key": "k1"})
        assert created.status_code == 201
        assert client.delete(path(created.json()["id"])).status_code == 200
        replay = client.post("/contacts", json={"email": "grace@example.com", "first_name": "Grace"}, headers={"Idempotency-Key": "k1"})
        assert replay.status_code == 410 and replay.json()["error"]["code"] == "erased"
        assert "grace" not in replay.text.lower()
    assert [c.email for c in crm.contacts.list()] == [None]  # the replay did not bring the person back
