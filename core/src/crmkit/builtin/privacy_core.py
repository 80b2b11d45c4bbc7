"""Personal-data export and erasure for the core's own tables."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import phonenumbers
import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact
from crmkit.domain.values import LifecycleStage, utcnow
from crmkit.plugins import hookimpl
from crmkit.privacy import ERASED, addresses_of, erase_mentions_in
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

#: Contact columns that hold personal data and are cleared by erasure.
PERSONAL_COLUMNS = (
    "first_name", "last_name", "email", "phone", "address_street", "address_city", "address_region",
    "address_postcode", "address_country", "birth_date", "account_number", "job_title", "location",
)
#: A stored API response that held the person's data answers a replay with this instead.
ERASED_RESPONSE = {"body": {"error": {"code": "erased", "message": "the response to this request held personal data that has "
                                      "since been erased; it is not replayed", "issues": []}}, "headers": {}}


@hookimpl(tryfirst=True)
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any]:
    with crm.read() as uow:
        return {
            "contact": to_jsonable(contact),
            "activities": to_jsonable(uow.activities.list(uow.activities.where(contact_id=contact.id), limit=None)),
            "deals": to_jsonable(uow.deals.list(uow.deals.where(contact_id=contact.id), limit=None)),
            "tasks": to_jsonable(uow.tasks.list(uow.tasks.where(contact_id=contact.id), limit=None)),
            "consents": to_jsonable(uow.consents.list(uow.consents.where(contact_id=contact.id), order_by=("recorded_at", "id"), limit=None)),
        }


@hookimpl(trylast=True)
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    """Anonymise rather than delete: deals and activity counts stay true for metrics, but
    nothing left identifies the person."""
    conn, t = uow.connection, uow.tables
    assert conn is not None
    redact = identifier_redactor(contact)
    conn.execute(
        sa.update(t["contacts"]).where(t["contacts"].c.id == contact.id).values(
            **{column: None for column in PERSONAL_COLUMNS},
            tags=[], custom={}, lifecycle_stage=LifecycleStage.CHURNED.value, updated_at=utcnow(),
            version=t["contacts"].c.version + 1,
        )
    )
    conn.execute(sa.update(t["activities"]).where(t["activities"].c.contact_id == contact.id).values(payload={}, subject=None))
    conn.execute(sa.update(t["consents"]).where(t["consents"].c.contact_id == contact.id).values(evidence={}))
    # A task on the person is about the person ("Call Ada"); a deal is kept for the numbers, so
    # only the person's names, e-mail and phone are cut out of its title.
    conn.execute(sa.update(t["tasks"]).where(t["tasks"].c.contact_id == contact.id).values(title=ERASED, notes=None))
    deals = t["deals"]
    for row in conn.execute(sa.select(deals.c.id, deals.c.title).where(deals.c.contact_id == contact.id)).all():
        if redact(row.title) != row.title:
            conn.execute(sa.update(deals).where(deals.c.id == row.id).values(title=redact(row.title)))
    # The person's ids in other systems identify them as much as an e-mail address does.
    conn.execute(sa.delete(t["external_ids"]).where(t["external_ids"].c.contact_id == contact.id))
    # Events in the outbox carry copies: those about the person and those about their
    # activities, deals, tasks and messages (whose data names them). Contact ids are random,
    # so a match on the id in the text is the person's; this reads the whole outbox, once per
    # erasure.
    outbox = t["outbox_events"]
    conn.execute(sa.update(outbox).where(sa.or_(outbox.c.subject_id == contact.id, sa.cast(outbox.c.data, sa.Text).contains(contact.id)))
                 .values(data={"erased": True}))
    # … and events about other records that name the person's address (a message they were
    # copied on, a text from their number logged on no contact).
    erase_mentions_in(conn, outbox, outbox.c.data, outbox.c.id, addresses_of(contact))
    # Responses kept for Idempotency-Key replays (24 hours) may hold the record.
    kept = t["idempotency_keys"]
    conn.execute(sa.update(kept).where(sa.cast(kept.c.response, sa.Text).contains(contact.id)).values(status=410, response=ERASED_RESPONSE))


def identifier_redactor(contact: Contact) -> Callable[[str], str]:
    """A function replacing the person's names, e-mail address and phone number (however it is
    written) in a text with :data:`ERASED`."""
    patterns = [re.escape(value) for value in (contact.email, contact.first_name, contact.last_name) if value and len(value) >= 3]
    if contact.phone:
        try:
            number = phonenumbers.parse(contact.phone)
            separators = r"[\s().\-]*"
            national = separators.join(str(number.national_number))
            patterns.append(rf"(?:\+?{number.country_code}{separators})?\(?{national}")
        except phonenumbers.NumberParseException:
            patterns.append(re.escape(contact.phone))
    if not patterns:
        return lambda text: text
    pattern = re.compile("|".join(sorted(patterns, key=len, reverse=True)), re.IGNORECASE)
    return lambda text: pattern.sub(ERASED, text)
