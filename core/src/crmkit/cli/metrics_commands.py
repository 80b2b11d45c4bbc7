"""``crmkit metrics``: list the metrics plugins offer and compute one.

The group is built per CLI by :func:`metrics_group` (no command objects at import time).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import KEY_VALUE, cell, emit, json_option, print_table, say
from crmkit.metrics import MetricResult, metrics
from crmkit.metrics.protocol import GROUP_BY
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable


def list_command() -> click.Command:
    @click.command("list")
    @json_option
    @pass_crm
    def list_metrics(crm: Any, as_json: bool) -> None:
        """List the metrics every plugin offers."""
        found = metrics(crm)
        entries = [{"name": m.name, "description": m.description, "unit": m.unit, "group_by": list(m.group_by),
                    "filters": list(m.filters), "uses_period": m.uses_period, "plugin": found.owner(m.name)} for m in found.list()]
        emit(as_json, entries, lambda: print_table("Metrics", entries, [
            ("name", lambda e: e["name"]), ("unit", lambda e: e["unit"]), ("by", lambda e: e["group_by"]),
            ("description", lambda e: e["description"]),
        ]))

    return list_metrics


def _csv_rows(result: MetricResult) -> list[dict[str, Any]]:
    """The result as flat rows: the total, then one per breakdown group, then one per month."""
    total = {"row": "total", "key": "", "label": "", "value": result.value, "sample_size": result.sample_size}
    groups = [{"row": result.group_by or "group", "key": r.key or "", "label": r.label, "value": r.value,
               "sample_size": r.sample_size} for r in result.breakdown]
    series = [{"row": "series", "key": p.period, "label": p.period, "value": p.value, "sample_size": p.sample_size}
              for p in result.series]
    return [total, *groups, *series]


def _render(result: MetricResult) -> None:
    scope = " ".join(part for part in (result.period and f"period {result.period}", result.currency) if part)
    say(f"{result.name}: {cell(result.value) or '—'} {result.unit}" + (f" ({scope})" if scope else "")
        + f", sample size {result.sample_size}")
    for key, value in result.details.items():
        click.echo(f"  {key}: {cell(value)}")
    if result.breakdown:
        print_table(f"By {result.group_by}", result.breakdown, [
            (result.group_by or "group", lambda r: r.label), ("value", lambda r: r.value), ("sample size", lambda r: r.sample_size),
        ])
    if result.series:
        print_table("Series", result.series, [("period", lambda p: p.period), ("value", lambda p: p.value),
                                              ("sample size", lambda p: p.sample_size)])


def show_command() -> click.Command:
    @click.command("show")
    @click.argument("name")
    @click.option("--period", default=None, metavar="PERIOD", help="2026, 2026-Q3, 2026-09 or 2026-01-01..2026-03-31.")
    @click.option("--by", default=None, type=click.Choice(GROUP_BY), help="Break the metric down by this dimension.")
    @click.option("--filter", "filters", type=KEY_VALUE, multiple=True, metavar="DIMENSION=VALUE",
                  help="Restrict the data, e.g. --filter pipeline=Sales (repeatable).")
    @click.option("--currency", default=None, help="Currency of money metrics (default: the CRM's).")
    @click.option("--series", is_flag=True, help="Also compute the metric per month of the period.")
    @click.option("--csv", "as_csv", is_flag=True, help="Print CSV rows (total, groups, series).")
    @json_option
    @pass_crm
    def show(crm: Any, name: str, period: str | None, by: str | None, filters: tuple[tuple[str, str], ...],
             currency: str | None, series: bool, as_csv: bool, as_json: bool) -> None:
        """Compute metric NAME."""
        if as_csv and as_json:
            raise click.UsageError("give --json or --csv, not both")
        result = metrics(crm).compute(name, period=period, by=by, filters=dict(filters), currency=currency, series=series)
        if as_csv:
            writer = csv.DictWriter(sys.stdout, fieldnames=["row", "key", "label", "value", "sample_size"], lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in _csv_rows(result))
            return
        emit(as_json, to_jsonable(result), lambda: _render(result))

    return show


def metrics_group() -> click.Group:
    @click.group("metrics")
    def metrics_cli() -> None:
        """Metrics: sales, forecast, acquisition, retention, activity and plugins' own."""

    for command in (list_command(), show_command()):
        metrics_cli.add_command(command)
    return metrics_cli


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(metrics_group())
