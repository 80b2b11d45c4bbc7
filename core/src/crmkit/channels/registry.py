"""The channels plugins offer, collected once per CRM through ``crmkit_register_channels``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from crmkit.channels.protocol import Capabilities, Channel
from crmkit.errors import PluginError
from crmkit.plugins import Registry

if TYPE_CHECKING:
    from crmkit.plugins import Plugins

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_METHODS = ("address_for", "send", "parse_inbound", "parse_callback")


def _name_of(channel: object) -> str:
    return getattr(channel, "name", None)  # type: ignore[return-value]  # Registry reports a missing name


def collect_channels(plugins: Plugins) -> Registry[Channel]:
    """Every registered channel, checked to look like a :class:`Channel` so a provider missing a
    method fails when the CRM opens, naming its plugin, rather than on the first send."""
    channels: Registry[Channel] = plugins.collect("crmkit_register_channels", Registry("channel", key=_name_of))
    for name in channels:
        channel, owner = channels[name], channels.owners[name]
        if not _NAME.match(name):
            raise PluginError(owner, f"channel name {name!r} must be a lower-case identifier such as 'email' or 'sms'")
        missing = [m for m in _METHODS if not callable(getattr(channel, m, None))]
        if missing:
            raise PluginError(owner, f"channel {name!r} lacks {', '.join(missing)} (see crmkit.channels.Channel)")
        if not isinstance(getattr(channel, "capabilities", None), Capabilities):
            raise PluginError(owner, f"channel {name!r}: capabilities must be a crmkit.channels.Capabilities")
    return channels
