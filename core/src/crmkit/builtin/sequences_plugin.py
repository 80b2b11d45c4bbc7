"""The built-in sequences plugin: nurture sequences sent through the channel layer.

Registers the sequence tables (own Alembic branch ``crmkit_sequences``), the ``sequence.*``
events, ``crm.sequences``, the event subscriber that exits enrollments on replies, conversions
and unsubscribes, the worker's periodic ``tick``, the ``enroll_in_sequence`` automation action,
``crmkit sequences`` and the enrollments in a person's export and erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact, Event
from crmkit.plugins import hookimpl
from crmkit.sequences.service import EVENT_TYPES, Sequences, sequences
from crmkit.sequences.tables import BRANCH, MIGRATIONS, define_tables
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    for table in define_tables(metadata):
        register(table)


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    register(BRANCH, str(MIGRATIONS))


@hookimpl
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    for name, description in EVENT_TYPES.items():
        register(name, description)


@hookimpl
def crmkit_register_automation_actions(register: Callable[[Any], None]) -> None:
    from crmkit.sequences.automation import ENROLL_IN_SEQUENCE

    register(ENROLL_IN_SEQUENCE)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.cli.sequences_commands import sequences_group

    register(sequences_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    crm.sequences = Sequences(crm)  # type: ignore[attr-defined]


@hookimpl
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    sequences(crm).handle(event)


@hookimpl
def crmkit_worker_tick(crm: CRM, now: datetime) -> None:
    sequences(crm).tick(now)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    found = sequences(crm).enrollments(contact_id=contact.id, limit=None)
    return {"sequence_enrollments": to_jsonable(found)} if found else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    sequences(crm).forget(uow, contact.id)
