"""Domain events: facts that happened, collected by services during a unit of work and
written to the outbox in the same transaction as the change they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crmkit.domain.values import new_id, utcnow


@attrs.define(kw_only=True, frozen=True)
class Event:
    """A domain event.

    :param type: dotted event type such as ``contact.created`` (registered through
        ``crmkit_register_event_types``).
    :param subject_id: id of the record the event is about.
    :param data: JSON-serialisable details (the record as written, the change …).
    :param id: stable id; receivers use it to deduplicate.
    """

    type: str
    subject_id: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)
    actor: str | None = None
    id: str = attrs.field(factory=new_id)
    occurred_at: datetime = attrs.field(factory=utcnow)


#: The event types the core itself emits, with what they mean.
CORE_EVENT_TYPES: dict[str, str] = {
    "contact.created": "a contact was created",
    "contact.updated": "a contact's fields changed",
    "contact.deleted": "a contact was deleted",
    "organization.created": "an organization was created",
    "organization.updated": "an organization's fields changed",
    "organization.deleted": "an organization was deleted",
    "pipeline.created": "a sales pipeline was created",
    "deal.created": "a deal was created",
    "deal.updated": "a deal's fields changed",
    "deal.stage_changed": "a deal moved to another stage",
    "deal.won": "a deal entered a won stage",
    "deal.lost": "a deal entered a lost stage",
    "deal.deleted": "a deal was deleted",
    "activity.logged": "an activity was appended to the interaction log",
    "task.created": "a task was created",
    "task.completed": "a task was marked done",
    "campaign.created": "a campaign was created",
    "consent.recorded": "a consent was granted or withdrawn",
    "custom_field.defined": "a custom field definition was added",
    "contact.erased": "a contact's personal data was erased",
    "contact.merged": "a duplicate contact was merged into another (the survivor); the duplicate is gone",
    "contact.merge_undone": "a merge was undone: both contacts and their links are back as before",
}
for _kind in ("campaign", "task", "user", "team", "activity"):
    CORE_EVENT_TYPES.setdefault(f"{_kind}.created", f"a {_kind} was created")
    CORE_EVENT_TYPES.setdefault(f"{_kind}.updated", f"a {_kind}'s fields changed")
    CORE_EVENT_TYPES.setdefault(f"{_kind}.deleted", f"a {_kind} was deleted")
