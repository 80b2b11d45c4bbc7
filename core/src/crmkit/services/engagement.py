"""Activities (the append-only interaction log), tasks, the consent ledger and custom fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from crmkit import domain
from crmkit.domain import fields as f
from crmkit.domain.custom_fields import CustomFieldDefinition, FieldType
from crmkit.domain.values import ConsentStatus, utcnow
from crmkit.errors import ValidationFailed
from crmkit.serialize import to_jsonable
from crmkit.services.base import EntityService, Service, ValidationContext
from crmkit.services.records import check_references
from crmkit.storage.uow import UnitOfWork


class ActivityService(EntityService[domain.Activity]):
    repo_name, kind, entity_cls = "activities", "activity", domain.Activity

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"contact_id": "contacts", "deal_id": "deals", "organization_id": "organizations"})

    def log(self, data: Mapping[str, Any], *, actor: str | None = None) -> domain.Activity:
        """Append an activity. With an ``external_id`` the call is idempotent per channel: a
        second call with the same channel and external id returns the first activity."""
        with self.uow(actor) as uow:
            return self.log_in(uow, data)

    def log_in(self, uow: UnitOfWork, data: Mapping[str, Any]) -> domain.Activity:
        clean = self.parse(uow, data)
        same = uow.activities.where(channel=clean.get("channel"), external_id=clean.get("external_id"))
        if clean.get("external_id"):
            existing = uow.activities.first(same)
            if existing is not None:
                return existing
        activity = domain.Activity(created_by=uow.actor, **{k: v for k, v in clean.items() if v is not None})
        if clean.get("external_id") and clean.get("channel"):
            # Providers redeliver webhooks, sometimes at the same moment: when a concurrent
            # delivery commits first, the unique (channel, external_id) refuses this insert and
            # the savepoint keeps the transaction usable to answer with the winner's activity.
            try:
                with uow.connection.begin_nested():  # type: ignore[union-attr]
                    uow.activities.add(activity)
            except sa.exc.IntegrityError:
                # A shared lock: the other losers hold one on the same row, an exclusive
                # request would deadlock with them on MariaDB.
                winner = uow.activities.first(same, lock="share")
                if winner is None:
                    raise  # another constraint (e.g. the contact was deleted meanwhile)
                return winner
        else:
            uow.activities.add(activity)
        uow.emit("activity.logged", activity.id, to_jsonable(activity))
        return activity

    def create_in(self, uow: UnitOfWork, data: Mapping[str, Any]) -> domain.Activity:
        return self.log_in(uow, data)

    def update(self, *args: Any, **kwargs: Any) -> domain.Activity:
        raise ValidationFailed.single("id", "append_only", "activities are append-only; log a new activity instead")

    def for_contact(self, contact_id: str, limit: int = 100) -> list[domain.Activity]:
        with self.crm.read() as uow:
            return uow.activities.list(uow.activities.where(contact_id=contact_id), order_by=("occurred_at", "id"), limit=limit, descending=True)


class TaskService(EntityService[domain.Task]):
    repo_name, kind, entity_cls = "tasks", "task", domain.Task

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        check_references(context, clean, {"assignee_id": "users", "contact_id": "contacts", "deal_id": "deals"})

    def complete(self, task_id: str, *, actor: str | None = None) -> domain.Task:
        with self.uow(actor) as uow:
            task = uow.tasks.get(task_id)
            if task.done_at is not None:
                raise ValidationFailed.single("done_at", "already_done", f"task {task_id} was completed at {task.done_at.isoformat()}")
            task.done_at = utcnow()
            uow.tasks.update(task)
            uow.emit("task.completed", task.id, to_jsonable(task))
        return task

    def open_tasks(self, assignee_id: str | None = None) -> list[domain.Task]:
        with self.crm.read() as uow:
            conditions = [uow.tasks.table.c.done_at.is_(None)]
            if assignee_id:
                conditions.append(uow.tasks.table.c.assignee_id == assignee_id)
            return uow.tasks.list(conditions, order_by=("created_at", "id"), limit=None)


class ConsentService(Service):
    """The consent ledger: entries are appended, the latest per contact × channel × purpose is
    the current state."""

    def record(self, data: Mapping[str, Any], *, actor: str | None = None) -> domain.Consent:
        with self.uow(actor) as uow:
            return self.record_in(uow, data)

    def record_in(self, uow: UnitOfWork, data: Mapping[str, Any]) -> domain.Consent:
        clean = f.parse_input(data, domain.Consent.field_specs(), read_only=("id",))
        check_references(ValidationContext(uow=uow, specs=[], custom=[]), clean, {"contact_id": "contacts"})
        if clean.get("recorded_at") is None:
            clean.pop("recorded_at", None)
        consent = domain.Consent(**{k: v for k, v in clean.items() if v is not None})
        uow.consents.add(consent)
        uow.emit("consent.recorded", consent.contact_id, to_jsonable(consent))
        return consent

    def history(self, contact_id: str) -> list[domain.Consent]:
        with self.crm.read() as uow:
            return uow.consents.list(uow.consents.where(contact_id=contact_id), order_by=("recorded_at", "id"), limit=None)

    def current(self, contact_id: str, channel: str, purpose: str) -> ConsentStatus | None:
        """The contact's current state for ``channel`` × ``purpose``; None when never asked."""
        with self.crm.read() as uow:
            t = uow.consents.table
            row = uow.connection.execute(  # type: ignore[union-attr]
                sa.select(t.c.status).where(t.c.contact_id == contact_id, t.c.channel == channel, t.c.purpose == purpose)
                .order_by(t.c.recorded_at.desc(), t.c.id.desc()).limit(1)
            ).first()
        return None if row is None else ConsentStatus(row.status)


class CustomFieldService(Service):
    def define(self, entity: str, name: str, type: str | FieldType, *, label: str | None = None,
               required: bool = False, choices: list[str] | None = None, actor: str | None = None) -> CustomFieldDefinition:
        field_type = f.enum_of(FieldType)(type, "type")
        definition = CustomFieldDefinition(entity=entity, name=name, type=field_type, label=label, required=required, choices=list(choices or []))
        with self.uow(actor) as uow:
            if uow.custom_fields.first(uow.custom_fields.where(entity=entity, name=name)) is not None:
                raise ValidationFailed.single("name", "duplicate", f"{entity} already has a custom field {name!r}")
            uow.custom_fields.add(definition)
            uow.emit("custom_field.defined", definition.id, to_jsonable(definition))
        return definition

    def list(self, entity: str | None = None) -> list[CustomFieldDefinition]:
        with self.crm.read() as uow:
            conditions = uow.custom_fields.where(entity=entity) if entity else []
            return uow.custom_fields.list(conditions, order_by=("entity", "name"), limit=None)
