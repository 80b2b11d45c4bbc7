"""The channel layer's storage, settings, event types and personal-data handling, as a
built-in plugin: the ``messages``, ``message_templates`` and ``message_suppressions`` tables
(Alembic branch ``crmkit_channels``), ``[plugins.channels]``, the ``message.*`` events, and the
messages in a person's export and erasure. Channels themselves come from other plugins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.channels.erasure import erase_suppressions, erased_opt_outs
from crmkit.channels.protocol import OutboundMessage
from crmkit.channels.settings import ChannelSettings
from crmkit.channels.tables import BRANCH, define_tables
from crmkit.channels.vetoes import SOFT_SUPPRESSIONS
from crmkit.domain import Contact
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[1] / "channels" / "migrations"

EVENT_TYPES = {
    "message.queued": "a message passed the veto chain and waits to be sent",
    "message.vetoed": "a message was not sent: consent, suppression, frequency cap or a plugin's veto",
    "message.sent": "a channel accepted a message (data: provider_message_id)",
    "message.failed": "sending failed transiently; it will be retried with backoff",
    "message.dead": "sending failed permanently or ran out of retries (dead letter)",
    "message.receipt": "a provider reported on a sent message (delivered, bounced, opened …)",
}


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register("channels", ChannelSettings)


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
def crmkit_startup(crm: CRM) -> None:
    crm.settings_for("channels").quiet_hours()  # a malformed HH:MM fails the open, not the first send


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    messages = crm.messages.list(contact_id=contact.id, limit=100_000)
    return {"messages": to_jsonable(messages)} if messages else None


@hookimpl
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    # Message bodies and addresses are personal data: delete them. Suppression entries stay
    # (an opt-out must outlive the erasure) with the address hashed (see channels/erasure.py).
    conn = uow.connection
    assert conn is not None
    conn.execute(sa.delete(uow.table("messages")).where(uow.table("messages").c.contact_id == contact.id))
    erase_suppressions(conn, uow.table("message_suppressions"), contact)


@hookimpl
def crmkit_veto_send(message: OutboundMessage, contact: Contact, crm: CRM) -> str | None:
    """An erased person's opt-outs, kept as digests of their addresses, still apply to the same
    address until the (new) recipient consents again."""
    transactional = message.purpose in crm.settings_for("channels").transactional_purposes
    with crm.read() as uow:
        assert uow.connection is not None
        reasons = erased_opt_outs(uow.connection, uow.table("message_suppressions"), uow.table("consents"), channel=message.channel,
                                  address=message.to, contact_id=contact.id, ignore=SOFT_SUPPRESSIONS if transactional else ())
    return f"suppressed before an erasure: {', '.join(reasons)}" if reasons else None
