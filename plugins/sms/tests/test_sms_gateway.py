"""The generic HTTP gateway against a local server: the request built from the configuration
(method, auth header, JSON or form body template, idempotency header), the answer's
classification and id, and its callbacks behind the shared secret."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from crmkit.api import create_app
from litestar.testing import TestClient

SECRET = "gateway-callback-secret"
STATUS, INBOUND = "/channels/sms/gateway/status", "/channels/sms/gateway/inbound"


@pytest.fixture
def gateway_crm(sms_crm, gateway, monkeypatch):
    """``gateway_crm(**gateway_settings)``: a CRM sending through the local gateway."""
    monkeypatch.setenv("TEST_GATEWAY_TOKEN", "gw-token-1")
    monkeypatch.setenv("TEST_GATEWAY_SECRET", SECRET)

    def make(**overrides: Any) -> Any:
        settings = {"url": f"{gateway.url}/v1/messages", "auth_value": "Bearer ${TEST_GATEWAY_TOKEN}", "from_number": "+14155550199",
                    "response_id_path": "data.messages.0.id", "callback_secret": "${TEST_GATEWAY_SECRET}", **overrides}
        return sms_crm(provider="gateway", gateway=settings)

    return make


def post(client: Any, path: str, payload: Any, *, secret: str | None = SECRET, form: bool = False) -> Any:
    headers = {"X-Gateway-Secret": secret} if secret is not None else {}
    if form:
        return client.post(path, content=urlencode(payload), headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    return client.post(path, content=json.dumps(payload), headers={**headers, "Content-Type": "application/json"})


def test_a_json_send_follows_the_configured_template(gateway_crm, gateway, subscriber):
    crm = gateway_crm(
        body={"messages": [{"destination": "{to}", "origin": "{from}", "text": "{body}"}], "reference": "{message_id}", "flash": False},
        idempotency_header="Idempotency-Key",
    )
    ada = subscriber(crm)
    text = 'Hi {{ contact.first_name }}: "50% off" {to} {body} \\ ok'
    message = crm.messages.send(ada.id, "sms", body=text, purpose="marketing", idempotency_key="spring-ada")

    assert message["status"] == "sent" and message["provider_message_id"].startswith("gw-")
    [request] = gateway.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["Authorization"] == "Bearer gw-token-1" and request.headers["Idempotency-Key"] == "spring-ada"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {  # placeholders inside the text are text, not placeholders
        "messages": [{"destination": "+14155550100", "origin": "+14155550199", "text": 'Hi Ada: "50% off" {to} {body} \\ ok'}],
        "reference": message["id"], "flash": False,
    }


def test_a_form_send_with_put(gateway_crm, gateway, subscriber):
    crm = gateway_crm(method="PUT", body_format="form", body={"to": "{to}", "msg": "{body}", "api_version": "3"},
                      auth_header="X-Api-Key", auth_value="k-123")
    crm.messages.send(subscriber(crm).id, "sms", body="سلام 👋", purpose="marketing")
    [request] = gateway.requests
    assert request.method == "PUT" and request.headers["X-Api-Key"] == "k-123"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"to": "+14155550100", "msg": "سلام 👋", "api_version": "3"}


@pytest.mark.parametrize(("status", "outcome"), [(400, "dead"), (404, "dead"), (200, "dead"), (429, "retrying"), (502, "retrying")])
def test_answers_outside_success_statuses(gateway_crm, gateway, subscriber, status, outcome):
    crm = gateway_crm(success_statuses=[201, 202])
    gateway.fail_next(status, {"error": "nope"})
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == outcome and f"HTTP {status}" in message["last_error"] and '"nope"' in message["last_error"]


def test_a_timeout_is_transient(sms_crm, gateway, subscriber):
    crm = sms_crm(provider="gateway", timeout=0.3, gateway={"url": f"{gateway.url}/v1/messages"})
    gateway.fail_next(202, {"id": "late"}, delay=1.5)
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "retrying" and message["last_error"].startswith("the SMS gateway timed out")


def test_an_answer_without_an_id_is_still_sent(gateway_crm, gateway, subscriber):
    crm = gateway_crm(response_id_path="result.sid")
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "sent" and message["provider_message_id"] is None


def test_delivery_reports_json_one_or_many_and_form(gateway_crm, subscriber):
    crm = gateway_crm()
    ada, bob = subscriber(crm), subscriber(crm, phone="+14155550101", first_name="Bob")
    first = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    second = crm.messages.send(bob.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    with TestClient(create_app(crm)) as client:
        many = post(client, STATUS, [{"id": first, "status": "delivered"}, {"id": second, "status": "rejected"},
                                     {"id": second, "status": "enroute"}])  # not in status_map: ignored
        one = post(client, STATUS, {"id": first, "status": "delivered"})  # redelivered
        form = post(client, STATUS, {"id": "unknown-id", "status": "delivered"}, form=True)
    assert (many.json(), one.json(), form.json()) == ({"recorded": 2}, {"recorded": 1}, {"recorded": 0})
    assert "sms.delivered" in [a.kind for a in crm.activities.for_contact(ada.id)]
    assert "sms.hard_bounce" in [a.kind for a in crm.activities.for_contact(bob.id)]
    assert [(s["address"], s["reason"]) for s in crm.messages.suppressions("sms")] == [("+14155550101", "hard_bounce")]


def test_inbound_texts_and_keywords_through_the_gateway(gateway_crm, gateway, subscriber):
    crm = gateway_crm()
    ada = subscriber(crm)
    with TestClient(create_app(crm)) as client:
        response = post(client, INBOUND, [{"id": "in-1", "from": ada.phone, "to": "+14155550199", "body": "STOP"},
                                          {"id": "in-2", "from": "+14155550123", "to": "+14155550199", "body": "Price list?"}])
        again = post(client, INBOUND, {"id": "in-2", "from": "+14155550123", "body": "Price list?"})
    assert [(r["id"], r["action"]) for r in response.json()["received"]] == [("in-1", "stop"), ("in-2", "lead")]
    assert [r["action"] for r in again.json()["received"]] == ["duplicate"]
    assert [s["reason"] for s in crm.messages.suppressions("sms")] == ["stop"]
    [confirmation] = gateway.requests  # the STOP confirmation, through the gateway
    assert confirmation.json()["to"] == ada.phone and "unsubscribed" in confirmation.json()["body"]
    assert len(crm.contacts.list()) == 2


def test_callbacks_need_the_secret(gateway_crm, sms_crm, gateway):
    crm = gateway_crm()
    with TestClient(create_app(crm)) as client:
        responses = [post(client, INBOUND, {"id": "x", "from": "+14155550123", "body": "hi"}, secret=s) for s in (None, "", "wrong")]
    assert [r.status_code for r in responses] == [403, 403, 403] and crm.contacts.list() == []

    open_door = sms_crm(provider="gateway", gateway={"url": gateway.url})  # no callback_secret configured
    with TestClient(create_app(open_door)) as client:
        assert post(client, INBOUND, {"id": "x", "from": "+14155550123", "body": "hi"}, secret="").status_code == 403


def test_a_callback_missing_fields_names_them(gateway_crm):
    crm = gateway_crm()
    with TestClient(create_app(crm)) as client:
        response = post(client, INBOUND, [{"id": "a", "from": "+14155550123"}, {"body": "hi"}])
        bad_json = client.post(INBOUND, content="{not json", headers={"X-Gateway-Secret": SECRET, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert sorted(i["field"] for i in response.json()["error"]["issues"]) == ["[1].from", "[1].id"]
    assert bad_json.status_code == 400
