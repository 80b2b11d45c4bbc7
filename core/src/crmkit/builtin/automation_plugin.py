"""The built-in automation plugin: rules run from events and from ``crm.automations.tick``.

Registers the automation tables (own Alembic branch), ``[plugins.automation]``, the
``automation_rule.*`` events, the built-in trigger and action types (through the same hooks a
third party uses), ``crm.automations``, the event subscriber, ``crmkit automations`` and the
runs in a person's export and erasure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.automation.actions import BUILTIN_ACTIONS
from crmkit.automation.registry import ActionType, TriggerType
from crmkit.automation.service import EVENT_TYPES, Automations, automations
from crmkit.automation.settings import SECTION, AutomationSettings
from crmkit.automation.tables import BRANCH, VERSIONS, define_tables
from crmkit.automation.triggers import BUILTIN_TRIGGERS
from crmkit.domain import Contact, Event
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register(SECTION, AutomationSettings)


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    for table in define_tables(metadata):
        register(table)


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    register(BRANCH, str(VERSIONS))


@hookimpl
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    for name, description in EVENT_TYPES.items():
        register(name, description)


@hookimpl
def crmkit_register_automation_triggers(register: Callable[[TriggerType], None]) -> None:
    for trigger in BUILTIN_TRIGGERS:
        register(trigger)


@hookimpl
def crmkit_register_automation_actions(register: Callable[[ActionType], None]) -> None:
    for action in BUILTIN_ACTIONS:
        register(action)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.cli.automation_commands import automations_group

    register(automations_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    crm.automations = Automations(crm)  # type: ignore[attr-defined]


@hookimpl
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    # Runs that failed transiently make this raise, so the dispatcher retries the event; runs
    # already done are not repeated (one run per rule and event).
    automations(crm).handle(event)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    runs = automations(crm).runs.list(contact_id=contact.id, limit=None)
    return {"automation_runs": to_jsonable(runs)} if runs else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    assert uow.connection is not None
    automations(crm).runs.delete_for_contact(uow.connection, contact.id)
