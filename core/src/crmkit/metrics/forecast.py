"""Forecasts: the weighted pipeline (stage probabilities) and a historical forecast (observed
stage-to-won conversion).

Data they need: open deals with an amount (and, for the historical forecast, an
``expected_close`` date), and closed deals with their stage history to learn conversion from.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from crmkit.domain.values import Outcome
from crmkit.metrics.protocol import BreakdownRow, MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import MONEY_QUANTUM, DealScope, breakdown, currency, money, raw_money, rows

if TYPE_CHECKING:
    from crmkit.app import CRM

WON, LOST, OPEN = Outcome.WON.value, Outcome.LOST.value, Outcome.OPEN.value


def _weigh(amount: Decimal, probability: float) -> Decimal:
    # str() gives the probability as it was entered (0.1, not 0.1000000000000000055…), so the
    # product is exact before rounding to money precision.
    return (amount * Decimal(str(probability))).quantize(MONEY_QUANTUM)


def weighted_pipeline(crm: CRM, params: MetricParams) -> MetricResult:
    """Σ amount × stage probability over the open deals now, in one currency. Over the
    ``pipeline`` filter's pipeline (breakdown per stage) or over all pipelines (breakdown per
    pipeline with ``by=pipeline``).

    One ``GROUP BY stage`` over the open deals of the currency; since a stage has one
    probability, a stage's weighted value is its summed amount × that probability, in
    :class:`Decimal`. Sample sizes count the deals in the currency only.
    """
    code = currency(crm, params)
    chosen = params.filters.get("pipeline")
    pipelines = [crm.pipelines.get(chosen)] if chosen else crm.pipelines.list()
    with crm.read() as uow:
        d = uow.table("deals")
        where = [d.c.status == OPEN, d.c.currency == code, *([d.c.pipeline_id == pipelines[0].id] if chosen else [])]
        sums = {stage_id: (int(count), money(raw)) for stage_id, count, raw in rows(uow, sa.select(
            d.c.stage_id, sa.func.count(), sa.func.sum(raw_money(d.c.amount))).where(*where).group_by(d.c.stage_id))}
    zero = Decimal(0)
    stages = [(p, s, *sums.get(s.id, (0, zero))) for p in pipelines
              for s in sorted(p.stages, key=lambda s: s.position) if s.outcome == Outcome.OPEN]
    weighted = {s.id: _weigh(amount, s.probability) for _, s, _, amount in stages}
    if params.group_by == "pipeline":
        rows_out = [BreakdownRow(key=p.id, label=p.name, value=sum((weighted[s.id] for q, s, _, _ in stages if q is p), zero),
                                 sample_size=sum(n for q, _, n, _ in stages if q is p),
                                 details={"amount": sum((a for q, _, _, a in stages if q is p), zero)}) for p in pipelines]
    else:
        rows_out = [BreakdownRow(key=s.id, label=s.name if len(pipelines) == 1 else f"{p.name}: {s.name}", value=weighted[s.id],
                                 sample_size=n, details={"amount": amount, "probability": s.probability})
                    for p, s, n, amount in stages]
    return MetricResult(name="forecast.weighted_pipeline", unit="money", value=sum(weighted.values(), zero),
                        sample_size=sum(n for _, _, n, _ in stages), currency=code, group_by=params.group_by or "stage",
                        breakdown=rows_out, details={"amount": sum((a for _, _, _, a in stages), zero)})


def historical(crm: CRM, params: MetricParams) -> MetricResult:
    """Expected won revenue of the open deals expected to close in the period
    (``expected_close``), each weighted by the observed conversion of its current stage:
    of the closed (won or lost) deals that ever entered that stage, the share that was won.

    Breakdown per stage: ``value`` the stage's forecast, with its open amount, deal count and
    conversion. A stage no closed deal has passed through has no conversion (None) and
    contributes nothing; such deals are counted in ``details['unrated_deals']``.
    """
    code = currency(crm, params)
    with crm.read() as uow:
        scope = DealScope(uow, params)
        d, changes = scope.deals, uow.table("stage_changes")
        won_ids = sa.case((d.c.status == WON, d.c.id))
        history = DealScope(uow, params)
        history.source = history.source.join(changes, changes.c.deal_id == d.c.id)
        history.group = changes.c.to_stage_id
        conversion = {key: (int(won), int(closed)) for key, won, closed in rows(uow, history.select(
            sa.func.count(sa.distinct(won_ids)), sa.func.count(sa.distinct(d.c.id)), where=[d.c.status.in_((WON, LOST))]))}
        scope.group = d.c.stage_id
        window = [] if params.period is None else [d.c.expected_close >= params.period.start.date(), d.c.expected_close < params.period.end.date()]
        open_deals = rows(uow, scope.select(sa.func.sum(raw_money(d.c.amount)), sa.func.count(),
                                             where=[d.c.status == OPEN, d.c.currency == code, *window]))
        entries = []
        total, deals, unrated = Decimal(0), 0, 0
        for stage_id, raw_amount, count in open_deals:  # one row per stage
            won, closed = conversion.get(stage_id, (0, 0))
            rate = Decimal(won) / Decimal(closed) if closed else None
            amount = money(raw_amount)
            value = (amount * rate).quantize(MONEY_QUANTUM) if rate is not None else None
            total += value or 0
            deals += int(count)
            unrated += 0 if rate is not None else int(count)
            entries.append((stage_id, value, int(count), {"amount": amount, "conversion": None if rate is None else float(rate),
                                                          "closed_deals_observed": closed}))
        rows_out = breakdown(uow, "stage", entries)
    return MetricResult(name="forecast.historical", unit="money", value=total if deals else None, sample_size=deals,
                        period=params.period.label if params.period else None, currency=code, group_by="stage",
                        breakdown=rows_out, details={"unrated_deals": unrated})


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("forecast.weighted_pipeline", "Open deal amounts × their stage's probability, now (one currency).",
                         "money", weighted_pipeline, group_by=("stage", "pipeline"), filters=("pipeline",), uses_period=False),
        MetricDefinition("forecast.historical",
                         "Open deals expected to close in the period × their stage's observed conversion to won.",
                         "money", historical, group_by=("stage",), filters=("owner", "pipeline")),
    ]
