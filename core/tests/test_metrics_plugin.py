"""Metrics from plugins, and the ``crmkit metrics`` command line."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.errors import PluginError
from crmkit.metrics import MetricDefinition, MetricParams, MetricResult, metrics
from crmkit.metrics.sql import rows, within


def new_contacts(crm, params: MetricParams) -> MetricResult:
    """Contacts created in the period: a plugin's own metric, computed with one COUNT."""
    with crm.read() as uow:
        contacts = uow.table("contacts")
        count = int(rows(uow, sa.select(sa.func.count()).select_from(contacts).where(*within(contacts.c.created_at, params.period)))[0][0])
    return MetricResult(name="house.new_contacts", unit="count", value=count, sample_size=count,
                        period=params.period.label if params.period else None)


class HouseMetrics:
    crmkit_plugin_name = "house-metrics"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("house.new_contacts", "Contacts created in the period.", "count", new_contacts))


class Clashing:
    crmkit_plugin_name = "clashing-metrics"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("sales.win_rate", "Mine.", "ratio", new_contacts))


class BadUnit:
    crmkit_plugin_name = "bad-unit"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("house.odd", "Odd.", "furlongs", new_contacts))


def test_a_plugin_metric_is_listed_and_computed(crm_factory):
    crm = crm_factory(plugins=[HouseMetrics()])
    crm.contacts.create({"first_name": "Ada"})
    crm.contacts.create({"first_name": "Bo"})
    found = metrics(crm)
    assert "house.new_contacts" in [m.name for m in found.list()]
    assert found.owner("house.new_contacts") == "house-metrics"
    this_year = str(datetime.now(UTC).year)
    assert found.compute("house.new_contacts", period=this_year).value == 2
    assert found.compute("house.new_contacts", period="2001").value == 0
    assert found.compute("house.new_contacts").value == 2


def test_a_metric_name_taken_twice_names_both_plugins(crm_factory):
    with pytest.raises(PluginError) as caught:  # crm.metrics is collected when the CRM opens
        crm_factory(plugins=[Clashing()])
    assert "clashing-metrics" in str(caught.value) and "crmkit.builtin.core_metrics" in str(caught.value)


def test_an_unknown_unit_is_refused(crm_factory):
    with pytest.raises(PluginError, match="furlongs"):
        crm_factory(plugins=[BadUnit()])


def seed(crm):
    crm.pipelines.create("Sales", [("Lead", 0.1), ("Won", 1, "won"), ("Lost", 0, "lost")])
    for title, stage, when in (("A", "Won", 5), ("B", "Lost", 6), ("C", "Won", 20)):
        deal = crm.deals.create({"title": title, "pipeline": "Sales", "amount": "100", "created_at": datetime(2026, 9, 1, tzinfo=UTC)})
        crm.deals.move(deal.id, stage, at=datetime(2026, 9 if when < 15 else 10, when, tzinfo=UTC))


def test_cli_lists_metrics_as_json(cli):
    listed = cli.json("metrics", "list")
    names = [m["name"] for m in listed]
    assert names == sorted(names) and "sales.win_rate" in names and "acquisition.cac" in names
    assert all(m["description"] for m in listed)


def test_cli_shows_a_metric_as_json_csv_and_a_table(cli, crm):
    seed(crm)
    # Closed in Q3: A won (09-05), B lost (09-06); C was won in October.
    shown = cli.json("metrics", "show", "sales.win_rate", "--period", "2026-Q3")
    assert (shown["value"], shown["sample_size"], shown["period"]) == (0.5, 2, "2026-Q3")

    result = cli("metrics", "show", "sales.win_rate", "--period", "2026", "--series", "--csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert table[0] == {"row": "total", "key": "", "label": "", "value": str(2 / 3), "sample_size": "3"}
    months = {r["key"]: (r["value"], r["sample_size"]) for r in table if r["row"] == "series"}
    assert (months["2026-08"], months["2026-09"], months["2026-10"]) == (("", "0"), ("0.5", "2"), ("1.0", "1"))

    result = cli("metrics", "show", "sales.win_rate", "--period", "2026-Q3", "--by", "pipeline")
    assert result.exit_code == 0 and "sales.win_rate: 0.5 ratio" in result.stdout and "Sales" in result.stdout


def test_cli_rejects_bad_parameters(cli):
    result = cli("metrics", "show", "sales.win_rate", "--period", "Q3")
    assert result.exit_code == 1 and "period:" in result.stderr
    result = cli("metrics", "show", "sales.funnel", "--by", "owner")
    assert result.exit_code == 1 and "by:" in result.stderr
    result = cli("metrics", "show", "sales.win_rate", "--by", "colour")
    assert result.exit_code == 2
    result = cli("metrics", "show", "nothing.here")
    assert result.exit_code == 1 and "no metric named 'nothing.here'" in result.stderr
