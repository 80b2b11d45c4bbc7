"""Sales metrics: funnel, win rate, average deal size, sales-cycle length, time in stage and
sales velocity.

Data they need: deals with their ``status``/``closed_at`` (set by ``crm.deals.move`` into a
won or lost stage) and the stage history (``stage_changes``, written by every create and move).
Deals closed in the period are those whose ``closed_at`` lies in it; a deal re-opened after
closing has no ``closed_at`` and counts nowhere until it closes again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit import reports
from crmkit.domain.values import Outcome
from crmkit.errors import ValidationFailed
from crmkit.metrics.protocol import BreakdownRow, MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import (
    SECONDS_PER_DAY,
    DealScope,
    assemble,
    average_money,
    currency,
    ratio,
    raw_money,
    rows,
    seconds_between,
    within,
)

if TYPE_CHECKING:
    from crmkit.app import CRM

WON, LOST = Outcome.WON.value, Outcome.LOST.value


def win_rate(crm: CRM, params: MetricParams) -> MetricResult:
    """Deals won ÷ deals won or lost, among deals closed in the period (``closed_at``)."""
    with crm.read() as uow:
        scope = DealScope(uow, params)
        d = scope.deals
        found = rows(uow, scope.select(
            sa.func.coalesce(sa.func.sum(sa.case((d.c.status == WON, 1), else_=0)), 0).label("won"),
            sa.func.count().label("closed"),
            where=[d.c.status.in_((WON, LOST)), *within(d.c.closed_at, params.period)],
        ))
        return assemble(uow, "sales.win_rate", "ratio", params, found,
                        lambda c: (ratio(c["won"], c["closed"]), int(c["closed"]), {"won": int(c["won"]), "lost": int(c["closed"] - c["won"])}))


def average_deal_size(crm: CRM, params: MetricParams) -> MetricResult:
    """Mean amount of the deals won in the period (``closed_at``), in one currency."""
    code = currency(crm, params)
    with crm.read() as uow:
        scope = DealScope(uow, params)
        d = scope.deals
        found = rows(uow, scope.select(
            sa.func.sum(raw_money(d.c.amount)).label("amount"), sa.func.count().label("deals"),
            where=[d.c.status == WON, d.c.currency == code, *within(d.c.closed_at, params.period)],
        ))
        return assemble(uow, "sales.average_deal_size", "money", params, found,
                        lambda c: (average_money(c["amount"], c["deals"]), int(c["deals"]), {}), currency_code=code)


def _cycle_columns(uow: Any, scope: DealScope) -> tuple[Any, Any]:
    """(sum of seconds from first stage entry to win, count) over won deals, joining the first
    entry per deal into ``scope``."""
    changes = uow.table("stage_changes")
    first = sa.select(changes.c.deal_id, sa.func.min(changes.c.changed_at).label("entered_at")).group_by(changes.c.deal_id).subquery("first_entry")
    scope.source = scope.source.join(first, first.c.deal_id == scope.deals.c.id)
    seconds = seconds_between(uow.connection.dialect.name, first.c.entered_at, scope.deals.c.closed_at)
    return sa.func.sum(seconds).label("seconds"), sa.func.count().label("deals")


def sales_cycle(crm: CRM, params: MetricParams) -> MetricResult:
    """Mean days from a deal's first stage entry (its creation) to its win, over the deals won
    in the period (``closed_at``)."""
    with crm.read() as uow:
        scope = DealScope(uow, params)
        found = rows(uow, scope.select(*_cycle_columns(uow, scope),
                                        where=[scope.deals.c.status == WON, *within(scope.deals.c.closed_at, params.period)]))
        return assemble(uow, "sales.cycle_length", "days", params, found,
                        lambda c: (ratio(float(c["seconds"]) / SECONDS_PER_DAY, c["deals"]), int(c["deals"]), {}))


def time_in_stage(crm: CRM, params: MetricParams) -> MetricResult:
    """Mean days a deal stays in a stage, per stage and over all stays.

    A stay starts with a stage change into the stage and ends with the deal's next stage
    change (``LEAD`` over the deal's history); stays still going are left out. Stays are
    counted in the period their entry (``changed_at``) lies in.
    """
    with crm.read() as uow:
        changes = uow.table("stage_changes")
        left_at = sa.func.lead(changes.c.changed_at).over(partition_by=changes.c.deal_id, order_by=(changes.c.changed_at, changes.c.id))
        stays = sa.select(changes.c.deal_id, changes.c.to_stage_id.label("stage_id"), changes.c.changed_at.label("entered_at"),
                          left_at.label("left_at")).subquery("stays")
        scope = DealScope(uow, params)
        scope.source = scope.source.join(stays, stays.c.deal_id == scope.deals.c.id)
        scope.group = stays.c.stage_id
        seconds = seconds_between(uow.connection.dialect.name, stays.c.entered_at, stays.c.left_at)
        found = rows(uow, scope.select(sa.func.sum(seconds).label("seconds"), sa.func.count().label("stays"),
                                        where=[stays.c.left_at.is_not(None), *within(stays.c.entered_at, params.period)]))
        return assemble(uow, "sales.time_in_stage", "days", params, found,
                        lambda c: (ratio(float(c["seconds"]) / SECONDS_PER_DAY, c["stays"]), int(c["stays"]), {}), dimension="stage")


def velocity(crm: CRM, params: MetricParams) -> MetricResult:
    """Sales velocity in money per day: opportunities × win rate × average deal size ÷ sales
    cycle (days). Opportunities are the deals created in the period (``created_at``); the other
    three are :func:`win_rate`, :func:`average_deal_size` and :func:`sales_cycle` for the same
    period and filters. None when any part is undefined or the cycle is zero."""
    with crm.read() as uow:
        scope = DealScope(uow, params)
        created = int(rows(uow, scope.select(sa.func.count(), where=within(scope.deals.c.created_at, params.period)))[0][0])
    rate, size, cycle = win_rate(crm, params), average_deal_size(crm, params), sales_cycle(crm, params)
    parts = {"opportunities": created, "win_rate": rate.value, "average_deal_size": size.value, "cycle_days": cycle.value}
    value = None
    if created and rate.value is not None and size.value is not None and cycle.value:
        value = float(size.value) * created * float(rate.value) / float(cycle.value)
    return MetricResult(name="sales.velocity", unit="money_per_day", value=value, sample_size=created if value is not None else 0,
                        period=params.period.label if params.period else None, currency=size.currency, details=parts)


def funnel(crm: CRM, params: MetricParams) -> MetricResult:
    """The stage funnel of one pipeline (:func:`crmkit.reports.funnel`, from the stage
    history). Value: the share of deals entering the first open stage that reached a won stage.
    Breakdown: one row per stage, the value being ``reached ÷ reached first stage``. The
    pipeline is the ``pipeline`` filter, or the only pipeline there is."""
    pipeline = params.filters.get("pipeline")
    if pipeline is None:
        pipelines = crm.pipelines.list()
        if len(pipelines) != 1:
            raise ValidationFailed.single("filters.pipeline", "required", "name the pipeline (there are several, or none)")
        pipeline = pipelines[0].id
    report = reports.funnel(crm, pipeline)
    first = report.stages[0].reached if report.stages else 0
    rows_out = [BreakdownRow(key=s.stage.id, label=s.stage.name, value=s.from_first, sample_size=s.reached,
                             details={"reached": s.reached, "from_previous": s.from_previous, "drop_off": s.drop_off})
                for s in report.stages]
    rows_out += [BreakdownRow(key=o.stage.id, label=o.stage.name, value=o.from_first, sample_size=o.entered,
                              details={"entered": o.entered, "outcome": o.stage.outcome.value}) for o in report.outcomes]
    return MetricResult(name="sales.funnel", unit="ratio", value=ratio(report.won, first), sample_size=first, group_by="stage",
                        breakdown=rows_out, details={"deals": report.deals, "won": report.won, "lost": report.lost})


DEAL_DIMENSIONS = DealScope.DIMENSIONS


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("sales.funnel", "Stage funnel of a pipeline: deals that reached each stage, and the share that was won.",
                         "ratio", funnel, filters=("pipeline",), uses_period=False),
        MetricDefinition("sales.win_rate", "Deals won ÷ deals won or lost, among deals closed in the period.",
                         "ratio", win_rate, group_by=DEAL_DIMENSIONS, filters=DEAL_DIMENSIONS),
        MetricDefinition("sales.average_deal_size", "Mean amount of the deals won in the period (one currency).",
                         "money", average_deal_size, group_by=DEAL_DIMENSIONS, filters=DEAL_DIMENSIONS),
        MetricDefinition("sales.cycle_length", "Mean days from a deal's first stage to its win, for deals won in the period.",
                         "days", sales_cycle, group_by=DEAL_DIMENSIONS, filters=DEAL_DIMENSIONS),
        MetricDefinition("sales.time_in_stage", "Mean days deals stayed in each stage, for stays entered in the period.",
                         "days", time_in_stage, group_by=("stage",), filters=DEAL_DIMENSIONS),
        MetricDefinition("sales.velocity", "Opportunities × win rate × average deal size ÷ cycle length, in money per day.",
                         "money_per_day", velocity, filters=DEAL_DIMENSIONS),
    ]
