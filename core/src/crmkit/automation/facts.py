"""What a rule sees about an event: the event itself and the records it concerns.

Records are loaded when a condition, trigger or template first asks for them, as plain JSON
data (the shape of event payloads), so conditions and templates never touch entity objects.
Which record an event concerns follows the event's type: the subject of ``contact.*`` and
``deal.*`` events, the ``contact_id`` / ``deal_id`` an activity or task names, a deal's contact,
the stage a deal event moved it to and that stage's pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from crmkit import domain
from crmkit.automation.conditions import Root, Schema, entity_root
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM

EVENT_ROOT = Root({"id": None, "type": None, "subject_id": None, "actor": None, "occurred_at": None, "data": None}, frozenset({"data"}))

#: Every root a rule may refer to, with the entity it stands for.
ROOT_ENTITIES: dict[str, type] = {
    "contact": domain.Contact,
    "deal": domain.Deal,
    "stage": domain.Stage,
    "pipeline": domain.Pipeline,
    "activity": domain.Activity,
    "task": domain.Task,
}
ALL_ROOTS = frozenset(ROOT_ENTITIES) | {"event"}
_OPEN = {"contact": ("custom",), "deal": ("custom",), "activity": ("payload",)}


def schema(roots: Iterable[str]) -> Schema:
    """The fields conditions may name when these roots are available (``event`` always is)."""
    found = {"event": EVENT_ROOT}
    for name in roots:
        if name in ROOT_ENTITIES:
            found[name] = entity_root(ROOT_ENTITIES[name], open=_OPEN.get(name, ()))
    return Schema(found)


def sample(roots: Iterable[str]) -> dict[str, Any]:
    """A value for every field of these roots, for checking templates when a rule is saved."""
    from collections import defaultdict

    def fill(root: Root) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, nested in root.fields.items():
            if name in root.open:
                values[name] = defaultdict(lambda: "sample")
            else:
                values[name] = {sub: "sample" for sub in nested} if nested is not None else "sample"
        return values

    result = {name: fill(root) for name, root in schema(roots).roots.items()}
    return {**result, "rule": {"id": "sample", "name": "sample"}, "now": "2000-01-01T00:00:00+00:00"}


def event_dict(event: domain.Event) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "subject_id": event.subject_id, "actor": event.actor,
            "occurred_at": to_jsonable(event.occurred_at), "data": event.data}


class Facts:
    def __init__(self, crm: CRM, event: domain.Event):
        self.crm = crm
        self.event = event
        self._data = event.data if isinstance(event.data, dict) else {}

    def _family(self) -> str:
        return self.event.type.split(".", 1)[0]

    @cached_property
    def activity(self) -> dict[str, Any] | None:
        return self._data if self.event.type == "activity.logged" else None

    @cached_property
    def task(self) -> dict[str, Any] | None:
        return self._data if self._family() == "task" else None

    @cached_property
    def deal(self) -> dict[str, Any] | None:
        ident = self.event.subject_id if self._family() == "deal" else self._data.get("deal_id")
        found = self.crm.deals.find(ident) if isinstance(ident, str) else None
        return None if found is None else to_jsonable(found)

    @cached_property
    def contact(self) -> dict[str, Any] | None:
        if self._family() == "contact":
            ident = self.event.subject_id
        else:
            ident = self._data.get("contact_id") or (self.deal or {}).get("contact_id")
        found = self.crm.contacts.find(ident) if isinstance(ident, str) else None
        return None if found is None else to_jsonable(found)

    @cached_property
    def stage(self) -> dict[str, Any] | None:
        # The stage the event put the deal in (it may have moved on since), else its current one.
        ident = (self._data.get("to_stage_id") or self._data.get("stage_id")) if self._family() == "deal" else None
        ident = ident or (self.deal or {}).get("stage_id")
        if not isinstance(ident, str):
            return None
        with self.crm.read() as uow:
            found = uow.stages.find(ident)
        return None if found is None else to_jsonable(found)

    @cached_property
    def pipeline(self) -> dict[str, Any] | None:
        ident = (self.stage or {}).get("pipeline_id")
        if not isinstance(ident, str):
            return None
        with self.crm.read() as uow:
            found = uow.pipelines.find(ident)
        if found is None:
            return None
        data = to_jsonable(found)
        data.pop("stages", None)
        return data  # type: ignore[no-any-return]

    def get(self, root: str) -> dict[str, Any] | None:
        if root == "event":
            return event_dict(self.event)
        if root not in ROOT_ENTITIES:
            raise KeyError(root)
        return getattr(self, root)  # type: ignore[no-any-return]

    def as_dict(self, roots: Iterable[str]) -> dict[str, Any]:
        """The facts for conditions and templates (records not available are None)."""
        return {root: self.get(root) for root in {"event", *roots} if root in ALL_ROOTS}
