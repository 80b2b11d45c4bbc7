"""``[plugins.automation]`` in ``crmkit.toml``."""

from __future__ import annotations

import attrs

SECTION = "automation"


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value}")


@attrs.define(kw_only=True)
class AutomationSettings:
    """:ivar enabled: false keeps the rules but runs none (events pass by, ``tick`` does nothing).
    :ivar webhook_timeout_seconds: how long ``call_webhook`` waits for the receiver.
    :ivar max_attempts: a run that keeps failing transiently is given up (``failed``) after this
        many attempts.
    :ivar max_chain_depth: how many rules may fire in a chain, each on an event the previous
        one caused — a guard against two rules triggering each other forever. A rule never
        fires on an event it caused itself.
    :ivar tick_limit: the most occurrences one ``tick`` handles per scheduled rule; the rest
        are found by the next tick.
    """

    enabled: bool = True
    webhook_timeout_seconds: float = attrs.field(default=10.0, validator=_positive)
    max_attempts: int = attrs.field(default=10, validator=_positive)
    max_chain_depth: int = attrs.field(default=3, validator=_positive)
    tick_limit: int = attrs.field(default=1000, validator=_positive)
