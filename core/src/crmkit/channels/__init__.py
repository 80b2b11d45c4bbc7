"""Outbound and inbound messaging: the channel protocol, the channel registry, templates, the
veto chain and reliable send jobs. Providers (e-mail, SMS …) are plugins implementing
:class:`~crmkit.channels.protocol.Channel` and registering it through
``crmkit_register_channels``; ``crm.messages`` (:class:`~crmkit.channels.dispatch.MessageService`)
is how the rest of crmkit sends."""

from crmkit.channels.protocol import (
    Capabilities,
    Channel,
    DeliveryReceipt,
    InboundMessage,
    LocalSink,
    LocalSinkProvider,
    OutboundMessage,
    SendResult,
    SendStatus,
)

__all__ = [
    "Capabilities", "Channel", "DeliveryReceipt", "InboundMessage", "LocalSink", "LocalSinkProvider", "OutboundMessage", "SendResult",
    "SendStatus",
]
