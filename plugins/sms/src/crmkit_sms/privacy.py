"""crmkit-sms's part of a person's export and erasure.

Texts to and from a person are logged as activities on their contact, which the core exports
and clears. A text from their number that is on no contact — HELP from a number crmkit did not
know yet, a keyword reply sent back to it — holds the number all the same: those are exported
as ``sms_mentions`` and cleared on erasure (a mention on another contact loses just the
number). Suppressions (STOP) are the channel layer's: kept as a digest of the number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crmkit import hookimpl
from crmkit.privacy import ChannelMentions

from crmkit_sms.channel import NAME

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact
    from crmkit.storage.uow import UnitOfWork

#: The person's number as stored (E.164, as every inbound sender is normalised).
MENTIONS = ChannelMentions(NAME, lambda contact: contact.phone)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    return MENTIONS.export(contact, crm)


@hookimpl
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    MENTIONS.erase(contact, uow)
