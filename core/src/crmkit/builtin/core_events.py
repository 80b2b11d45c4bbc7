"""Registers the event types the core emits (see :data:`crmkit.domain.events.CORE_EVENT_TYPES`)."""

from __future__ import annotations

from collections.abc import Callable

from crmkit.domain.events import CORE_EVENT_TYPES
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    for name, description in CORE_EVENT_TYPES.items():
        register(name, description)
