"""Personal-data rights: export everything held about a person, and erase it.

The core gathers its own tables through the built-in plugin
:mod:`crmkit.builtin.privacy_core`; every other plugin answers the same two hooks. The CLI
(``crmkit privacy``) and the HTTP API (``/contacts/{id}/personal-data``) both call this service.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain import Contact
from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, PluginError

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

    def erase(self, contact_id: str, *, actor: str | None = None, expected_version: int | None = None) -> Erasure:
        """Erase the person everywhere in one transaction: plugins first, then the core.

        The erasers are called for the contact and then once for every contact merged into
        it (those records are gone, but copies made under their ids — audit entries, outbox
        events, webhook payloads — are the same person's data): for those, ``contact`` has
        only its ``id``.

        :param expected_version: erase only if the contact is still at this version (the
            caller decided on what it saw); :class:`~crmkit.errors.ConflictError` otherwise.
        :return: the record of the erasure.
        """
        contact = self.crm.contacts.get(contact_id)
        with self.crm.uow(actor) as uow:
            if expected_version is not None and uow.contacts.get(contact.id).version != expected_version:
                raise ConflictError("contact", contact.id, expected_version)
            plugins: list[str] = []
            for person in [contact, *(Contact(id=ident) for ident in merged_into(uow, contact.id))]:
                for plugin, _ in self.crm.plugins.call_each("crmkit_erase_personal_data", contact=person, crm=self.crm, uow=uow):
                    plugins.extend([plugin] if plugin not in plugins else [])
            # Subscribers holding copies elsewhere (a mailing tool, a warehouse) erase on this;
            # it carries nothing but the id.
            event = uow.emit("contact.erased", contact.id, {})
        return Erasure(contact_id=contact.id, event_id=event.id, erased_at=event.occurred_at, actor=actor, plugins=plugins)


def merged_into(uow: UnitOfWork, contact_id: str) -> list[str]:
    """Ids of the contacts merged into ``contact_id``, directly or along a chain of merges
    (merges since undone excepted: an undone merge gave the other record its own life back)."""
    merges = uow.table("merges")
    conn = uow.connection
    assert conn is not None
    found: list[str] = []
    frontier = {contact_id}
    while frontier:
        rows = conn.execute(sa.select(merges.c.duplicate_id).where(merges.c.survivor_id.in_(frontier), merges.c.undone_at.is_(None)))
        frontier = {row.duplicate_id for row in rows} - {contact_id, *found}
        found.extend(sorted(frontier))
    return found
