"""The providers' webhooks in crmkit's HTTP API.

``POST /channels/sms/twilio/status`` and ``/channels/sms/twilio/inbound`` take Twilio's signed
form posts; ``/channels/sms/gateway/status`` and ``/channels/sms/gateway/inbound`` the generic
gateway's (JSON or form, with its shared secret). They carry no API key — the provider's
signature or secret is the credential, and a missing or wrong one is a 403 before anything is
read into the CRM — and they are left out of ``/openapi.json``: providers call them, API clients
do not. A callback for a provider other than the configured one is a 404.

Imported only when ``crmkit.api.create_app`` collects routes, so the web stack stays optional.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from crmkit.api.auth import PUBLIC
from crmkit.api.errors import ApiError
from crmkit.errors import ConfigError
from litestar import Request, Response, post
from litestar.di import NamedDependency

from crmkit_sms.channel import INBOUND_PATH, STATUS_PATH, SmsChannel
from crmkit_sms.inbound import handle_inbound, handle_status
from crmkit_sms.providers import Callback

#: An empty TwiML document: Twilio sends nothing back itself (replies go through the API).
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def read_callback(request: Request[Any, Any, Any], channel: SmsChannel) -> Callback:
    """The request as the provider sent it: the URL it called (under ``public_url`` when one is
    configured: behind a proxy the request's own URL is not what the provider signed), headers,
    and the body as ordered form pairs or JSON."""
    body = await request.body()
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = channel.public_url(path) or str(request.url)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            document = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "invalid_request", "the body is not valid JSON") from None
        return Callback(url=url, headers=dict(request.headers), json=document, body=body)
    try:
        params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the form body is not UTF-8") from None
    return Callback(url=url, headers=dict(request.headers), params=params, body=body)


async def _authenticated(request: Request[Any, Any, Any], crm: Any, provider: str) -> Callback:
    channel = SmsChannel.for_crm(crm)
    try:
        source = channel.provider_named(provider)
    except ConfigError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    callback = await read_callback(request, channel)
    if not source.authentic(callback):
        raise ApiError(403, "forbidden", f"the {provider} callback's signature or secret is missing or wrong")
    return callback


def _payload(callback: Callback) -> Any:
    return callback.json if callback.json is not None else callback.form()


def sms_routes() -> list[Any]:
    options = {"opt": {PUBLIC: True}, "include_in_schema": False, "status_code": 200}

    @post(STATUS_PATH.format(provider="twilio"), **options)
    async def twilio_status(request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> Response[str]:
        callback = await _authenticated(request, crm, "twilio")
        await anyio.to_thread.run_sync(handle_status, crm, "twilio", callback.form())
        return Response(EMPTY_TWIML, media_type="application/xml")

    @post(INBOUND_PATH.format(provider="twilio"), **options)
    async def twilio_inbound(request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> Response[str]:
        callback = await _authenticated(request, crm, "twilio")
        await anyio.to_thread.run_sync(handle_inbound, crm, "twilio", callback.form())
        return Response(EMPTY_TWIML, media_type="application/xml")

    @post(STATUS_PATH.format(provider="gateway"), **options)
    async def gateway_status(request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> dict[str, Any]:
        callback = await _authenticated(request, crm, "gateway")
        recorded = await anyio.to_thread.run_sync(handle_status, crm, "gateway", _payload(callback))
        return {"recorded": recorded}

    @post(INBOUND_PATH.format(provider="gateway"), **options)
    async def gateway_inbound(request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> dict[str, Any]:
        callback = await _authenticated(request, crm, "gateway")
        received = await anyio.to_thread.run_sync(handle_inbound, crm, "gateway", _payload(callback))
        return {"received": [{"id": r.message_id, "action": r.action, "contact_id": r.contact_id} for r in received]}

    return [twilio_status, twilio_inbound, gateway_status, gateway_inbound]
