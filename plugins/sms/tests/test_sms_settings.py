"""``[plugins.sms]``: an installed plugin opens every CRM with its defaults, a chosen provider
must be complete (the open fails naming every missing key), secrets come from the environment;
and numbers are normalised to E.164."""

from __future__ import annotations

import pytest
from crmkit.errors import ConfigError, PluginError
from crmkit_sms.channel import SmsChannel
from crmkit_sms.phone import sender_address, to_e164


def test_without_a_provider_the_channel_exists_and_refuses_to_send(crm):
    channel = SmsChannel.for_crm(crm)
    assert channel.provider is None
    contact = crm.contacts.create({"first_name": "Ada", "phone": "+14155550100"})
    message = crm.messages.send(contact.id, "sms", body="Your code: 1234", purpose="transactional")
    assert message["status"] == "dead" and "set provider in [plugins.sms]" in message["last_error"]


def test_the_sms_address_is_the_e164_phone(crm):
    ada = crm.contacts.create({"first_name": "Ada", "phone": "+1 (415) 555-0100"})
    assert SmsChannel.for_crm(crm).address_for(ada) == "+14155550100"
    nobody = crm.contacts.create({"first_name": "No", "email": "no@example.org"})
    with pytest.raises(Exception, match="has no sms address"):
        crm.messages.send(nobody.id, "sms", body="Hi", purpose="transactional")


@pytest.mark.parametrize(("overrides", "messages"), [
    ({"provider": "pigeon"}, ["provider must be 'twilio', 'gateway' or empty, not 'pigeon'"]),
    ({"brand_name": ""}, ["brand_name is required once a provider is set"]),
    ({"twilio": {"account_sid": "", "from_number": ""}},
     ["twilio.account_sid is required", "twilio.from_number or twilio.messaging_service_sid is required"]),
    ({"provider": "gateway"}, ["gateway.url is required"]),
    ({"provider": "gateway", "gateway": {"url": "http://x", "method": "GET", "body_format": "xml", "body": {"t": "{to}"}}},
     ["gateway.method must be POST, PUT or PATCH", "gateway.body_format must be 'json' or 'form'", "gateway.body must contain {body}"]),
    ({"provider": "gateway", "gateway": {"url": "http://x", "status_map": {"ok": "great"}}}, ["gateway.status_map.ok must be one of"]),
    ({"timeout": 0.0}, ["timeout must be positive"]),
])
def test_an_incomplete_provider_fails_the_open_naming_every_key(sms_crm, overrides, messages):
    with pytest.raises(PluginError) as failure:
        sms_crm(**overrides)
    cause = failure.value.__cause__
    assert isinstance(cause, ConfigError) and str(cause).startswith("[plugins.sms]: ")
    for message in messages:
        assert message in str(cause)
    assert "plugin 'sms'" in str(failure.value)


def test_wrong_types_and_unknown_keys_are_refused_by_the_core(sms_crm):
    with pytest.raises(ConfigError, match=r"\[plugins.sms\].twilio.status_callback"):
        sms_crm(twilio={"status_callback": "yes"})
    with pytest.raises(ConfigError, match="auth_tokn"):
        sms_crm(twilio={"auth_tokn": "x"})


def test_a_missing_secret_variable_is_named(sms_crm, monkeypatch):
    monkeypatch.delenv("TEST_TWILIO_AUTH_TOKEN")
    with pytest.raises(ConfigError, match="environment variable TEST_TWILIO_AUTH_TOKEN is not set"):
        sms_crm()


def test_the_secret_comes_from_the_environment_and_two_crms_keep_their_own_channel(sms_crm):
    first, second = sms_crm(), sms_crm(brand_name="Other Shop")
    assert SmsChannel.for_crm(first).settings.twilio.auth_token == "twilio-token-for-tests"
    assert SmsChannel.for_crm(first) is not SmsChannel.for_crm(second)
    assert SmsChannel.for_crm(second).settings.brand_name == "Other Shop"


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+14155550100", None, "+14155550100"),
    ("+1 (415) 555-0100", None, "+14155550100"),
    ("(415) 555-0100", "US", "+14155550100"),
    ("(415) 555-0100", None, None),  # no +country and no region: not a number we can place
    ("09121234567", "IR", "+989121234567"),
    ("+98 912 123 4567", None, "+989121234567"),
    ("۰۹۱۲۱۲۳۴۵۶۷", "IR", "+989121234567"),  # Persian digits
    ("72345", "US", None),  # a short code
    ("ShopInfo", None, None),  # an alphanumeric sender id
    ("", None, None),
    (None, None, None),
])
def test_to_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


def test_a_sender_that_is_not_a_phone_number_keeps_its_own_form():
    assert sender_address(" 72345 ") == "72345" and sender_address("+1 415 555 0100") == "+14155550100"
