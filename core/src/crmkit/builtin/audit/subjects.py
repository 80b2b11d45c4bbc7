"""Which person an event concerns, so personal-data rights reach every copy of its data.

Shared by the audit log and the webhook deliveries: both keep copies of event data.
"""

from __future__ import annotations

from typing import Any

from crmkit.domain import Event


def contact_of(event: Event) -> str | None:
    """The contact an event is about: the subject of a ``contact.*`` event, otherwise the
    contact its data names (``contact_id`` of a deal, activity, task or consent)."""
    if event.type.startswith("contact."):
        return event.subject_id
    named: Any = event.data.get("contact_id") if isinstance(event.data, dict) else None
    return named if isinstance(named, str) else None
