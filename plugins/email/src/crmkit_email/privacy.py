"""crmkit-email's part of a person's export and erasure.

The e-mail a person sent and received is logged as activities on their contact, which the core
exports and clears. What the core cannot see is their address in e-mail activities *not* on
their contact: a message they were one of several recipients of, logged on the sender, or a
reply from an address they used before it was on their record. Those are exported as
``email_mentions`` and, on erasure, cleared (no contact) or stripped of the address.
Message-IDs recorded as external ids go with the core's erasure of the person's external ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmkit import hookimpl
from crmkit.privacy import ChannelMentions

from crmkit_email.channel import NAME

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact
    from crmkit.storage.uow import UnitOfWork

#: The person's address as stored (lower-cased, as every inbound sender is).
MENTIONS = ChannelMentions(NAME, lambda contact: contact.email)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    return MENTIONS.export(contact, crm)


@hookimpl
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    MENTIONS.erase(contact, uow)
