"""Fixtures for the SMS plugin's tests: local servers speaking the providers' wire formats, CRMs
configured (through crmkit.toml, secrets from the environment) to send to them, and signed
webhook posts."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import tomli_w
from crmkit_sms.testing import GatewayServer, TwilioServer

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-token-for-tests"
OUR_NUMBER = "+14155550199"
GATEWAY_SECRET = "gateway-callback-secret"
TEST_HOST = "http://testserver.local"  # litestar.testing.TestClient's base URL


def hand_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's signature worked out here, apart from the plugin's code: the URL, then each
    parameter's name and value in name order, HMAC-SHA1 with the auth token, base64."""
    signed = url + "".join(f"{name}{value}" for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def write_config(path: Path, database_url: str, sms: dict[str, Any], channels: dict[str, Any] | None = None) -> Path:
    document: dict[str, Any] = {"crmkit": {"database": database_url}, "plugins": {"sms": sms}}
    if channels:
        document["plugins"]["channels"] = channels
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture
def twilio() -> Iterator[TwilioServer]:
    with TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def gateway() -> Iterator[GatewayServer]:
    with GatewayServer() as server:
        yield server


@pytest.fixture
def sms_crm(crm_factory: Callable[..., Any], tmp_path: Path, twilio: TwilioServer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``sms_crm(database_url=None, channels=None, dispatch_inline=True, **sms_settings)``: a
    migrated CRM whose ``sms`` channel sends through the local Twilio server."""
    monkeypatch.setenv("TEST_TWILIO_AUTH_TOKEN", AUTH_TOKEN)

    def make(database_url: str | None = None, channels: dict[str, Any] | None = None, dispatch_inline: bool = True,
             **overrides: Any) -> Any:
        settings: dict[str, Any] = {
            "provider": "twilio", "brand_name": "Shop", "help_contact": "help@shop.example or +1 415 555 0100",
            "twilio": {"account_sid": ACCOUNT_SID, "auth_token": "${TEST_TWILIO_AUTH_TOKEN}", "from_number": OUR_NUMBER,
                       "base_url": twilio.url},
            "timeout": 5.0,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
        url = database_url or f"sqlite:///{tmp_path / 'sms.db'}"
        config = write_config(tmp_path / f"crmkit-{len(list(tmp_path.glob('crmkit-*.toml')))}.toml", url, settings, channels)
        return crm_factory(str(config), dispatch_inline=dispatch_inline)

    return make


class TwilioWebhooks:
    """Builds and posts Twilio's webhooks as Twilio does, signed with :func:`hand_signature`."""

    account_sid, auth_token, our_number, host = ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, TEST_HOST
    sign = staticmethod(hand_signature)

    def post(self, client: Any, path: str, params: dict[str, str], *, url: str | None = None, token: str = AUTH_TOKEN,
             signature: str | None = None) -> Any:
        """POST the form to the app, signed for ``url`` (default: the URL the test client calls)
        unless ``signature`` is given ("" sends none)."""
        pairs = list(params.items())
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        sign = hand_signature(token, url or f"{TEST_HOST}{path}", pairs) if signature is None else signature
        if sign:
            headers["X-Twilio-Signature"] = sign
        return client.post(path, content=urlencode(pairs), headers=headers)

    def inbound(self, sender: str, body: str, sid: str, to: str = OUR_NUMBER) -> dict[str, str]:
        """An inbound-message webhook's parameters."""
        return {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received", "Body": body,
                "To": to, "NumSegments": "1", "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender,
                "ApiVersion": "2010-04-01"}

    def status(self, sid: str, status: str, error_code: str | None = None, to: str = "+14155550100") -> dict[str, str]:
        """A status callback's parameters."""
        params = {"SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": to, "MessageSid": sid,
                  "AccountSid": ACCOUNT_SID, "From": OUR_NUMBER, "ApiVersion": "2010-04-01"}
        if error_code:
            params["ErrorCode"] = error_code
        return params


@pytest.fixture
def hooks() -> TwilioWebhooks:
    return TwilioWebhooks()


def subscriber_of(crm: Any, phone: str = "+14155550100", purpose: str = "marketing", **fields: Any) -> Any:
    contact = crm.contacts.create({"first_name": "Ada", "phone": phone, **fields})
    crm.consents.record({"contact_id": contact.id, "channel": "sms", "purpose": purpose, "status": "granted"})
    return contact


@pytest.fixture
def subscriber() -> Callable[..., Any]:
    """``subscriber(crm, phone="+14155550100", purpose="marketing", **fields)``: a contact with
    granted SMS consent for the purpose."""
    return subscriber_of
