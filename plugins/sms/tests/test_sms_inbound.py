"""Inbound texts through the signed Twilio webhook: leads from unknown numbers (once, however
often the webhook is redelivered), STOP / START / HELP with their replies, and the issue's
acceptance tests on every database."""

from __future__ import annotations

from typing import Any

import pytest
from crmkit.api import create_app
from crmkit_sms.keywords import Keyword, classify
from litestar.testing import TestClient

INBOUND = "/channels/sms/twilio/inbound"
STRANGER = "+14155550123"


def received(crm: Any) -> list[Any]:
    with crm.read() as uow:
        return uow.activities.list(uow.activities.where(kind="sms.received"), order_by=("occurred_at", "id"))


def replies(twilio: Any, number: str) -> list[str]:
    return [m["Body"] for m in twilio.messages if m["To"] == number]


@pytest.mark.parametrize(("body", "keyword"), [
    ("STOP", Keyword.STOP), (" stop ", Keyword.STOP), ("Stop\n", Keyword.STOP), ("stopall", Keyword.STOP),
    ("UNSUBSCRIBE", Keyword.STOP), ("cancel", Keyword.STOP), ("End", Keyword.STOP), ("QUIT", Keyword.STOP),
    ("start", Keyword.START), ("UNSTOP", Keyword.START), ("yes", Keyword.START),
    ("HELP", Keyword.HELP), ("info ", Keyword.HELP),
    ("please stop", None), ("STOP!", None), ("stopp", None), ("", None), ("سلام", None), ("help me", None),
])
def test_keywords_are_the_whole_message_in_any_case(body, keyword):
    assert classify(body) is keyword


# --- acceptance (issue "Channels", done when) -----------------------------------------------------


def test_an_unknown_sender_creates_one_lead_not_two_on_redelivery(database_url, sms_crm, hooks, twilio):
    crm = sms_crm(database_url)
    params = hooks.inbound(STRANGER, "Hi, do you ship to Tehran?", "SM" + "a" * 32)
    with TestClient(create_app(crm)) as client:
        for _ in range(3):  # Twilio retries a webhook it thinks failed
            response = hooks.post(client, INBOUND, params)
            assert response.status_code == 200 and "<Response></Response>" in response.text

    [lead] = crm.contacts.list()
    assert lead.phone == STRANGER and lead.lifecycle_stage.value == "lead"
    [activity] = received(crm)
    assert (activity.contact_id, activity.direction.value, activity.external_id) == (lead.id, "inbound", "SM" + "a" * 32)
    assert activity.payload["body"] == "Hi, do you ship to Tehran?" and activity.payload["to"] == hooks.our_number
    assert twilio.requests == []  # an ordinary message gets no automatic answer

    with TestClient(create_app(crm)) as client:  # the same person writes again: same lead
        hooks.post(client, INBOUND, hooks.inbound(STRANGER, "Hello?", "SM" + "b" * 32))
    assert len(crm.contacts.list()) == 1 and [a.contact_id for a in received(crm)] == [lead.id, lead.id]


def test_stop_then_a_campaign_sends_nothing_to_that_number(database_url, sms_crm, subscriber, hooks, twilio):
    crm = sms_crm(database_url)
    ada = subscriber(crm)
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "  stop ", "SM-stop-1"))
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "  stop ", "SM-stop-1"))  # redelivered
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "STOPALL", "SM-stop-2"))  # stopped again

    [entry] = crm.messages.suppressions("sms")
    assert (entry["address"], entry["reason"], entry["contact_id"]) == (ada.phone, "stop", ada.id)
    assert replies(twilio, ada.phone) == ["Shop: you are unsubscribed and will get no more messages. Reply START to resubscribe."]

    campaign = crm.campaigns.create({"name": "Nowruz sale", "channel": "sms"})
    message = crm.messages.send(ada.id, "sms", body="Nowruz: 30% off everything", purpose="marketing", campaign_id=campaign.id)
    assert message["status"] == "vetoed" and "suppressed: stop" in message["veto_reason"]
    assert len(twilio.requests) == 1  # only the confirmation ever reached Twilio
    kinds = sorted(a.kind for a in crm.activities.for_contact(ada.id))
    assert kinds == ["sms.received", "sms.received", "sms.sent", "sms.vetoed"]


def test_help_from_an_unknown_number_gets_the_sender_identity(database_url, sms_crm, hooks, twilio):
    crm = sms_crm(database_url)
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound(STRANGER, "HELP", "SM-help-1"))
        hooks.post(client, INBOUND, hooks.inbound(STRANGER, "HELP", "SM-help-1"))  # redelivered: answered once
    assert replies(twilio, STRANGER) == [
        "Shop: for help contact help@shop.example or +1 415 555 0100. Msg&data rates may apply. Reply STOP to opt out."]
    assert twilio.messages[0]["From"] == hooks.our_number
    assert crm.contacts.list() == []  # asking for help does not make anyone a lead
    [activity] = received(crm)
    assert activity.contact_id is None and activity.payload["keyword"] == "help"


# --- keywords in detail ------------------------------------------------------------------------------


def test_start_lifts_a_stop_and_confirms_and_sending_resumes(sms_crm, subscriber, hooks, twilio):
    crm = sms_crm()
    ada = subscriber(crm)
    crm.messages.suppress("sms", ada.phone, "hard_bounce")  # not the person's choice: START leaves it
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "STOP", "SM1"))
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "Start", "SM2"))
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "UNSTOP", "SM3"))  # nothing left to lift: no reply
    assert [s["reason"] for s in crm.messages.suppressions("sms")] == ["hard_bounce"]
    assert [body.split(":")[1].strip()[:14] for body in replies(twilio, ada.phone)] == ["you are unsubs", "you are subscr"]

    crm.messages.unsuppress("sms", ada.phone, "hard_bounce")
    assert crm.messages.send(ada.id, "sms", body="Welcome back", purpose="marketing")["status"] == "sent"


def test_yes_from_someone_who_never_stopped_is_just_a_message(sms_crm, subscriber, hooks, twilio):
    crm = sms_crm()
    ada = subscriber(crm)
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "Yes", "SM1"))
    [activity] = received(crm)
    assert activity.contact_id == ada.id and activity.payload["keyword"] is None
    assert twilio.requests == [] and crm.messages.suppressions("sms") == []


def test_with_keyword_replies_off_numbers_are_still_suppressed_but_nothing_is_sent(sms_crm, subscriber, hooks, twilio):
    crm = sms_crm(keyword_replies=False)
    ada = subscriber(crm)
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound(ada.phone, "STOP", "SM1"))
        hooks.post(client, INBOUND, hooks.inbound(STRANGER, "HELP", "SM2"))
    assert [s["reason"] for s in crm.messages.suppressions("sms")] == ["stop"]
    assert twilio.requests == []


def test_a_reply_the_provider_refuses_is_logged_as_failed(sms_crm, hooks, twilio):
    crm = sms_crm()
    twilio.fail_next(503)
    with TestClient(create_app(crm)) as client:
        assert hooks.post(client, INBOUND, hooks.inbound(STRANGER, "help", "SM1")).status_code == 200
    with crm.read() as uow:
        [failed] = uow.activities.list(uow.activities.where(kind="sms.failed"))
    assert failed.external_id == "SM1:reply" and "HTTP 503" in failed.payload["error"]


def test_a_known_contact_is_found_whatever_the_number_format(sms_crm, subscriber, hooks, twilio):
    crm = sms_crm(default_region="US")
    ada = subscriber(crm)
    with TestClient(create_app(crm)) as client:
        hooks.post(client, INBOUND, hooks.inbound("(415) 555-0100", "Can I change my order?", "SM1"))
    [activity] = received(crm)
    assert activity.contact_id == ada.id and activity.payload["from"] == "+14155550100"
    assert len(crm.contacts.list()) == 1


def test_a_short_code_cannot_become_a_lead_but_its_text_is_kept(sms_crm, hooks):
    crm = sms_crm()
    with TestClient(create_app(crm)) as client:
        assert hooks.post(client, INBOUND, hooks.inbound("72345", "Your carrier balance is low", "SM1")).status_code == 200
    [activity] = received(crm)
    assert activity.contact_id is None and activity.payload["from"] == "72345"
    assert crm.contacts.list() == []


def test_an_unsigned_inbound_message_is_refused_and_creates_nothing(sms_crm, hooks):
    crm = sms_crm()
    with TestClient(create_app(crm)) as client:
        response = hooks.post(client, INBOUND, hooks.inbound(STRANGER, "STOP", "SM1"), signature="")
    assert response.status_code == 403
    assert crm.contacts.list() == [] and crm.messages.suppressions("sms") == [] and received(crm) == []
