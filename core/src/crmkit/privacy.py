"""Personal-data rights: export everything held about a person, and erase it.

The core gathers its own tables through the built-in plugin
:mod:`crmkit.builtin.privacy_core`; every other plugin answers the same two hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmkit.domain.values import utcnow
from crmkit.errors import PluginError

if TYPE_CHECKING:
    from crmkit.app import CRM


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

    def erase(self, contact_id: str, *, actor: str | None = None) -> None:
        """Erase the person everywhere in one transaction: plugins first, then the core."""
        contact = self.crm.contacts.get(contact_id)
        with self.crm.uow(actor) as uow:
            for _ in self.crm.plugins.call_each("crmkit_erase_personal_data", contact=contact, crm=self.crm, uow=uow):
                pass
            # Subscribers holding copies elsewhere (a mailing tool, a warehouse) erase on this;
            # it carries nothing but the id.
            uow.emit("contact.erased", contact.id, {})
