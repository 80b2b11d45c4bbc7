"""``crmkit report --out FILE``: a built-in plugin contributing the dashboard command. The
command only parses options and prints; the work is :mod:`crmkit.report`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import say
from crmkit.plugins import hookimpl


def report_command() -> click.Command:
    @click.command("report")
    @click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True), metavar="FILE",
                  help="Where to write the HTML dashboard (replaced if it exists).")
    @click.option("--period", default=None, metavar="PERIOD",
                  help="2026, 2026-Q3, 2026-09 or 2026-01-01..2026-03-31 (default: this month and the eleven before).")
    @click.option("--pipeline", default=None, metavar="NAME", help="Restrict pipeline metrics to this pipeline (default: all).")
    @click.option("--currency", default=None, help="Currency of money metrics (default: the CRM's).")
    @pass_crm
    def report(crm: Any, out: str, period: str | None, pipeline: str | None, currency: str | None) -> None:
        """Write a self-contained HTML dashboard (no scripts, no network) of the CRM's metrics."""
        from crmkit.report import write_report

        dashboard = write_report(crm, out, period=period, pipeline=pipeline, currency=currency)
        say(f"Wrote {out}: period {dashboard.period.label}, {len(dashboard.tiles)} figures, {len(dashboard.chart_names())} charts.")

    return report


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(report_command())
