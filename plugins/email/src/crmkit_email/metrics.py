"""E-mail engagement metrics (``crmkit metrics show email.open_rate``): the share of tracked
e-mails sent in the period that were opened, or had a link clicked, at least once.

Counted in SQL: a message counts once however often it was opened (the activities of
:mod:`crmkit_email.tracking` name the message's provider id in their external id). Only
messages whose purpose was tracked when they were sent can have opens, so the denominator is
the messages of the purposes in ``tracking_purposes``. Image proxies and scanners inflate both
rates (see :mod:`crmkit_email.tracking`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from crmkit.metrics.protocol import MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import assemble, ratio, rows, within

from crmkit_email.channel import EmailChannel

if TYPE_CHECKING:
    from crmkit.app import CRM


def _rate(crm: CRM, params: MetricParams, what: str, name: str) -> MetricResult:
    purposes = EmailChannel.for_crm(crm).settings.tracking_purposes
    with crm.read() as uow:
        m, a = uow.table("messages"), uow.table("activities")
        engaged = sa.exists().where(
            a.c.channel == "email", a.c.kind == f"email.{what}", a.c.contact_id == m.c.contact_id,
            a.c.external_id.like(m.c.provider_message_id.concat(f":{what}:%")),
        )
        conditions = [m.c.channel == "email", m.c.sent_at.is_not(None), m.c.provider_message_id.is_not(None),
                      m.c.purpose.in_(purposes), *within(m.c.sent_at, params.period)]
        head = [m.c.campaign_id.label("group_key")] if params.group_by == "campaign" else []
        statement = sa.select(*head, sa.func.count().label("sent"),
                              sa.func.coalesce(sa.func.sum(sa.case((engaged, 1), else_=0)), 0).label("engaged")).where(*conditions)
        found = rows(uow, statement.group_by(m.c.campaign_id) if head else statement)
        return assemble(uow, name, "ratio", params, found,
                        lambda c: (ratio(c["engaged"], c["sent"]), int(c["sent"]), {what: int(c["engaged"]), "sent": int(c["sent"])}))


def open_rate(crm: CRM, params: MetricParams) -> MetricResult:
    return _rate(crm, params, "opened", "email.open_rate")


def click_rate(crm: CRM, params: MetricParams) -> MetricResult:
    return _rate(crm, params, "clicked", "email.click_rate")


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("email.open_rate", "Share of tracked e-mails sent in the period that were opened at least once.",
                         "ratio", open_rate, group_by=("campaign",)),
        MetricDefinition("email.click_rate", "Share of tracked e-mails sent in the period with at least one link clicked.",
                         "ratio", click_rate, group_by=("campaign",)),
    ]
