"""Personal-data rights: export everything held about a person, and erase it.

The core gathers its own tables through the built-in plugin
:mod:`crmkit.builtin.privacy_core`; every other plugin answers the same two hooks. The CLI
(``crmkit privacy``) and the HTTP API (``/contacts/{id}/personal-data``) both call this service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain import Contact
from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, PluginError
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork


@attrs.frozen(kw_only=True)
class Erasure:
    """What an erasure leaves behind: the record that it happened, holding no personal data.

    ``event_id`` is the ``contact.erased`` event written in the erasure's transaction (the
    audit log keeps it under that id); ``plugins`` are the plugins whose erasers ran.
    """

    contact_id: str
    event_id: str
    erased_at: datetime
    actor: str | None
    plugins: list[str]


class Privacy:
    def __init__(self, crm: CRM):
        self.crm = crm

    def export(self, contact_id: str) -> dict[str, Any]:
        """Everything every plugin holds about the contact, keyed by section."""
        contact = self.crm.contacts.get(contact_id)
        result: dict[str, Any] = {"contact_id": contact.id, "exported_at": utcnow().isoformat()}
        owners = dict.fromkeys(result, "the crmkit core")
        for plugin, sections in self.crm.plugins.call_each("crmkit_export_personal_data", contact=contact, crm=self.crm):
            for key, value in (sections or {}).items():
                if key in owners:
                    raise PluginError(plugin, f"export section {key!r} is already used by {owners[key]}")
                owners[key] = f"plugin {plugin!r}"
                result[key] = value
        return result

    def former(self, contact_id: str) -> list[Contact]:
        """The person's records that merges into ``contact_id`` replaced, as the merges kept
        them (see :func:`former_records`): for exports that look for earlier addresses."""
        with self.crm.read() as uow:
            return former_records(uow, contact_id)

    def erase(self, contact_id: str, *, actor: str | None = None, expected_version: int | None = None) -> Erasure:
        """Erase the person everywhere in one transaction: plugins first, then the core.

        The erasers are called for the contact and then again for each record of the person
        that a merge into it replaced, as the merge's snapshot kept it (read before any eraser
        runs): copies made under a merged-away id (audit entries, outbox events, webhook
        payloads) or holding an earlier address are the same person's data.

        :param expected_version: erase only if the contact is still at this version (the
            caller decided on what it saw); :class:`~crmkit.errors.ConflictError` otherwise.
        :return: the record of the erasure.
        """
        contact = self.crm.contacts.get(contact_id)
        with self.crm.uow(actor) as uow:
            if expected_version is not None and uow.contacts.get(contact.id).version != expected_version:
                raise ConflictError("contact", contact.id, expected_version)
            plugins: list[str] = []
            for person in [contact, *former_records(uow, contact.id)]:
                for plugin, _ in self.crm.plugins.call_each("crmkit_erase_personal_data", contact=person, crm=self.crm, uow=uow):
                    plugins.extend([plugin] if plugin not in plugins else [])
            # Subscribers holding copies elsewhere (a mailing tool, a warehouse) erase on this;
            # it carries nothing but the id.
            event = uow.emit("contact.erased", contact.id, {})
        return Erasure(contact_id=contact.id, event_id=event.id, erased_at=event.occurred_at, actor=actor, plugins=plugins)


def former_records(uow: UnitOfWork, contact_id: str) -> list[Contact]:
    """The person's records as they were before each merge into ``contact_id`` (directly or
    along a chain; merges since undone excepted, and snapshots already erased leave just the
    id): their other ids, and their earlier e-mail addresses, numbers and names, which copies
    kept elsewhere may still hold."""
    from crmkit.serialize import converter

    merges = uow.table("merges")
    conn = uow.connection
    assert conn is not None
    found: list[Contact] = []
    seen, frontier = {contact_id}, {contact_id}
    while frontier:
        rows = conn.execute(sa.select(merges.c.survivor_id, merges.c.duplicate_id, merges.c.snapshot)
                            .where(merges.c.survivor_id.in_(frontier), merges.c.undone_at.is_(None))
                            .order_by(merges.c.merged_at)).all()
        for row in rows:
            for role, ident in (("duplicate", row.duplicate_id), ("survivor", row.survivor_id)):
                kept = (row.snapshot or {}).get(role)
                try:
                    found.append(converter().structure({**kept, "id": ident}, Contact) if isinstance(kept, dict) else Contact(id=ident))
                except Exception:  # noqa: BLE001 - a snapshot of an older shape: its id still matters
                    found.append(Contact(id=ident))
        frontier = {row.duplicate_id for row in rows} - seen
        seen |= frontier
    return found


# --- helpers for plugins that log a channel's messages as activities ---------------------------


def activities_mentioning(conn: sa.Connection, activities: sa.Table, *, channel: str, values: list[str], contact_id: str) -> list[Any]:
    """Activities of ``channel`` that are not the contact's own but hold one of ``values`` (the
    person's address) in their subject or payload: a message from their number logged before
    they were a contact, a message to several recipients logged on the sender.

    The core's eraser clears the contact's own activities; a channel plugin finds these with
    this (it reads every activity of the channel, once per export or erasure).
    """
    wanted = [value for value in values if value]
    if not wanted:
        return []
    a = activities.c
    mentions = sa.or_(*(sa.or_(sa.cast(a.payload, sa.Text).contains(v, autoescape=True), a.subject.contains(v, autoescape=True))
                        for v in wanted))
    others = sa.or_(a.contact_id.is_(None), a.contact_id != contact_id)
    return list(conn.execute(sa.select(a.id, a.contact_id, a.subject, a.payload).where(a.channel == channel, others, mentions)).all())


class ChannelMentions:
    """A channel plugin's personal-data hooks over :func:`activities_mentioning`: ``export``
    gives the section ``<channel>_mentions``, ``erase`` clears or strips those activities.

    :param address_of: the person's address on the channel (``contact.email``, ``contact.phone``).
    """

    def __init__(self, channel: str, address_of: Callable[[Contact], str | None]):
        self.channel, self.address_of = channel, address_of

    def export(self, contact: Contact, crm: CRM) -> dict[str, Any] | None:
        # Addresses the person had before merges too: the erasure reaches those through each
        # former record.
        values = sorted({value for record in (contact, *crm.privacy.former(contact.id)) if (value := self.address_of(record))})
        if not values:
            return None
        with crm.read() as uow:
            assert uow.connection is not None
            rows = activities_mentioning(uow.connection, uow.table("activities"), channel=self.channel, values=values, contact_id=contact.id)
        return {f"{self.channel}_mentions": [to_jsonable(dict(row._mapping)) for row in rows]} if rows else None

    def erase(self, contact: Contact, uow: UnitOfWork) -> None:
        assert uow.connection is not None
        values = [value] if (value := self.address_of(contact)) else []
        activities = uow.table("activities")
        rows = activities_mentioning(uow.connection, activities, channel=self.channel, values=values, contact_id=contact.id)
        erase_mentions(uow.connection, activities, rows, values)


def erase_mentions(conn: sa.Connection, activities: sa.Table, rows: list[Any], values: list[str]) -> None:
    """Erase ``values`` from the activities :func:`activities_mentioning` found: an activity on
    no contact is the person's message and is cleared whole; one on another contact keeps
    everything but the person's address."""
    for row in rows:
        if row.contact_id is None:
            conn.execute(sa.update(activities).where(activities.c.id == row.id).values(payload={}, subject=None))
        else:
            conn.execute(sa.update(activities).where(activities.c.id == row.id).values(
                payload=_without(row.payload, values), subject=_without(row.subject, values)))


ERASED = "[erased]"


def addresses_of(contact: Contact) -> list[str]:
    """The person's e-mail address and phone number: what copies of other people's records
    (a message they were copied on, a text from their number on no contact) may hold."""
    return [value for value in (contact.email, contact.phone) if value]


def erase_mentions_in(conn: sa.Connection, table: sa.Table, column: sa.Column[Any], key: sa.Column[Any], values: list[str]) -> int:
    """Replace ``values`` (case-insensitively) by ``[erased]`` inside the JSON ``column`` of every
    row of ``table`` whose text holds one (rows are told apart by ``key``); returns how many
    rows changed. For logs of copies — the outbox, the audit log, webhook payloads — whose
    rows about the person are already erased, and that may still name them in rows about
    someone else. Reads the whole table, once per erasure."""
    wanted = [value for value in values if value]
    if not wanted:
        return 0
    text = sa.func.lower(sa.cast(column, sa.Text))
    rows = conn.execute(sa.select(key, column).where(sa.or_(*(text.contains(value.lower(), autoescape=True) for value in wanted)))).all()
    for ident, value in rows:
        conn.execute(sa.update(table).where(key == ident).values({column.name: _without(value, wanted)}))
    return len(rows)


def _without(value: Any, needles: list[str]) -> Any:
    """``value`` with every occurrence of ``needles`` in its strings replaced by ``[erased]``."""
    if isinstance(value, str):
        for needle in needles:
            value = re.sub(re.escape(needle), ERASED, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, dict):
        return {key: _without(item, needles) for key, item in value.items()}
    if isinstance(value, list):
        return [_without(item, needles) for item in value]
    return value
