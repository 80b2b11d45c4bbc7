"""Twilio's Programmable Messaging REST API, and its signed webhooks.

Sending: ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded
``To``, ``From`` (or ``MessagingServiceSid``), ``Body`` and, when the CRM has a public URL,
``StatusCallback``; HTTP basic auth with the account SID and auth token. A 2xx answer is JSON
with the message's ``sid``. A 4xx carries a Twilio error ``code``: the message is refused for
good (21211 invalid ``To``; 21610 the recipient replied STOP, so the number is suppressed too) —
except 429 and authentication failures (20003: the account's credentials, not the message, are
wrong; retrying lets a fixed configuration deliver it). 5xx, timeouts and connection errors are
transient. Twilio's API takes no idempotency key: a process that dies after Twilio accepted a
message but before recording it sends it again when the lease expires.

Webhooks (status callbacks, inbound messages) are form posts signed in ``X-Twilio-Signature``:
base64(HMAC-SHA1(auth token, the full URL Twilio called + every POST parameter, sorted by name,
as name followed by value)). :func:`signature` computes it; :meth:`TwilioProvider.authentic`
compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from crmkit.channels import DeliveryReceipt, InboundMessage, SendResult
from crmkit.channels.protocol import ReceiptStatus
from crmkit.errors import FieldIssue, ValidationFailed

from crmkit_sms import keywords
from crmkit_sms.phone import sender_address
from crmkit_sms.providers import Callback, Outcome, failed_transport, transient_status
from crmkit_sms.settings import TwilioSettings

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
#: Error codes meaning the credentials are wrong, not the message (retried, see above).
AUTH_ERRORS = frozenset({20003, 20005})
#: Error codes that put the recipient on the suppression list, and why.
SUPPRESSING_ERRORS = {21610: "stop"}
#: Delivery failures that mean the number cannot take SMS at all (unknown, landline, not mobile).
HARD_FAILURES = frozenset({21211, 21614, 30005, 30006})
FINAL_FAILURES = ("undelivered", "failed")


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with these POST parameters (repeated
    names and duplicate values are signed as Twilio does: each distinct value once, sorted)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port: Twilio signs
    the URL as configured, which a proxy may have rewritten either way."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    host = hostport.rsplit(":", 1)[0] if parts.port is not None else hostport  # as written: Twilio signs the case it was given
    variants = [url, urlunsplit(parts._replace(netloc=f"{prefix}{host}"))]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is not None and parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(variants))


class TwilioProvider:
    name = "twilio"

    def __init__(self, settings: TwilioSettings, *, client: httpx.Client, status_callback_url: str | None = None,
                 region: str | None = None):
        self.settings = settings
        self.client = client
        self.status_callback_url = status_callback_url
        self.region = region
        self.endpoint = f"{settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{settings.account_sid}/Messages.json"
        self.auth = (settings.account_sid, settings.auth_token)

    # --- sending ------------------------------------------------------------------------

    def request_form(self, to: str, body: str) -> dict[str, str]:
        form = {"To": to, "Body": body}
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        else:
            form["From"] = self.settings.from_number
        if self.status_callback_url:
            form["StatusCallback"] = self.status_callback_url
        return form

    def send(self, to: str, body: str, *, message_id: str = "", idempotency_key: str = "") -> Outcome:
        try:
            response = self.client.post(self.endpoint, data=self.request_form(to, body), auth=self.auth)
        except httpx.HTTPError as exc:
            return failed_transport("Twilio", exc)
        return self.outcome(response)

    def outcome(self, response: httpx.Response) -> Outcome:
        error = _json(response)
        if response.is_success:
            sid = error.get("sid")
            if isinstance(sid, str) and sid:
                return Outcome(SendResult.sent(sid))
            # Accepted but unreadable: sending again could deliver twice, so stop here.
            return Outcome(SendResult.permanent(f"Twilio answered HTTP {response.status_code} without a message sid"))
        code = error.get("code")
        text = f"Twilio HTTP {response.status_code}" + (f", error {code}" if code is not None else "") + \
            f": {error.get('message') or response.reason_phrase}"
        if transient_status(response.status_code):
            return Outcome(SendResult.transient(text))
        if response.status_code in (401, 403) or code in AUTH_ERRORS:
            return Outcome(SendResult.transient(f"{text} (check [plugins.sms.twilio] account_sid and auth_token)"))
        return Outcome(SendResult.permanent(text), suppress=SUPPRESSING_ERRORS.get(code) if isinstance(code, int) else None)

    # --- webhooks -----------------------------------------------------------------------

    def authentic(self, callback: Callback) -> bool:
        given = next((v for k, v in callback.headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
        if not given:
            return False
        return any(hmac.compare_digest(signature(self.settings.auth_token, url, callback.params).encode(), given.encode())
                   for url in url_variants(callback.url))

    def inbound(self, payload: Mapping[str, Any]) -> list[tuple[InboundMessage, str | None]]:
        """The message in an inbound webhook, and the number of ours it was sent to."""
        sid = payload.get("MessageSid") or payload.get("SmsMessageSid") or payload.get("SmsSid")
        issues = [FieldIssue(name, "required", f"a Twilio inbound message has {name}")
                  for name, value in (("From", payload.get("From")), ("MessageSid", sid)) if not value]
        if issues:
            raise ValidationFailed(issues)
        body = str(payload.get("Body") or "")
        message = InboundMessage(channel="sms", sender=sender_address(str(payload["From"]), self.region), body=body,
                                 external_id=str(sid), is_stop=keywords.classify(body) is keywords.Keyword.STOP)
        to = payload.get("To")
        return [(message, sender_address(str(to), self.region) if to else None)]

    def parse_inbound(self, payload: Mapping[str, Any]) -> list[InboundMessage]:
        return [message for message, _ in self.inbound(payload)]

    def parse_callback(self, payload: Mapping[str, Any]) -> list[DeliveryReceipt]:
        sid, status = payload.get("MessageSid") or payload.get("SmsSid"), payload.get("MessageStatus") or payload.get("SmsStatus")
        if not sid or not status:
            raise ValidationFailed([FieldIssue(name, "required", f"a Twilio status callback has {name}")
                                    for name, value in (("MessageSid", sid), ("MessageStatus", status)) if not value])
        code = _int(payload.get("ErrorCode"))
        detail = {"provider_status": status, **({"error_code": code} if code is not None else {})}
        if status == "delivered":
            return [DeliveryReceipt(provider_message_id=str(sid), status=ReceiptStatus.DELIVERED, detail=detail)]
        if status == "read":
            return [DeliveryReceipt(provider_message_id=str(sid), status=ReceiptStatus.OPENED, detail=detail)]
        if status in FINAL_FAILURES:
            bounce = ReceiptStatus.HARD_BOUNCE if code in HARD_FAILURES else ReceiptStatus.SOFT_BOUNCE
            return [DeliveryReceipt(provider_message_id=str(sid), status=bounce, detail=detail)]
        return []  # queued, sending, sent, accepted …: the send itself is already recorded

    def suppressions(self, payload: Mapping[str, Any]) -> list[tuple[str, str]]:
        reason = SUPPRESSING_ERRORS.get(_int(payload.get("ErrorCode")) or 0)
        to = payload.get("To")
        return [(sender_address(str(to), self.region), reason)] if reason and to else []


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
