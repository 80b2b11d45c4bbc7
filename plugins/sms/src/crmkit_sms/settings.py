"""``[plugins.sms]`` in crmkit.toml, with ``[plugins.sms.twilio]`` and ``[plugins.sms.gateway]``.

Secrets come from the environment through ``${VAR}`` (``auth_token = "${TWILIO_AUTH_TOKEN}"``).
Every CRM loads the plugin once it is installed, so the defaults must open a CRM: with no
``provider`` the ``sms`` channel exists (consents, templates and estimates work) but a send is
refused with a message saying what to configure. Whether a chosen provider has what it needs is
checked when the CRM opens (:func:`check`), so a half-configured provider fails the open instead
of the first send.
"""

from __future__ import annotations

from typing import Any

import attrs
from crmkit.channels.protocol import ReceiptStatus
from crmkit.errors import ConfigError

PROVIDERS = ("", "twilio", "gateway")


@attrs.define
class TwilioSettings:
    account_sid: str = ""
    auth_token: str = ""
    #: The sender: an E.164 number of the account, or a Messaging Service (which picks one).
    from_number: str = ""
    messaging_service_sid: str = ""
    #: Where the Messages REST API lives (tests and regional edges point elsewhere).
    base_url: str = "https://api.twilio.com"
    #: Ask Twilio for delivery status callbacks (needs ``public_url``).
    status_callback: bool = True


@attrs.define
class GatewaySettings:
    url: str = ""
    method: str = "POST"
    #: A header carrying the credentials, e.g. ``auth_value = "Bearer ${SMS_GATEWAY_TOKEN}"``.
    auth_header: str = "Authorization"
    auth_value: str = ""
    #: ``json`` or ``form``. ``body`` is the request body; in its string values ``{to}``,
    #: ``{from}``, ``{body}`` and ``{message_id}`` are replaced (values only, so message text
    #: can never break the JSON).
    body_format: str = "json"
    body: dict[str, Any] = attrs.field(factory=lambda: {"to": "{to}", "from": "{from}", "body": "{body}"})
    from_number: str = ""
    #: Sent as a header with the message's idempotency key when set (``Idempotency-Key``).
    idempotency_header: str = ""
    #: Dotted path to the provider's message id in the JSON response (``data.messages.0.id``).
    response_id_path: str = "id"
    success_statuses: list[int] = attrs.field(factory=lambda: [200, 201, 202])
    #: Callbacks (inbound messages, delivery reports) must carry this secret in ``callback_header``;
    #: without a secret the gateway's callback endpoints refuse everything.
    callback_secret: str = ""
    callback_header: str = "X-Gateway-Secret"
    inbound_from_field: str = "from"
    inbound_to_field: str = "to"
    inbound_body_field: str = "body"
    inbound_id_field: str = "id"
    status_id_field: str = "id"
    status_field: str = "status"
    #: Provider status → crmkit receipt (``delivered``, ``soft_bounce``, ``hard_bounce`` …);
    #: statuses not listed are ignored.
    status_map: dict[str, str] = attrs.field(factory=lambda: {
        "delivered": "delivered", "undelivered": "soft_bounce", "failed": "soft_bounce", "rejected": "hard_bounce",
    })


@attrs.define
class SmsSettings:
    #: ``twilio``, ``gateway``, or empty (no provider: sends are refused).
    provider: str = ""
    #: Who is sending, for HELP and STOP replies (carriers require both).
    brand_name: str = ""
    help_contact: str = ""
    #: Replies to keywords; ``{brand}`` and ``{contact}`` are replaced.
    help_reply: str = "{brand}: for help contact {contact}. Msg&data rates may apply. Reply STOP to opt out."
    stop_reply: str = "{brand}: you are unsubscribed and will get no more messages. Reply START to resubscribe."
    start_reply: str = "{brand}: you are subscribed again. Reply HELP for help, STOP to opt out."
    #: Off when the provider answers keywords itself (Twilio's Advanced Opt-Out): numbers are
    #: still suppressed and re-subscribed, but nothing is sent back.
    keyword_replies: bool = True
    #: The region for inbound numbers written without +country (else [crmkit] default_region).
    default_region: str = ""
    #: The base URL providers reach this CRM's API at (``https://crm.example.com``): signed
    #: callbacks are checked against it, and Twilio is given the status-callback URL under it.
    public_url: str = ""
    #: Seconds to wait for the provider's HTTP API.
    timeout: float = 10.0
    twilio: TwilioSettings = attrs.field(factory=TwilioSettings)
    gateway: GatewaySettings = attrs.field(factory=GatewaySettings)


def check(settings: SmsSettings) -> None:
    """Refuse a configuration that cannot work, naming every key at fault at once."""
    problems: list[str] = []
    if settings.provider not in PROVIDERS:
        problems.append(f"provider must be 'twilio', 'gateway' or empty, not {settings.provider!r}")
    if settings.timeout <= 0:
        problems.append("timeout must be positive")
    if settings.provider and not settings.brand_name.strip():
        problems.append("brand_name is required once a provider is set: HELP and STOP replies must say who is sending")
    if settings.provider == "twilio":
        twilio = settings.twilio
        for key in ("account_sid", "auth_token", "base_url"):
            if not getattr(twilio, key).strip():
                problems.append(f"twilio.{key} is required for provider 'twilio'")
        if not (twilio.from_number or twilio.messaging_service_sid):
            problems.append("twilio.from_number or twilio.messaging_service_sid is required for provider 'twilio'")
    if settings.provider == "gateway":
        problems += _gateway_problems(settings.gateway)
    if problems:
        raise ConfigError("[plugins.sms]: " + "; ".join(problems))


def _gateway_problems(gateway: GatewaySettings) -> list[str]:
    problems = []
    if not gateway.url.strip():
        problems.append("gateway.url is required for provider 'gateway'")
    if gateway.method.upper() not in ("POST", "PUT", "PATCH"):
        problems.append(f"gateway.method must be POST, PUT or PATCH, not {gateway.method!r}")
    if gateway.body_format not in ("json", "form"):
        problems.append(f"gateway.body_format must be 'json' or 'form', not {gateway.body_format!r}")
    elif gateway.body_format == "form" and not all(isinstance(v, str) for v in gateway.body.values()):
        problems.append("gateway.body must hold only strings when body_format is 'form'")
    if not any("{body}" in v for v in _strings(gateway.body)):
        problems.append("gateway.body must contain {body} somewhere")
    if not gateway.success_statuses:
        problems.append("gateway.success_statuses must list at least one HTTP status")
    known = {s.value for s in ReceiptStatus}
    for provider_status, receipt in gateway.status_map.items():
        if receipt not in known:
            problems.append(f"gateway.status_map.{provider_status} must be one of {', '.join(sorted(known))}, not {receipt!r}")
    return problems


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
