"""``[plugins.channels]`` in crmkit.toml."""

from __future__ import annotations

from datetime import time

import attrs

from crmkit.errors import ConfigError


@attrs.define
class ChannelSettings:
    #: Quiet hours, "HH:MM" in the recipient's time zone; non-transactional messages falling
    #: inside them wait until they end. Both empty: no quiet hours.
    quiet_hours_start: str = ""
    quiet_hours_end: str = ""
    #: The contact custom field holding an IANA time zone ("Europe/Paris"), and the zone used
    #: when a contact has none.
    timezone_field: str = "timezone"
    default_timezone: str = "UTC"
    #: At most this many non-transactional messages per contact and channel in the window
    #: (0: no cap).
    frequency_cap: int = 0
    frequency_window_hours: int = 24
    #: Transient failures are retried with backoff this many times in all before the message
    #: is dead-lettered.
    max_attempts: int = 8
    #: Purposes sent without a granted consent (receipts, password resets); a withdrawn entry
    #: for the exact channel and purpose still vetoes them.
    transactional_purposes: list[str] = attrs.field(factory=lambda: ["transactional"])

    def quiet_hours(self) -> tuple[time, time] | None:
        if not self.quiet_hours_start and not self.quiet_hours_end:
            return None
        try:
            return time.fromisoformat(self.quiet_hours_start), time.fromisoformat(self.quiet_hours_end)
        except ValueError:
            raise ConfigError(f"[plugins.channels] quiet_hours_start/quiet_hours_end must both be HH:MM, got {self.quiet_hours_start!r}, {self.quiet_hours_end!r}") from None
