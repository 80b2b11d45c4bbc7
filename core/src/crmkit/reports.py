"""Pipeline reports computed in the database: the stage funnel and the weighted pipeline.

Both push the counting and summing down to SQL (``GROUP BY`` over ``stage_changes`` and
``deals``); Python only combines the handful of aggregate rows that come back (at most one per
stage), so the cost does not grow with the number of deals on the Python side.

The metric framework of a later issue builds on these; the demo and the CLI print them.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs
import sqlalchemy as sa

from crmkit.domain import Pipeline, Stage
from crmkit.domain.values import Outcome
from crmkit.services.sales import load_pipeline

if TYPE_CHECKING:
    from crmkit.app import CRM

#: Weighted values are rounded to the precision money is stored with (four decimal places).
MONEY_QUANTUM = Decimal("0.0001")


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


@attrs.frozen
class FunnelStage:
    """One open stage of the funnel.

    :ivar reached: deals that reached at least this stage (see :func:`funnel`).
    :ivar from_previous: ``reached`` / the previous open stage's ``reached`` (None for the
        first stage, or when the previous stage was reached by no deal).
    :ivar from_first: ``reached`` / the first open stage's ``reached`` (None when empty).
    :ivar drop_off: deals that reached the previous stage but not this one (0 for the first).
    """

    stage: Stage
    reached: int
    from_previous: float | None
    from_first: float | None
    drop_off: int


@attrs.frozen
class OutcomeStage:
    """A won or lost stage: how many distinct deals ever entered it."""

    stage: Stage
    entered: int
    from_first: float | None


@attrs.frozen
class FunnelReport:
    """The funnel of one pipeline: open stages in order, then the won/lost stages.

    :ivar deals: distinct deals with any stage change into this pipeline.
    """

    pipeline: Pipeline
    stages: list[FunnelStage]
    outcomes: list[OutcomeStage]
    deals: int

    def _entered(self, outcome: Outcome) -> int:
        return sum(o.entered for o in self.outcomes if o.stage.outcome == outcome)

    @property
    def won(self) -> int:
        return self._entered(Outcome.WON)

    @property
    def lost(self) -> int:
        return self._entered(Outcome.LOST)

    @property
    def win_rate(self) -> float | None:
        """Won entries / (won + lost entries): the share of closed deals that were won."""
        return ratio(self.won, self.won + self.lost)


def _pipeline(crm: CRM, pipeline: Pipeline | str) -> Pipeline:
    if isinstance(pipeline, Pipeline) and pipeline.stages:
        return pipeline
    with crm.read() as uow:
        return load_pipeline(uow, pipeline.id if isinstance(pipeline, Pipeline) else pipeline)


def funnel(crm: CRM, pipeline: Pipeline | str) -> FunnelReport:
    """The stage funnel of ``pipeline`` (a :class:`Pipeline`, its name or its id), from the
    stage history (``stage_changes``), not from where deals are now.

    **Reached.** A deal *reached* an open stage S when its history shows it entering S, a
    later open stage (higher position) of the same pipeline, or any won stage: the
    conventional funnel count, "deals that got at least this far". A deal created directly in
    Proposal therefore counts for Lead and Qualified too, and a won deal counts for every open
    stage. Entering a lost stage reaches nothing: a deal lost from Qualified counts for Lead and
    Qualified only. A deal counts once per stage however often it moved back and forth.

    **Conversion.** ``from_previous`` is reached(S) / reached(previous open stage),
    ``from_first`` is reached(S) / reached(first open stage), ``drop_off`` the difference to the
    previous stage. Ratios are None rather than a division by zero when nothing was reached.

    **Outcomes.** Won and lost stages are reported apart from the open-stage progression, as
    the number of distinct deals that ever entered each (a deal re-opened after being won and
    later lost counts in both).
    """
    pipeline = _pipeline(crm, pipeline)
    stages = sorted(pipeline.stages, key=lambda s: s.position)
    beyond_open = max((s.position for s in stages), default=0) + 1
    with crm.read() as uow:
        changes, stage_table = uow.table("stage_changes"), uow.table("stages")
        entered = sa.join(changes, stage_table, stage_table.c.id == changes.c.to_stage_id)
        in_pipeline = stage_table.c.pipeline_id == pipeline.id
        # Each deal's depth: the furthest open position it entered; a won stage is beyond every
        # open stage and a lost one (-1) before all of them.
        depth = sa.case(
            (stage_table.c.outcome == Outcome.WON.value, beyond_open),
            (stage_table.c.outcome == Outcome.LOST.value, -1),
            else_=stage_table.c.position,
        )
        # One pass over the history: per deal its depth and, per won/lost stage, whether it
        # entered it; then one row per depth with the deal count and the sums of those flags.
        closing = [s for s in stages if s.outcome != Outcome.OPEN]
        flags = [sa.func.max(sa.case((changes.c.to_stage_id == s.id, 1), else_=0)).label(f"entered_{i}") for i, s in enumerate(closing)]
        per_deal = (
            sa.select(changes.c.deal_id, sa.func.max(depth).label("depth"), *flags)
            .select_from(entered).where(in_pipeline).group_by(changes.c.deal_id).subquery("deal_depths")
        )
        found = uow.connection.execute(  # type: ignore[union-attr]
            sa.select(per_deal.c.depth, sa.func.count(), *(sa.func.sum(per_deal.c[f"entered_{i}"]) for i in range(len(closing))))
            .group_by(per_deal.c.depth)
        ).all()
    histogram = {int(row[0]): int(row[1]) for row in found}
    outcome_counts = {s.id: sum(int(row[2 + i]) for row in found) for i, s in enumerate(closing)}

    open_stages = [s for s in stages if s.outcome == Outcome.OPEN]
    rows: list[FunnelStage] = []
    first = previous = 0
    for index, stage in enumerate(open_stages):
        # At most one histogram row per stage: a cumulative sum, not a loop over deals.
        reached = sum(int(n) for d, n in histogram.items() if int(d) >= stage.position)
        if index == 0:
            first = reached
        rows.append(FunnelStage(
            stage=stage, reached=reached,
            from_previous=ratio(reached, previous) if index else None,
            from_first=ratio(reached, first),
            drop_off=previous - reached if index else 0,
        ))
        previous = reached
    outcomes = [
        OutcomeStage(stage=s, entered=int(outcome_counts.get(s.id, 0)), from_first=ratio(int(outcome_counts.get(s.id, 0)), first))
        for s in stages if s.outcome != Outcome.OPEN
    ]
    return FunnelReport(pipeline=pipeline, stages=rows, outcomes=outcomes, deals=sum(int(n) for n in histogram.values()))


@attrs.frozen
class WeightedStage:
    """Open deals of one stage: their count, and per currency their amount and weighted value
    (amount × the stage's probability)."""

    stage: Stage
    deals: int
    amount: dict[str, Decimal]
    weighted: dict[str, Decimal]


@attrs.frozen
class WeightedPipeline:
    """The weighted value of a pipeline's open deals, per stage and in total, per currency
    (amounts in different currencies are never added together)."""

    pipeline: Pipeline
    stages: list[WeightedStage]
    deals: int
    amount: dict[str, Decimal]
    weighted: dict[str, Decimal]


def _weigh(amount: Decimal, probability: float) -> Decimal:
    # str() gives the probability as it was entered (0.1, not 0.1000000000000000055…), so the
    # product is exact before rounding to money precision.
    value = amount * Decimal(str(probability))
    exponent = value.as_tuple().exponent
    return value.quantize(MONEY_QUANTUM) if isinstance(exponent, int) and exponent < MONEY_QUANTUM.as_tuple().exponent else value


def weighted_pipeline(crm: CRM, pipeline: Pipeline | str) -> WeightedPipeline:
    """Sum of ``amount × stage probability`` over the open deals of ``pipeline``, per stage and
    in total, separately for each currency.

    The database sums amounts per (stage, currency); since a stage has one probability, the
    weighted value of a group is its sum × that probability, computed in :class:`Decimal`.
    """
    pipeline = _pipeline(crm, pipeline)
    with crm.read() as uow:
        deals = uow.table("deals")
        groups = uow.connection.execute(  # type: ignore[union-attr]
            sa.select(deals.c.stage_id, deals.c.currency, sa.func.count(), sa.func.sum(deals.c.amount))
            .where(deals.c.pipeline_id == pipeline.id, deals.c.status == Outcome.OPEN.value)
            .group_by(deals.c.stage_id, deals.c.currency)
        ).all()
    by_stage: dict[str, list[tuple[str, int, Decimal]]] = defaultdict(list)
    for stage_id, currency, count, amount in groups:
        by_stage[stage_id].append((currency, int(count), Decimal(amount)))
    rows: list[WeightedStage] = []
    total_amount: dict[str, Decimal] = defaultdict(Decimal)
    total_weighted: dict[str, Decimal] = defaultdict(Decimal)
    for stage in sorted(pipeline.stages, key=lambda s: s.position):
        if stage.outcome != Outcome.OPEN:
            continue
        found = sorted(by_stage.get(stage.id, []))
        amount = {currency: value for currency, _, value in found}
        weighted = {currency: _weigh(value, stage.probability) for currency, _, value in found}
        for currency in amount:
            total_amount[currency] += amount[currency]
            total_weighted[currency] += weighted[currency]
        rows.append(WeightedStage(stage=stage, deals=sum(n for _, n, _ in found), amount=amount, weighted=weighted))
    return WeightedPipeline(
        pipeline=pipeline, stages=rows, deals=sum(r.deals for r in rows),
        amount=dict(sorted(total_amount.items())), weighted=dict(sorted(total_weighted.items())),
    )
