"""Personal-data export and erasure for the core's own tables."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact
from crmkit.domain.values import LifecycleStage, utcnow
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

#: Contact columns that hold personal data and are cleared by erasure.
PERSONAL_COLUMNS = (
    "first_name", "last_name", "email", "phone", "address_street", "address_city", "address_region",
    "address_postcode", "address_country", "birth_date", "account_number", "job_title", "location",
)


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
    conn.execute(
        sa.update(t["contacts"]).where(t["contacts"].c.id == contact.id).values(
            **{column: None for column in PERSONAL_COLUMNS},
            tags=[], custom={}, lifecycle_stage=LifecycleStage.CHURNED.value, updated_at=utcnow(),
            version=t["contacts"].c.version + 1,
        )
    )
    conn.execute(sa.update(t["activities"]).where(t["activities"].c.contact_id == contact.id).values(payload={}, subject=None))
    conn.execute(sa.update(t["consents"]).where(t["consents"].c.contact_id == contact.id).values(evidence={}))
    conn.execute(sa.update(t["tasks"]).where(t["tasks"].c.contact_id == contact.id).values(notes=None))
    # Events already in the outbox carry copies of the record.
    conn.execute(sa.update(t["outbox_events"]).where(t["outbox_events"].c.subject_id == contact.id).values(data={"erased": True}))
