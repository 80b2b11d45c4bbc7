"""The ``sms`` channel: what ``crm.messages`` calls to send a text and to read a provider's
callbacks. One instance per CRM, registered through ``crmkit_register_channels`` and given its
settings (and its provider) when the CRM starts."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from crmkit.channels import Capabilities, DeliveryReceipt, InboundMessage, OutboundMessage, SendResult
from crmkit.errors import ConfigError, CRMError

from crmkit_sms import settings as config
from crmkit_sms.phone import to_e164
from crmkit_sms.providers import Outcome, Provider
from crmkit_sms.providers.gateway import GatewayProvider
from crmkit_sms.providers.twilio import TwilioProvider

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact

NAME = "sms"
STATUS_PATH = "/channels/sms/{provider}/status"
INBOUND_PATH = "/channels/sms/{provider}/inbound"
#: Twilio refuses bodies over 1,600 characters (ten-odd segments); gateways rarely allow more.
MAX_LENGTH = 1600


class SmsChannel:
    name = NAME
    capabilities = Capabilities(max_length=MAX_LENGTH, subject=False, templates=True, delivery_receipts=True)

    def __init__(self) -> None:
        self.crm: CRM | None = None
        self.settings = config.SmsSettings()
        self.provider: Provider | None = None

    @classmethod
    def for_crm(cls, crm: CRM) -> SmsChannel:
        channel = crm.messages.channels.get(NAME)
        if not isinstance(channel, SmsChannel):
            raise CRMError("the sms channel is not crmkit-sms's (is the plugin disabled, or another registered 'sms'?)")
        return channel

    def configure(self, crm: CRM, settings: config.SmsSettings) -> None:
        config.check(settings)
        self.crm, self.settings = crm, settings
        self.provider = self._provider(settings)

    def _provider(self, settings: config.SmsSettings) -> Provider | None:
        if not settings.provider:
            return None
        client = httpx.Client(timeout=settings.timeout, follow_redirects=False)
        weakref.finalize(self, client.close)  # the CRM has no shutdown hook: close with the channel
        if settings.provider == "twilio":
            callback = self.public_url(STATUS_PATH.format(provider="twilio")) if settings.twilio.status_callback else None
            return TwilioProvider(settings.twilio, client=client, status_callback_url=callback, region=self.region)
        return GatewayProvider(settings.gateway, client=client, region=self.region)

    @property
    def region(self) -> str | None:
        own = self.settings.default_region
        return own or (self.crm.config.default_region if self.crm is not None else None)

    def public_url(self, path: str) -> str | None:
        base = self.settings.public_url.rstrip("/")
        return f"{base}{path}" if base else None

    def provider_named(self, name: str) -> Provider:
        """The configured provider if it is ``name`` (a callback for another provider is refused)."""
        if self.provider is None or self.provider.name != name:
            raise ConfigError(f"the SMS provider is {self.settings.provider or 'not configured'!r}, not {name!r} ([plugins.sms] provider)")
        return self.provider

    # --- the Channel protocol -----------------------------------------------------------

    def address_for(self, contact: Contact) -> str | None:
        return to_e164(contact.phone, self.region)

    def send(self, message: OutboundMessage) -> SendResult:
        outcome = self.deliver(message.to, message.body, message_id=message.id, idempotency_key=message.idempotency_key)
        if outcome.suppress and self.crm is not None:
            # The provider will refuse this number from now on; so should the veto chain.
            self.crm.messages.suppress(NAME, message.to, outcome.suppress, contact_id=message.contact_id,
                                       detail={"error": outcome.result.error, "message_id": message.id})
        return outcome.result

    def deliver(self, to: str, body: str, *, message_id: str = "", idempotency_key: str = "") -> Outcome:
        """Hand a text to the provider, bypassing the message queue (keyword replies)."""
        if self.provider is None:
            return Outcome(SendResult.permanent("no SMS provider is configured: set provider in [plugins.sms]"))
        return self.provider.send(to, body, message_id=message_id, idempotency_key=idempotency_key)

    def parse_inbound(self, payload: Mapping[str, Any]) -> list[InboundMessage]:
        return self._configured().parse_inbound(payload)

    def parse_callback(self, payload: Mapping[str, Any]) -> list[DeliveryReceipt]:
        return self._configured().parse_callback(payload)

    def _configured(self) -> Provider:
        if self.provider is None:
            raise ConfigError("no SMS provider is configured: set provider in [plugins.sms]")
        return self.provider
