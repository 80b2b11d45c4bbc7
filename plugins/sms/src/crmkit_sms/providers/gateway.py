"""A generic HTTP SMS gateway, described entirely by ``[plugins.sms.gateway]``.

Sending: ``method url`` with the configured auth header and a JSON or form body built from
``body``, whose string values may contain ``{to}``, ``{from}``, ``{body}`` and
``{message_id}``; the provider's message id is read from the JSON answer at
``response_id_path`` (``data.messages.0.id``). A status in ``success_statuses`` is sent; 429,
5xx, timeouts and connection errors are transient; any other answer is a permanent refusal.
With ``idempotency_header`` set the message's idempotency key goes along, so a gateway that
honours it delivers a retried message once.

Callbacks (inbound messages and delivery reports, JSON — one object or a list — or form) are
accepted only with ``callback_secret`` in ``callback_header``; their field names are
configured (``inbound_from_field`` …, ``status_field``, ``status_map``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any

import httpx
from crmkit.channels import DeliveryReceipt, InboundMessage, SendResult, SendStatus
from crmkit.channels.protocol import ReceiptStatus
from crmkit.errors import FieldIssue, ValidationFailed

from crmkit_sms import keywords
from crmkit_sms.phone import sender_address
from crmkit_sms.providers import Callback, Outcome, failed_transport, transient_status
from crmkit_sms.settings import GatewaySettings

PLACEHOLDER = re.compile(r"\{(to|from|body|message_id)\}")


def fill(template: Any, values: Mapping[str, str]) -> Any:
    """``template`` with the placeholders in its string values replaced in one pass (a text
    that itself contains ``{to}`` stays as written); keys and structure stay as configured."""
    if isinstance(template, str):
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, values) for value in template]
    return template


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path (list positions as numbers), or None."""
    node = document
    for step in path.split("."):
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node


class GatewayProvider:
    name = "gateway"

    def __init__(self, settings: GatewaySettings, *, client: httpx.Client, region: str | None = None):
        self.settings = settings
        self.client = client
        self.region = region

    def request(self, to: str, body: str, message_id: str, idempotency_key: str) -> httpx.Request:
        s = self.settings
        headers = {}
        if s.auth_value:
            headers[s.auth_header] = s.auth_value
        if s.idempotency_header and idempotency_key:
            headers[s.idempotency_header] = idempotency_key
        content = fill(s.body, {"to": to, "from": s.from_number, "body": body, "message_id": message_id})
        payload = {"json": content} if s.body_format == "json" else {"data": content}
        return self.client.build_request(s.method.upper(), s.url, headers=headers, **payload)

    def send(self, to: str, body: str, *, message_id: str = "", idempotency_key: str = "") -> Outcome:
        try:
            response = self.client.send(self.request(to, body, message_id, idempotency_key))
        except httpx.HTTPError as exc:
            return failed_transport("the SMS gateway", exc)
        if response.status_code in self.settings.success_statuses:
            try:
                provider_id = dig(response.json(), self.settings.response_id_path)
            except ValueError:
                provider_id = None
            # Sent either way; without an id delivery reports cannot be matched to it.
            return Outcome(SendResult(SendStatus.SENT, provider_message_id=str(provider_id) if provider_id not in (None, "") else None))
        text = f"the SMS gateway answered HTTP {response.status_code}: {response.text[:300]}"
        return Outcome(SendResult.transient(text) if transient_status(response.status_code) else SendResult.permanent(text))

    def authentic(self, callback: Callback) -> bool:
        secret = self.settings.callback_secret
        if not secret:
            return False  # no secret configured: nobody can prove they are the gateway
        given = next((v for k, v in callback.headers.items() if k.lower() == self.settings.callback_header.lower()), "")
        return hmac.compare_digest(given.encode(), secret.encode())

    def inbound(self, payload: Mapping[str, Any] | list[Any]) -> list[tuple[InboundMessage, str | None]]:
        """The messages in an inbound callback, each with the number of ours it was sent to."""
        s = self.settings
        messages = []
        for index, item in enumerate(_items(payload)):
            sender, ident, to = item.get(s.inbound_from_field), item.get(s.inbound_id_field), item.get(s.inbound_to_field)
            _require(index, ((s.inbound_from_field, sender), (s.inbound_id_field, ident)))
            body = str(item.get(s.inbound_body_field) or "")
            message = InboundMessage(channel="sms", sender=sender_address(str(sender), self.region), body=body,
                                     external_id=str(ident), is_stop=keywords.classify(body) is keywords.Keyword.STOP)
            messages.append((message, sender_address(str(to), self.region) if to else None))
        return messages

    def parse_inbound(self, payload: Mapping[str, Any] | list[Any]) -> list[InboundMessage]:
        return [message for message, _ in self.inbound(payload)]

    def parse_callback(self, payload: Mapping[str, Any] | list[Any]) -> list[DeliveryReceipt]:
        s = self.settings
        receipts = []
        for index, item in enumerate(_items(payload)):
            ident, status = item.get(s.status_id_field), item.get(s.status_field)
            _require(index, ((s.status_id_field, ident), (s.status_field, status)))
            mapped = s.status_map.get(str(status))
            if mapped is not None:
                receipts.append(DeliveryReceipt(provider_message_id=str(ident), status=ReceiptStatus(mapped),
                                                detail={"provider_status": str(status)}))
        return receipts

    def suppressions(self, payload: Mapping[str, Any]) -> list[tuple[str, str]]:
        return []  # hard bounces suppress through their receipts; nothing gateway-specific


def _items(payload: Mapping[str, Any] | list[Any]) -> list[Mapping[str, Any]]:
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, Mapping) for item in items):
        raise ValidationFailed.single("body", "invalid", "a gateway callback is an object or a list of objects")
    return items  # type: ignore[return-value]


def _require(index: int, fields: tuple[tuple[str, Any], ...]) -> None:
    issues = [FieldIssue(name if index == 0 else f"[{index}].{name}", "required", f"the gateway callback has no {name!r}")
              for name, value in fields if value in (None, "")]
    if issues:
        raise ValidationFailed(issues)
