"""The Twilio adapter against a local server speaking Twilio's Messages API: the request it
sends, how each answer is classified, signed status callbacks and their signature check."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from crmkit.api import create_app
from crmkit.domain.values import utcnow
from crmkit_sms.providers.twilio import signature, url_variants
from crmkit_sms.testing import twilio_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

STATUS = "/channels/sms/twilio/status"


def kinds(crm: Any, contact_id: str) -> list[str]:
    return sorted(a.kind for a in crm.activities.for_contact(contact_id))


# --- sending -----------------------------------------------------------------------------------


def test_a_send_is_a_form_post_to_the_messages_resource_with_basic_auth(sms_crm, twilio, subscriber, hooks):
    crm = sms_crm(public_url="https://crm.shop.example/")
    ada = subscriber(crm)
    message = crm.messages.send(ada.id, "sms", body="Hi {{ contact.first_name }}, 20% off today", purpose="marketing")

    assert message["status"] == "sent"
    [request] = twilio.requests
    assert (request.method, request.path) == ("POST", f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json")
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"To": "+14155550100", "From": hooks.our_number, "Body": "Hi Ada, 20% off today",
                              "StatusCallback": "https://crm.shop.example/channels/sms/twilio/status"}
    assert message["provider_message_id"].startswith("SM") and len(message["provider_message_id"]) == 34
    assert twilio.messages == [request.form()]
    assert kinds(crm, ada.id) == ["sms.sent"]


def test_a_messaging_service_replaces_from_and_no_public_url_means_no_status_callback(sms_crm, twilio, subscriber):
    crm = sms_crm(twilio={"from_number": "", "messaging_service_sid": "MG" + "2" * 32})
    ada = subscriber(crm, purpose="transactional")
    assert crm.messages.send(ada.id, "sms", body="Your code is 123456", purpose="transactional")["status"] == "sent"
    assert twilio.requests[0].form() == {"To": "+14155550100", "Body": "Your code is 123456", "MessagingServiceSid": "MG" + "2" * 32}


def test_persian_text_and_emoji_reach_twilio_unchanged(sms_crm, twilio, subscriber):
    crm = sms_crm()
    sara = subscriber(crm, phone="+989121234567", first_name="سارا")
    crm.messages.send(sara.id, "sms", body="سلام {{ contact.first_name }} 👋 تخفیف نوروزی", purpose="marketing")
    assert twilio.messages[0]["Body"] == "سلام سارا 👋 تخفیف نوروزی" and twilio.messages[0]["To"] == "+989121234567"


@pytest.mark.parametrize(("phone", "code"), [("+15005550001", "21211"), ("+15005550009", "21614")])
def test_a_4xx_with_a_twilio_code_is_permanent(sms_crm, twilio, phone, code, subscriber):
    crm = sms_crm()
    contact = subscriber(crm, phone=phone)
    message = crm.messages.send(contact.id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "dead" and message["attempts"] == 1
    assert f"Twilio HTTP 400, error {code}" in message["last_error"]
    assert crm.messages.suppressions("sms") == []
    assert len(twilio.requests) == 1 and twilio.messages == []


def test_an_unsubscribed_recipient_is_permanent_and_suppresses_the_number(sms_crm, twilio, subscriber):
    crm = sms_crm()
    contact = subscriber(crm, phone="+15005550004")
    message = crm.messages.send(contact.id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "dead" and "error 21610" in message["last_error"]
    [entry] = crm.messages.suppressions("sms")
    assert (entry["address"], entry["reason"], entry["contact_id"]) == ("+15005550004", "stop", contact.id)

    again = crm.messages.send(contact.id, "sms", body="Hello again", purpose="transactional")
    assert again["status"] == "vetoed" and "suppressed: stop" in again["veto_reason"]
    assert len(twilio.requests) == 1  # the veto chain stopped the second one before Twilio


@pytest.mark.parametrize(("status", "document", "expected"), [
    (429, twilio_error(429, 20429, "Too Many Requests"), "Twilio HTTP 429, error 20429: Too Many Requests"),
    (500, twilio_error(500, 20500, "Internal Server Error"), "Twilio HTTP 500, error 20500"),
    (503, None, "Twilio HTTP 503"),
    (401, twilio_error(401, 20003, "Authenticate"), "check [plugins.sms.twilio] account_sid and auth_token"),
])
def test_rate_limits_server_errors_and_bad_credentials_are_retried(sms_crm, twilio, status, document, expected, subscriber):
    crm = sms_crm()
    ada = subscriber(crm)
    twilio.fail_next(status, document)
    message = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "retrying" and expected in message["last_error"]

    report = crm.messages.drain(now=utcnow() + timedelta(hours=1))  # past the backoff: the next answer is a 201
    assert report.sent == 1 and crm.messages.get(message["id"])["status"] == "sent"
    assert len(twilio.requests) == 2 and len(twilio.messages) == 1


def test_a_wrong_auth_token_is_refused_by_twilio_and_retried(sms_crm, twilio, monkeypatch, subscriber):
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token")
    crm = sms_crm(twilio={"auth_token": "${WRONG_TOKEN}"})
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "retrying" and "HTTP 401, error 20003" in message["last_error"]


def test_a_timeout_is_transient(sms_crm, twilio, subscriber):
    crm = sms_crm(timeout=0.3)
    twilio.fail_next(201, {"sid": "SMlate", "status": "queued"}, delay=1.5)
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "retrying" and message["last_error"].startswith("Twilio timed out")


def test_an_unreachable_api_is_transient(sms_crm, twilio, subscriber):
    crm = sms_crm(twilio={"base_url": "http://127.0.0.1:9"})  # the discard port: nothing listens
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "retrying" and message["last_error"].startswith("Twilio unreachable")


def test_a_2xx_without_a_sid_is_not_sent_twice(sms_crm, twilio, subscriber):
    crm = sms_crm()
    twilio.fail_next(201, {"status": "queued"})
    message = crm.messages.send(subscriber(crm).id, "sms", body="Hello", purpose="marketing")
    assert message["status"] == "dead" and "without a message sid" in message["last_error"]


# --- signatures --------------------------------------------------------------------------------

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"), ("From", "+14158675309"),
              ("To", "+18005551212")]


@pytest.mark.parametrize(("url", "params", "expected"), [
    (DOC_URL, DOC_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # Twilio's documented example
    (DOC_URL, list(reversed(DOC_PARAMS)), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # order of the form does not matter
    ("https://MyCompany.com/myapp.php?foo=1&bar=2", DOC_PARAMS, "g9IN/x4Cft2g517EjYvEvM/W7LU="),  # the URL as written
    ("https://MyCompany.com:1234/myapp.php?foo=1&bar=2", DOC_PARAMS, "PCqOZm8cnu/L6+u5i5fuEd+Iac4="),
    # Repeated names: each distinct value once, sorted (Twilio's helper libraries' vector).
    (DOC_URL, [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")],
     "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
])
def test_signature_matches_twilios_published_vectors(url, params, expected):
    assert signature("12345", url, params) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # hooks is stateless
@given(st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12),
                       st.text(st.characters(blacklist_categories=["Cs"]), max_size=40), max_size=8),
       st.text(min_size=1, max_size=20, alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_signature_agrees_with_a_hand_computed_one(hooks, params, path):
    url = f"https://crm.example.org/{path}?x=1"
    assert signature(hooks.auth_token, url, list(params.items())) == hooks.sign(hooks.auth_token, url, list(params.items()))


def test_url_variants_cover_a_proxy_adding_or_dropping_the_port():
    assert url_variants("https://crm.example.org/hook") == ["https://crm.example.org/hook", "https://crm.example.org:443/hook"]
    assert url_variants("https://crm.example.org:443/hook") == ["https://crm.example.org:443/hook", "https://crm.example.org/hook"]


# --- status callbacks --------------------------------------------------------------------------


def test_delivery_callbacks_become_activities_once(sms_crm, subscriber, hooks):
    crm = sms_crm()
    ada = subscriber(crm)
    sid = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    with TestClient(create_app(crm)) as client:
        for status in ("queued", "sent", "delivered", "delivered"):  # the last one: Twilio retrying its callback
            response = hooks.post(client, STATUS, hooks.status(sid, status))
            assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    assert kinds(crm, ada.id) == ["sms.delivered", "sms.sent"]
    delivered = next(a for a in crm.activities.for_contact(ada.id) if a.kind == "sms.delivered")
    assert delivered.payload["provider_status"] == "delivered" and delivered.payload["provider_message_id"] == sid
    assert crm.messages.list(contact_id=ada.id)[0]["status"] == "delivered"


@pytest.mark.parametrize(("error_code", "receipt", "suppressed"), [
    ("30003", "soft_bounce", []),  # unreachable handset: may work tomorrow
    ("30005", "hard_bounce", ["hard_bounce"]),  # unknown destination
    ("21610", "soft_bounce", ["stop"]),  # the recipient had replied STOP to Twilio
])
def test_failed_deliveries_bounce_and_may_suppress(sms_crm, error_code, receipt, suppressed, subscriber, hooks):
    crm = sms_crm()
    ada = subscriber(crm)
    sid = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    with TestClient(create_app(crm)) as client:
        assert hooks.post(client, STATUS, hooks.status(sid, "undelivered", error_code)).status_code == 200
    assert f"sms.{receipt}" in kinds(crm, ada.id)
    assert sorted(s["reason"] for s in crm.messages.suppressions("sms")) == suppressed


def test_a_callback_without_a_valid_signature_is_refused_and_changes_nothing(sms_crm, subscriber, hooks, twilio):
    crm = sms_crm()
    ada = subscriber(crm)
    sid = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    params = hooks.status(sid, "delivered")
    with TestClient(create_app(crm)) as client:
        refusals = [
            hooks.post(client, STATUS, params, signature=""),  # none
            hooks.post(client, STATUS, params, signature="RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # someone else's
            hooks.post(client, STATUS, params, token="not-our-token"),  # signed with another account's token
            hooks.post(client, STATUS, params, url=f"{hooks.host}/somewhere/else"),  # for another URL
            client.post(STATUS, content="MessageSid=" + sid + "&MessageStatus=delivered",  # the body changed after signing
                        headers={"Content-Type": "application/x-www-form-urlencoded",
                                 "X-Twilio-Signature": hooks.sign(twilio.auth_token, f"{hooks.host}{STATUS}", list(params.items()))}),
        ]
    assert [r.status_code for r in refusals] == [403] * 5
    assert refusals[0].json()["error"]["code"] == "forbidden"
    assert kinds(crm, ada.id) == ["sms.sent"]


def test_behind_a_proxy_the_signature_is_checked_against_the_public_url(sms_crm, subscriber, hooks):
    crm = sms_crm(public_url="https://crm.shop.example")
    ada = subscriber(crm)
    sid = crm.messages.send(ada.id, "sms", body="Hello", purpose="marketing")["provider_message_id"]
    params = hooks.status(sid, "delivered")
    with TestClient(create_app(crm)) as client:
        assert hooks.post(client, STATUS, params).status_code == 403  # signed for the internal URL
        assert hooks.post(client, STATUS, params, url=f"https://crm.shop.example{STATUS}").status_code == 200
    assert "sms.delivered" in kinds(crm, ada.id)


def test_a_signed_callback_missing_fields_is_422_naming_them(sms_crm, hooks, twilio):
    crm = sms_crm()
    with TestClient(create_app(crm)) as client:
        response = hooks.post(client, STATUS, {"AccountSid": twilio.account_sid, "MessageStatus": "delivered"})
    assert response.status_code == 422
    assert [(i["field"], i["code"]) for i in response.json()["error"]["issues"]] == [("MessageSid", "required")]


def test_twilio_routes_answer_404_when_twilio_is_not_the_provider(crm, hooks):
    with TestClient(create_app(crm)) as client:  # the plugin is installed, no provider configured
        response = hooks.post(client, STATUS, hooks.status("SMx", "delivered"))
    assert response.status_code == 404 and "not configured" in response.json()["error"]["message"]


def test_the_webhooks_stay_out_of_the_api_description(sms_crm):
    crm = sms_crm()
    with TestClient(create_app(crm)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/channels/sms")]
