"""The audit plugin's hook implementations (registered as ``crmkit.builtin.audit``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.builtin.audit import log
from crmkit.builtin.audit.tables import audit_table
from crmkit.domain import Contact, Event
from crmkit.plugins import hookimpl
from crmkit.privacy import addresses_of, erase_mentions_in
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

BRANCH = "crmkit_audit"
VERSIONS = Path(__file__).with_name("migrations") / "versions"


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    register(audit_table(metadata))


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    register(BRANCH, str(VERSIONS))


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.builtin.audit.cli import audit_group

    register(audit_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    crm.audit = log.AuditLog(crm)  # type: ignore[attr-defined]


@hookimpl(trylast=True)
def crmkit_before_commit(uow: UnitOfWork, events: list[Event]) -> None:
    # Last, and from the unit of work's own list rather than the hook's copy, so events that
    # other plugins' before-commit implementations emitted are audited too.
    log.record(uow, uow.events)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    trail = log.AuditLog(crm).trail_of(contact.id)
    return {"audit_log": to_jsonable(trail)} if trail else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    log.erase(uow, contact.id)
    # Entries about other records may name the person's address (a message they were copied on).
    table = uow.table(log.TABLE)
    assert uow.connection is not None
    erase_mentions_in(uow.connection, table, table.c.changes, table.c.seq, addresses_of(contact))
