"""Golden tests for crmkit.reports on a small fixed history, on every database backend.

The expected numbers are worked out by hand in the comments below, from the definitions in
:func:`crmkit.reports.funnel` and :func:`crmkit.reports.weighted_pipeline`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from crmkit import reports
from crmkit.errors import ValidationFailed

STAGES = [("Lead", 0.1, "open"), ("Qualified", 0.25, "open"), ("Proposal", 0.5, "open"), ("Won", 1, "won"), ("Lost", 0, "lost")]
START = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)

# title: (amount, currency, first stage, then moves). Positions: Lead 0, Qualified 1, Proposal 2,
# Won/Lost are outcomes. "Depth" = furthest open stage reached, a won deal beyond all of them.
HISTORY = {
    "D1": ("1000", "USD", "Lead", ["Qualified", "Proposal", "Won"]),  # depth: won
    "D2": ("500", "USD", "Lead", ["Qualified", "Lost"]),  # depth: Qualified; lost
    "D3": ("200.50", "USD", "Lead", []),  # depth: Lead; open in Lead
    "D4": ("300", "EUR", "Lead", ["Qualified"]),  # depth: Qualified; open in Qualified
    "D5": ("1000", "USD", "Proposal", []),  # created in Proposal: depth Proposal; open there
    "D6": ("400", "USD", "Lead", ["Proposal", "Qualified"]),  # moved back: depth Proposal; open in Qualified
    "D7": ("100", "USD", "Lead", ["Lost"]),  # depth: Lead; lost
    "D8": ("50", "USD", "Lead", ["Won", "Proposal", "Lost"]),  # won, re-opened, lost: depth won
}


def build_history(crm):
    crm.pipelines.create("Sales", STAGES)
    # Another pipeline's deals must not leak into the Sales reports.
    crm.pipelines.create("Renewals", [("Open", 0.5, "open"), ("Renewed", 1, "won")])
    crm.deals.create({"title": "R1", "pipeline": "Renewals", "amount": "999", "created_at": START})
    for offset, (title, (amount, currency, first, moves)) in enumerate(HISTORY.items()):
        at = START + timedelta(days=offset)
        deal = crm.deals.create({"title": title, "pipeline": "Sales", "stage": first, "amount": amount,
                                 "currency": currency, "created_at": at})
        for step, stage in enumerate(moves, start=1):
            crm.deals.move(deal.id, stage, at=at + timedelta(hours=step), lost_reason="price" if stage == "Lost" else None)


def test_funnel_counts_deals_that_reached_at_least_each_stage(any_crm):
    build_history(any_crm)
    report = reports.funnel(any_crm, "Sales")

    # Depths: Lead {D3, D7}, Qualified {D2, D4}, Proposal {D5, D6}, won {D1, D8}.
    # Reached at least Lead: all 8; Qualified: 8 - 2 = 6; Proposal: 6 - 2 = 4.
    assert [(s.stage.name, s.reached, s.drop_off) for s in report.stages] == [("Lead", 8, 0), ("Qualified", 6, 2), ("Proposal", 4, 2)]
    assert [s.from_previous for s in report.stages] == [None, pytest.approx(6 / 8), pytest.approx(4 / 6)]
    assert [s.from_first for s in report.stages] == [1.0, 0.75, 0.5]
    # Won was entered by D1 and D8; Lost by D2, D7 and D8 (D8 after being re-opened).
    assert [(o.stage.name, o.entered, o.from_first) for o in report.outcomes] == [("Won", 2, 0.25), ("Lost", 3, 0.375)]
    assert (report.deals, report.won, report.lost) == (8, 2, 3)
    assert report.win_rate == pytest.approx(2 / 5)


def test_weighted_pipeline_sums_open_deals_per_stage_and_currency(any_crm):
    build_history(any_crm)
    report = reports.weighted_pipeline(any_crm, "Sales")

    # Open deals: D3 Lead 200.50 USD; D4 Qualified 300 EUR; D6 Qualified 400 USD; D5 Proposal 1000 USD.
    assert [(s.stage.name, s.deals) for s in report.stages] == [("Lead", 1), ("Qualified", 2), ("Proposal", 1)]
    assert [s.amount for s in report.stages] == [
        {"USD": Decimal("200.50")}, {"EUR": Decimal("300"), "USD": Decimal("400")}, {"USD": Decimal("1000")},
    ]
    # 200.50 × 0.1 = 20.05; 300 × 0.25 = 75 and 400 × 0.25 = 100; 1000 × 0.5 = 500.
    assert [s.weighted for s in report.stages] == [
        {"USD": Decimal("20.05")}, {"EUR": Decimal("75"), "USD": Decimal("100")}, {"USD": Decimal("500")},
    ]
    assert report.deals == 4
    assert report.amount == {"EUR": Decimal("300"), "USD": Decimal("1600.50")}
    assert report.weighted == {"EUR": Decimal("75"), "USD": Decimal("620.05")}


def test_reports_on_an_empty_pipeline_have_no_ratios_and_no_values(any_crm):
    pipeline = any_crm.pipelines.create("Empty", STAGES)
    funnel = reports.funnel(any_crm, pipeline)
    assert [(s.reached, s.from_previous, s.from_first, s.drop_off) for s in funnel.stages] == [
        (0, None, None, 0), (0, None, None, 0), (0, None, None, 0),
    ]
    assert [(o.entered, o.from_first) for o in funnel.outcomes] == [(0, None), (0, None)]
    assert (funnel.deals, funnel.win_rate) == (0, None)

    weighted = reports.weighted_pipeline(any_crm, pipeline.id)
    assert [(s.stage.name, s.deals, s.amount, s.weighted) for s in weighted.stages] == [
        ("Lead", 0, {}, {}), ("Qualified", 0, {}, {}), ("Proposal", 0, {}, {}),
    ]
    assert (weighted.deals, weighted.amount, weighted.weighted) == (0, {}, {})


def test_unknown_pipeline_is_a_validation_error_naming_the_field(crm):
    with pytest.raises(ValidationFailed) as caught:
        reports.funnel(crm, "Nope")
    assert [issue.field for issue in caught.value.issues] == ["pipeline"]


def test_funnel_agrees_with_the_definition_applied_to_each_deals_history(crm):
    """A seeded random history, checked against the docstring's definition computed in Python
    from ``crm.deals.history`` — an independent reading of the same data."""
    rng = random.Random(5)
    pipeline = crm.pipelines.create("Sales", STAGES)
    names = [s.name for s in pipeline.stages]
    for number in range(60):
        at = START + timedelta(days=number)
        deal = crm.deals.create({"title": f"R{number}", "pipeline": "Sales", "stage": rng.choice(names[:3]), "created_at": at})
        current = crm.deals.get(deal.id).stage_id
        for step in range(rng.randrange(4)):
            target = rng.choice([s for s in pipeline.stages if s.id != current])
            crm.deals.move(deal.id, target.id, at=at + timedelta(hours=step + 1))
            current = target.id

    by_id = {s.id: s for s in pipeline.stages}
    histories = [[by_id[c.to_stage_id] for c in crm.deals.history(d.id)] for d in crm.deals.list(limit=None)]
    def reached(history, stage):  # entered this stage, a later open one, or a won one
        return any(s.outcome == "won" or (s.outcome == "open" and s.position >= stage.position) for s in history)

    report = reports.funnel(crm, "Sales")
    assert [s.reached for s in report.stages] == [sum(reached(h, s.stage) for h in histories) for s in report.stages]
    assert [o.entered for o in report.outcomes] == [sum(o.stage in h for h in histories) for o in report.outcomes]
    assert report.deals == len(histories) == 60
