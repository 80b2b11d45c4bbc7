"""The webhooks plugin's hook implementations (registered as ``crmkit.builtin.webhooks``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.builtin.webhooks.delivery import WebhookSettings
from crmkit.builtin.webhooks.service import EVENT_TYPES, SECTION, Webhooks, redact_deliveries
from crmkit.builtin.webhooks.tables import DELIVERIES, webhook_tables
from crmkit.domain import Contact, Event
from crmkit.plugins import hookimpl
from crmkit.privacy import addresses_of, erase_mentions_in
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

log = logging.getLogger(__name__)
BRANCH = "crmkit_webhooks"
VERSIONS = Path(__file__).with_name("migrations") / "versions"
#: At most this many deliveries are attempted right after an event is dispatched; the rest
#: wait for the next dispatch or ``crmkit webhooks deliver``.
AFTER_DISPATCH_LIMIT = 50


def service(crm: CRM) -> Webhooks:
    """``crm.webhooks`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "webhooks", None)
    return existing if isinstance(existing, Webhooks) else Webhooks(crm)


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register(SECTION, WebhookSettings)


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    for table in webhook_tables(metadata):
        register(table)


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    register(BRANCH, str(VERSIONS))


@hookimpl
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    for name, description in EVENT_TYPES.items():
        register(name, description)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.builtin.webhooks.cli import webhooks_group

    register(webhooks_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    crm.webhooks = Webhooks(crm)  # type: ignore[attr-defined]


@hookimpl
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    # Only the queueing can fail this subscriber (and be retried by the dispatcher); HTTP
    # happens in the runner, whose failures are the delivery log's business.
    webhooks = service(crm)
    if webhooks.enqueue(event) and webhooks.settings.deliver_after_dispatch:
        try:
            webhooks.deliver(limit=AFTER_DISPATCH_LIMIT)
        except Exception:
            log.exception("delivering webhooks after event %s failed; they stay queued for `crmkit webhooks deliver`", event.id)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    sent = service(crm).about(contact.id)
    return {"webhook_deliveries": to_jsonable(sent)} if sent else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    assert uow.connection is not None
    deliveries = uow.table(DELIVERIES)
    redact_deliveries(uow.connection, deliveries, contact.id)
    # Payloads about other records may name the person's address (a message they were copied on).
    erase_mentions_in(uow.connection, deliveries, deliveries.c.payload, deliveries.c.id, addresses_of(contact))
