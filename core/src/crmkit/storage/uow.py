"""The unit of work: one transaction, its repositories, and the events it produces.

Services open a unit of work, change entities through its repositories and ``emit`` events.
On commit the events are inserted into the outbox *in the same transaction*; after the
transaction commits, the ``after_commit`` callback (the CRM's dispatcher) is told which events
are new. A rollback discards both the changes and the events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit import domain
from crmkit.storage.sql.repository import Repository, insert_rows

if TYPE_CHECKING:
    from crmkit.storage.sql.backend import SQLBackend

log = logging.getLogger(__name__)

_REPOSITORIES: dict[str, tuple[str, type, str]] = {
    "contacts": ("contacts", domain.Contact, "contact"),
    "organizations": ("organizations", domain.Organization, "organization"),
    "pipelines": ("pipelines", domain.Pipeline, "pipeline"),
    "stages": ("stages", domain.Stage, "stage"),
    "deals": ("deals", domain.Deal, "deal"),
    "stage_changes": ("stage_changes", domain.StageChange, "stage change"),
    "activities": ("activities", domain.Activity, "activity"),
    "tasks": ("tasks", domain.Task, "task"),
    "campaigns": ("campaigns", domain.Campaign, "campaign"),
    "consents": ("consents", domain.Consent, "consent"),
    "users": ("users", domain.User, "user"),
    "teams": ("teams", domain.Team, "team"),
    "custom_fields": ("custom_field_definitions", domain.CustomFieldDefinition, "custom field"),
}


class UnitOfWork:
    """Use as a context manager; commits on a clean exit, rolls back on an exception."""

    contacts: Repository[domain.Contact]
    organizations: Repository[domain.Organization]
    pipelines: Repository[domain.Pipeline]
    stages: Repository[domain.Stage]
    deals: Repository[domain.Deal]
    stage_changes: Repository[domain.StageChange]
    activities: Repository[domain.Activity]
    tasks: Repository[domain.Task]
    campaigns: Repository[domain.Campaign]
    consents: Repository[domain.Consent]
    users: Repository[domain.User]
    teams: Repository[domain.Team]
    custom_fields: Repository[domain.CustomFieldDefinition]

    def __init__(
        self,
        backend: SQLBackend,
        after_commit: Callable[[list[domain.Event]], None] | None = None,
        actor: str | None = None,
        *,
        readonly: bool = False,
        before_commit: Callable[[UnitOfWork, list[domain.Event]], None] | None = None,
    ):
        self.backend = backend
        self.readonly = readonly
        self.tables = backend.metadata.tables
        self.after_commit = after_commit
        self.before_commit = before_commit  # the CRM's crmkit_before_commit hook (the audit log)
        self.actor = actor
        self.events: list[domain.Event] = []
        self.connection: sa.Connection | None = None
        self._transaction: sa.RootTransaction | None = None
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.connection = self.backend.engine.connect()
        if not self.readonly:
            self.connection = self.connection.execution_options(crmkit_write=True)
        self._transaction = self.connection.begin()
        for attr, (table, cls, kind) in _REPOSITORIES.items():
            setattr(self, attr, Repository(self.connection, self.tables[table], cls, kind))
        return self

    def table(self, name: str) -> sa.Table:
        """A table by name, plugin tables included."""
        return self.tables[name]

    def emit(self, event_type: str, subject_id: str | None = None, data: dict[str, Any] | None = None) -> domain.Event:
        """Record an event to be written to the outbox with this transaction."""
        if self.readonly:
            raise RuntimeError("a read-only unit of work cannot emit events")
        self.backend.check_event_type(event_type)
        event = domain.Event(type=event_type, subject_id=subject_id, data=data or {}, actor=self.actor)
        self.events.append(event)
        return event

    def commit(self) -> None:
        assert self.connection is not None and self._transaction is not None, "unit of work not entered"
        if self.before_commit is not None:
            self.before_commit(self, list(self.events))
        if self.events:
            insert_rows(self.connection, self.tables["outbox_events"], [
                {"id": e.id, "type": e.type, "subject_id": e.subject_id, "data": e.data, "actor": e.actor, "occurred_at": e.occurred_at}
                for e in self.events
            ])
        self._transaction.commit()
        self._committed = True

    def rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()
        self.events.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None and not self._committed and not self.readonly:
                self.commit()
            elif not self._committed:
                self.rollback()
        finally:
            assert self.connection is not None
            self.connection.close()
        if self._committed and self.events and self.after_commit is not None:
            try:
                self.after_commit(list(self.events))
            except Exception:
                # The write and its events are committed and stay in the outbox for the next
                # ``drain``: raising here would tell the caller a successful write failed.
                log.exception("dispatching %d event(s) after commit failed; they stay in the outbox", len(self.events))
