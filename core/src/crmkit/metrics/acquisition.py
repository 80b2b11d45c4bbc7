"""Acquisition metrics: customer acquisition cost, campaign revenue and ROI, and first/last
touch attribution of won revenue.

Definitions and the data they need:

- A contact becomes a **new customer** when its first won deal closes (the earliest
  ``closed_at`` among its won deals); contacts without deals never count.
- A campaign's **spend** is booked in the period its ``starts_on`` date lies in (its
  ``created_at`` when it has no start date), in the campaign's currency.
- **First touch** is the contact's recorded source (``source_channel`` /
  ``source_campaign_id``, set when the contact was captured). **Last touch** is the channel of
  the contact's latest activity with a channel at or before the deal closed.
- Revenue is the amount of won deals closed in the period (``closed_at``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain.values import Outcome
from crmkit.metrics.protocol import MetricDefinition, MetricParams, MetricResult, Period
from crmkit.metrics.sql import MONEY_QUANTUM, DealScope, assemble, breakdown, currency, money, ratio, raw_money, resolve, rows, within

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

WON = Outcome.WON.value


def _campaign_dated(campaigns: Any, period: Period | None) -> list[Any]:
    if period is None:
        return []
    started = sa.and_(campaigns.c.starts_on.is_not(None), campaigns.c.starts_on >= period.start.date(), campaigns.c.starts_on < period.end.date())
    created = sa.and_(campaigns.c.starts_on.is_(None), *within(campaigns.c.created_at, period))
    return [sa.or_(started, created)]


def _campaign_filters(uow: UnitOfWork, params: MetricParams, campaign_col: Any, channel_col: Any) -> list[Any]:
    conditions = []
    if "campaign" in params.filters:
        conditions.append(campaign_col == resolve(uow, "campaigns", params.filters["campaign"], "filters.campaign"))
    if "channel" in params.filters:
        conditions.append(channel_col == params.filters["channel"])
    return conditions


def _spend(uow: UnitOfWork, params: MetricParams, code: str) -> dict[Any, int]:
    """Raw spend per group key (``None`` key without a group-by)."""
    c = uow.table("campaigns")
    group = {"channel": c.c.channel, "campaign": c.c.id}.get(params.group_by or "")
    head = [group] if group is not None else [sa.null()]
    statement = sa.select(*head, sa.func.sum(raw_money(c.c.spend))).where(
        c.c.currency == code, *_campaign_dated(c, params.period), *_campaign_filters(uow, params, c.c.id, c.c.channel))
    return {key: int(total or 0) for key, total in rows(uow, statement.group_by(group) if group is not None else statement)}


def cac(crm: CRM, params: MetricParams) -> MetricResult:
    """Campaign spend in the period ÷ new customers in the period (one currency), overall or per
    channel / campaign (spend by the campaign's channel, customers by their first touch)."""
    code = currency(crm, params)
    with crm.read() as uow:
        deals, contacts = uow.table("deals"), uow.table("contacts")
        firsts = (sa.select(deals.c.contact_id, sa.func.min(deals.c.closed_at).label("became_customer"))
                  .where(deals.c.status == WON, deals.c.contact_id.is_not(None)).group_by(deals.c.contact_id).subquery("first_wins"))
        group = {"channel": contacts.c.source_channel, "campaign": contacts.c.source_campaign_id}.get(params.group_by or "")
        head = [group] if group is not None else [sa.null()]
        statement = (sa.select(*head, sa.func.count()).select_from(sa.join(firsts, contacts, contacts.c.id == firsts.c.contact_id))
                     .where(*within(firsts.c.became_customer, params.period),
                            *_campaign_filters(uow, params, contacts.c.source_campaign_id, contacts.c.source_channel)))
        customers = {key: int(n) for key, n in rows(uow, statement.group_by(group) if group is not None else statement)}
        spend = _spend(uow, params, code)

        def cost(raw: int, count: int) -> tuple[Any, int, dict[str, Any]]:
            return (None if not count else (money(raw) / count).quantize(MONEY_QUANTUM), count, {"spend": money(raw), "new_customers": count})

        total_raw, total_customers = sum(spend.values()), sum(customers.values())
        rows_out = [] if group is None else breakdown(
            uow, params.group_by, [(key, *cost(spend.get(key, 0), customers.get(key, 0))) for key in {*spend, *customers}])
    value, size, details = cost(total_raw, total_customers)
    return MetricResult(name="acquisition.cac", unit="money", value=value, sample_size=size, currency=code,
                        period=params.period.label if params.period else None, group_by=params.group_by, breakdown=rows_out, details=details)


def _won_revenue_by_campaign(uow: UnitOfWork, params: MetricParams, code: str) -> list[Any]:
    scope = DealScope(uow, params)
    scope.group = scope.contacts.c.source_campaign_id
    return rows(uow, scope.select(sa.func.sum(raw_money(scope.deals.c.amount)).label("revenue"), sa.func.count().label("deals"),
                                  where=[scope.deals.c.status == WON, scope.deals.c.currency == code, scope.group.is_not(None),
                                         *within(scope.deals.c.closed_at, params.period)]))


def campaign_revenue(crm: CRM, params: MetricParams) -> MetricResult:
    """Won revenue closed in the period from contacts a campaign brought in (first touch), per
    campaign; the value is the total over campaigns."""
    code = currency(crm, params)
    with crm.read() as uow:
        found = _won_revenue_by_campaign(uow, params, code)
        return assemble(uow, "acquisition.campaign_revenue", "money", params, found,
                        lambda c: (money(c["revenue"]), int(c["deals"]), {}), dimension="campaign", currency_code=code)


def campaign_roi(crm: CRM, params: MetricParams) -> MetricResult:
    """(Revenue − spend) ÷ spend, per campaign and over all campaigns: revenue as in
    :func:`campaign_revenue`, spend booked in the period. None where there was no spend."""
    code = currency(crm, params)
    with crm.read() as uow:
        revenue = {key: int(raw or 0) for key, raw, _ in _won_revenue_by_campaign(uow, params, code)}
        spend = _spend(uow, attrs.evolve(params, group_by="campaign"), code)

        def roi(raw_revenue: int, raw_spend: int) -> tuple[Any, int, dict[str, Any]]:
            return (ratio(raw_revenue - raw_spend, raw_spend), 1 if raw_spend else 0,
                    {"revenue": money(raw_revenue), "spend": money(raw_spend)})

        rows_out = breakdown(uow, "campaign", [(key, *roi(revenue.get(key, 0), spend.get(key, 0))) for key in {*revenue, *spend}])
    value, _, details = roi(sum(revenue.values()), sum(spend.values()))
    return MetricResult(name="acquisition.campaign_roi", unit="ratio", value=value, sample_size=sum(1 for r in rows_out if r.sample_size),
                        currency=code, period=params.period.label if params.period else None, group_by="campaign",
                        breakdown=rows_out, details=details)


def first_touch(crm: CRM, params: MetricParams) -> MetricResult:
    """Won revenue closed in the period, credited to each contact's recorded source channel."""
    code = currency(crm, params)
    with crm.read() as uow:
        scope = DealScope(uow, params)
        scope.group = scope.contacts.c.source_channel
        found = rows(uow, scope.select(sa.func.sum(raw_money(scope.deals.c.amount)).label("revenue"), sa.func.count().label("deals"),
                                       where=[scope.deals.c.status == WON, scope.deals.c.currency == code,
                                              *within(scope.deals.c.closed_at, params.period)]))
        return assemble(uow, "acquisition.first_touch", "money", params, found,
                        lambda c: (money(c["revenue"]), int(c["deals"]), {}), dimension="channel", currency_code=code)


def last_touch(crm: CRM, params: MetricParams) -> MetricResult:
    """Won revenue closed in the period, credited to the channel of the contact's latest
    activity (with a channel) at or before the deal closed; ``(none)`` when there was none."""
    code = currency(crm, params)
    with crm.read() as uow:
        scope = DealScope(uow, params)
        d, activities = scope.deals, uow.table("activities").alias("touch")
        last_channel = (sa.select(activities.c.channel)
                        .where(activities.c.contact_id == d.c.contact_id, activities.c.channel.is_not(None),
                               activities.c.occurred_at <= d.c.closed_at)
                        .order_by(activities.c.occurred_at.desc(), activities.c.id.desc()).limit(1).scalar_subquery())
        won = scope.select(raw_money(d.c.amount).label("amount"), last_channel.label("channel"),
                           where=[d.c.status == WON, d.c.currency == code, *within(d.c.closed_at, params.period)]).subquery("won")
        found = rows(uow, sa.select(won.c.channel.label("group_key"), sa.func.sum(won.c.amount).label("revenue"),
                                    sa.func.count().label("deals")).group_by(won.c.channel))
        return assemble(uow, "acquisition.last_touch", "money", params, found,
                        lambda c: (money(c["revenue"]), int(c["deals"]), {}), dimension="channel", currency_code=code)


DEAL_FILTERS = ("owner", "pipeline")


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("acquisition.cac", "Customer acquisition cost: campaign spend ÷ new customers in the period.",
                         "money", cac, group_by=("channel", "campaign"), filters=("channel", "campaign")),
        MetricDefinition("acquisition.campaign_revenue", "Won revenue in the period from contacts each campaign brought in.",
                         "money", campaign_revenue, group_by=("campaign",), filters=DEAL_FILTERS),
        MetricDefinition("acquisition.campaign_roi", "(Campaign revenue − spend) ÷ spend in the period, per campaign.",
                         "ratio", campaign_roi, group_by=("campaign",), filters=DEAL_FILTERS),
        MetricDefinition("acquisition.first_touch", "Won revenue in the period by the contact's first-touch source channel.",
                         "money", first_touch, group_by=("channel",), filters=DEAL_FILTERS),
        MetricDefinition("acquisition.last_touch", "Won revenue in the period by the channel of the last activity before the win.",
                         "money", last_touch, group_by=("channel",), filters=DEAL_FILTERS),
    ]
