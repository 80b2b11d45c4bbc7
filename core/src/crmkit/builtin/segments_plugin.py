"""The built-in segments plugin: saved contact filters whose membership follows contact events.

Registers the segment tables (own Alembic branch ``crmkit_segments``), the ``segment.*``
events, ``crm.segments``, the event subscriber that keeps membership current, ``crmkit
segments`` and the memberships in a person's export and erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact, Event
from crmkit.plugins import hookimpl
from crmkit.segments.service import EVENT_TYPES, Segments, segments
from crmkit.segments.tables import BRANCH, MIGRATIONS, define_tables
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
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.cli.segments_commands import segments_group

    register(segments_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    crm.segments = Segments(crm)  # type: ignore[attr-defined]


@hookimpl
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    # A failure (two dispatchers inserting the same membership row at once) raises, and the
    # dispatcher retries: the retry reads the contact as stored and finds nothing left to do.
    segments(crm).handle(event)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    names = segments(crm).segments_of(contact.id)
    return {"segments": names} if names else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    segments(crm).forget(uow, contact.id)
