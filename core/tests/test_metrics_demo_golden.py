"""Done-when check of issue 5: ``crmkit metrics show funnel --json`` on the demo data returns
the same numbers as a golden query.

The demo's data are built with its own data-building function (``crmkit.demo._populate``: the
intake, deals created and moved through the services) with a fixed seed and a fixed "now", on
every backend. The golden query is written independently of :func:`crmkit.reports.funnel`:
no depth histogram, but per stage an ``EXISTS`` over each deal's history — a deal reached an
open stage if it ever entered that stage, a later open stage or a won stage — and a plain
``COUNT(DISTINCT deal)`` per won/lost stage.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from crmkit import demo, hookimpl
from crmkit.errors import ValidationFailed
from crmkit.metrics import MetricDefinition, MetricResult, metrics
from crmkit.testing import CliRunner

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONTACTS = 80

GOLDEN_REACHED = sa.text("""
    SELECT s.name,
           (SELECT COUNT(*) FROM deals d
            WHERE d.pipeline_id = s.pipeline_id
              AND EXISTS (SELECT 1 FROM stage_changes sc JOIN stages t ON t.id = sc.to_stage_id
                          WHERE sc.deal_id = d.id AND (t.outcome = 'won' OR (t.outcome = 'open' AND t.position >= s.position))))
    FROM stages s JOIN pipelines p ON p.id = s.pipeline_id
    WHERE p.name = :pipeline AND s.outcome = 'open'
    ORDER BY s.position
""")
GOLDEN_ENTERED = sa.text("""
    SELECT s.name, s.outcome, COUNT(DISTINCT sc.deal_id)
    FROM stages s JOIN pipelines p ON p.id = s.pipeline_id LEFT JOIN stage_changes sc ON sc.to_stage_id = s.id
    WHERE p.name = :pipeline AND s.outcome <> 'open'
    GROUP BY s.name, s.outcome, s.position
    ORDER BY s.position
""")
GOLDEN_DEALS = sa.text("""
    SELECT COUNT(DISTINCT sc.deal_id) FROM stage_changes sc JOIN stages s ON s.id = sc.to_stage_id
    JOIN pipelines p ON p.id = s.pipeline_id WHERE p.name = :pipeline
""")


def golden(crm) -> dict:
    """The funnel JSON's numbers, from the golden queries."""
    with crm.backend.engine.connect() as connection:
        reached = connection.execute(GOLDEN_REACHED, {"pipeline": demo.PIPELINE}).all()
        entered = connection.execute(GOLDEN_ENTERED, {"pipeline": demo.PIPELINE}).all()
        deals = connection.execute(GOLDEN_DEALS, {"pipeline": demo.PIPELINE}).scalar_one()
    first = reached[0][1]
    stages = []
    for index, (name, count) in enumerate(reached):
        previous = reached[index - 1][1] if index else None
        stages.append({"label": name, "sample_size": count, "value": count / first,
                       "details": {"reached": count, "drop_off": previous - count if index else 0,
                                   "from_previous": count / previous if index else None}})
    outcomes = [{"label": name, "sample_size": count, "value": count / first, "details": {"entered": count, "outcome": outcome}}
                for name, outcome, count in entered]
    won = sum(count for _, outcome, count in entered if outcome == "won")
    lost = sum(count for _, outcome, count in entered if outcome == "lost")
    return {"value": won / first, "sample_size": first, "breakdown": stages + outcomes,
            "details": {"deals": deals, "won": won, "lost": lost}}


@pytest.fixture
def demo_crm(any_crm):
    demo._populate(any_crm, random.Random(demo.DEFAULT_SEED), CONTACTS, NOW)
    return any_crm


def shown(found: dict) -> dict:
    """The parts of ``metrics show --json`` the golden query computes (ids left out)."""
    return {"value": found["value"], "sample_size": found["sample_size"], "details": found["details"],
            "breakdown": [{key: row[key] for key in ("label", "sample_size", "value", "details")} for row in found["breakdown"]]}


def test_metrics_show_funnel_json_on_the_demo_data_equals_the_golden_query(demo_crm):
    expected = golden(demo_crm)
    # The demo tells a real story: deals in every open stage, won and lost, and drop-off.
    assert expected["sample_size"] > 20 and expected["details"]["won"] > 0 and expected["details"]["lost"] > 0
    assert all(row["sample_size"] > 0 for row in expected["breakdown"])
    assert expected["breakdown"][3]["sample_size"] < expected["sample_size"]  # drop-off by the last open stage

    cli = CliRunner(demo_crm.config.database_url)
    found = cli.json("metrics", "show", "funnel", "--json")
    assert found["name"] == "sales.funnel" and found["group_by"] == "stage"
    assert _approx_equal(shown(found), expected)
    # The full name gives the same answer.
    assert cli.json("metrics", "show", "sales.funnel", "--json") == found


def _approx_equal(found: dict, expected: dict) -> bool:
    """Counts equal exactly; ratios equal to float precision (JSON round-trips floats)."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and found.keys() == expected.keys(), (found, expected)
        return all(_approx_equal(found[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), (found, expected)
        return all(_approx_equal(f, e) for f, e in zip(found, expected, strict=True))
    if isinstance(expected, float):
        assert found == pytest.approx(expected, rel=1e-12), (found, expected)
        return True
    assert found == expected, (found, expected)
    return True


class SurveyFunnel:
    crmkit_plugin_name = "survey-funnel"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("surveys.funnel", "Survey completion funnel.", "ratio",
                                  lambda crm, params: MetricResult("surveys.funnel", "ratio", None, 0), uses_period=False))


def test_a_short_name_two_plugins_share_is_refused_naming_both(crm_factory):
    crm = crm_factory(plugins=[SurveyFunnel()])
    with pytest.raises(ValidationFailed) as caught:
        metrics(crm).compute("funnel")
    [issue] = caught.value.issues
    assert (issue.field, issue.code) == ("metric", "ambiguous")
    assert "sales.funnel" in issue.message and "surveys.funnel" in issue.message
    assert metrics(crm).compute("surveys.funnel").name == "surveys.funnel"
