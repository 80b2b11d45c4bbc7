"""Retention metrics: retention rate, churn rate and customer lifetime value.

The schema keeps no history of ``lifecycle_stage`` (only the current value), so these are
defined on what is dated — won deals and purchase activities:

- A contact is a **customer from** the ``closed_at`` of its first won deal.
- The **cohort** of a period is the contacts that were customers before it started.
- A cohort member is **retained** when it bought again in the period: a won deal closed in it,
  or an activity of kind ``purchase`` that occurred in it (log purchases from a shop as such).
- **Retention rate** = retained ÷ cohort; **churn rate** = 1 − retention rate (cohort members
  with no purchase in the period). Both need a period; an empty cohort gives None.
- **Customer lifetime value** = won revenue closed before the period ends ÷ customers with such
  a deal, in one currency: the average revenue a customer has brought so far (historical, not
  predicted).

Breakdowns are by the contact's ``owner`` or ``source`` (its source channel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit.domain.values import Outcome
from crmkit.errors import ValidationFailed
from crmkit.metrics.protocol import MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import assemble, average_money, before_end, currency, ratio, raw_money, rows, within

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

WON = Outcome.WON.value
PURCHASE = "purchase"
CONTACT_DIMENSIONS = ("owner", "source")


def _contact_columns(contacts: Any) -> dict[str, Any]:
    return {"owner": contacts.c.owner_id, "source": contacts.c.source_channel}


def _contact_filters(params: MetricParams, contacts: Any) -> list[Any]:
    columns = _contact_columns(contacts)
    return [columns[key] == value for key, value in params.filters.items()]


def _retention_counts(uow: UnitOfWork, params: MetricParams) -> list[Any]:
    period = params.period
    if period is None:
        raise ValidationFailed.single("period", "required", "retention and churn are measured over a period, e.g. 2026-Q3")
    deals, contacts, activities = uow.table("deals"), uow.table("contacts"), uow.table("activities")
    firsts = (sa.select(deals.c.contact_id, sa.func.min(deals.c.closed_at).label("became_customer"))
              .where(deals.c.status == WON, deals.c.contact_id.is_not(None)).group_by(deals.c.contact_id).subquery("first_wins"))
    bought = sa.union(
        sa.select(deals.c.contact_id).where(deals.c.status == WON, *within(deals.c.closed_at, period)),
        sa.select(activities.c.contact_id).where(activities.c.kind == PURCHASE, *within(activities.c.occurred_at, period)),
    )
    retained = sa.case((firsts.c.contact_id.in_(sa.select(bought.subquery().c.contact_id)), 1), else_=0)
    group = _contact_columns(contacts).get(params.group_by or "")
    head = [group.label("group_key")] if group is not None else []
    statement = (sa.select(*head, sa.func.count().label("cohort"), sa.func.coalesce(sa.func.sum(retained), 0).label("retained"))
                 .select_from(sa.join(firsts, contacts, contacts.c.id == firsts.c.contact_id))
                 .where(firsts.c.became_customer < period.start, *_contact_filters(params, contacts)))
    return rows(uow, statement.group_by(group) if group is not None else statement)


def retention_rate(crm: CRM, params: MetricParams) -> MetricResult:
    """Share of the customers at the period's start who bought again in it."""
    with crm.read() as uow:
        return assemble(uow, "retention.retention_rate", "ratio", params, _retention_counts(uow, params),
                        lambda c: (ratio(c["retained"], c["cohort"]), int(c["cohort"]), {"retained": int(c["retained"])}))


def churn_rate(crm: CRM, params: MetricParams) -> MetricResult:
    """Share of the customers at the period's start who did not buy again in it."""
    with crm.read() as uow:
        return assemble(uow, "retention.churn_rate", "ratio", params, _retention_counts(uow, params),
                        lambda c: (ratio(c["cohort"] - c["retained"], c["cohort"]), int(c["cohort"]),
                                   {"churned": int(c["cohort"] - c["retained"])}))


def lifetime_value(crm: CRM, params: MetricParams) -> MetricResult:
    """Won revenue closed before the period ends ÷ contacts with such a deal (one currency)."""
    code = currency(crm, params)
    with crm.read() as uow:
        deals, contacts = uow.table("deals"), uow.table("contacts")
        group = _contact_columns(contacts).get(params.group_by or "")
        head = [group.label("group_key")] if group is not None else []
        statement = (sa.select(*head, sa.func.sum(raw_money(deals.c.amount)).label("revenue"),
                               sa.func.count(sa.distinct(deals.c.contact_id)).label("customers"))
                     .select_from(sa.join(deals, contacts, contacts.c.id == deals.c.contact_id))
                     .where(deals.c.status == WON, deals.c.currency == code, *before_end(deals.c.closed_at, params.period),
                            *_contact_filters(params, contacts)))
        found = rows(uow, statement.group_by(group) if group is not None else statement)
        # Distinct customers add up across groups: each contact has one owner and one source.
        return assemble(uow, "retention.customer_lifetime_value", "money", params, found,
                        lambda c: (average_money(c["revenue"], int(c["customers"])), int(c["customers"]), {}), currency_code=code)


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("retention.retention_rate", "Customers at the period's start who bought again in it ÷ those customers.",
                         "ratio", retention_rate, group_by=CONTACT_DIMENSIONS, filters=CONTACT_DIMENSIONS),
        MetricDefinition("retention.churn_rate", "Customers at the period's start with no purchase in it ÷ those customers.",
                         "ratio", churn_rate, group_by=CONTACT_DIMENSIONS, filters=CONTACT_DIMENSIONS),
        MetricDefinition("retention.customer_lifetime_value", "Average won revenue per customer up to the end of the period.",
                         "money", lifetime_value, group_by=CONTACT_DIMENSIONS, filters=CONTACT_DIMENSIONS),
    ]
