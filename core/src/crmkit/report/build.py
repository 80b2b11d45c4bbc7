"""Build the dashboard: compute the numbers through the metrics registry and
:mod:`crmkit.reports`, turn them into tiles and charts, and render one self-contained HTML file.

:func:`build_dashboard` gathers everything into a :class:`Dashboard` (plain data, so tests can
check the numbers without parsing HTML); :func:`render_dashboard` renders it with the packaged
Jinja2 template (autoescaped); :func:`write_report` does both and writes the file atomically,
so a failed build never leaves a half-written report behind.

What is measured over the report's period: win rate, average deal size, sales cycle, velocity,
CAC, activity per user and every trend. What is measured now, whatever the period: the funnel
(the whole stage history), the weighted pipeline and the forecast of open deals, and overdue
tasks (at the period's end). Metrics plugins register are drawn too: any metric named like
``nps`` under "NPS trend", any other plugin metric computed for a period under "More trends".
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import jinja2
import sqlalchemy as sa
from markupsafe import Markup

from crmkit import reports
from crmkit.errors import FieldIssue, ValidationFailed
from crmkit.metrics import MetricResult, Period
from crmkit.report import charts
from crmkit.report.charts import Bar

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Pipeline
    from crmkit.metrics import Metric, Metrics

#: The plugin that registers the core's metrics; metrics of any other plugin are "more trends".
CORE_METRICS_PLUGIN = "crmkit.builtin.core_metrics"
#: Default period: this month and the eleven before it (today included).
DEFAULT_MONTHS = 12
NPS_NAME = re.compile(r"(?<![a-z])nps(?![a-z])", re.IGNORECASE)
UNDEFINED = "—"


# --- the dashboard as data ---------------------------------------------------------------


@attrs.frozen
class Tile:
    """One headline number: ``value`` raw (None when undefined), ``text`` formatted."""

    key: str
    label: str
    metric: str
    value: float | None
    text: str
    note: str


@attrs.frozen
class Chart:
    key: str
    title: str
    svg: Markup = attrs.field(repr=False)
    caption: str = ""
    pipeline: str | None = None


@attrs.frozen
class Section:
    key: str
    title: str
    charts: list[Chart]


@attrs.frozen
class Dashboard:
    crm: str
    period: Period
    pipeline: str | None
    currency: str
    generated_at: datetime
    tiles: list[Tile]
    sections: list[Section]

    def chart_names(self) -> list[str]:
        return [chart.key for section in self.sections for chart in section.charts]


# --- formatting --------------------------------------------------------------------------


def format_value(value: Any, unit: str, currency: str | None = None, *, cents: bool = True) -> str:
    """A metric value for display in its unit; ``—`` when undefined. ``cents=False`` rounds
    money to whole units (chart labels are narrow)."""
    if value is None:
        return UNDEFINED
    number = float(value)
    if unit == "ratio":
        return f"{number:.1%}"
    if unit == "money":
        return f"{currency or ''} {Decimal(value):,.{2 if cents else 0}f}".strip()
    if unit == "money_per_day":
        return f"{currency or ''} {number:,.2f}/day".strip()
    if unit == "days":
        return f"{number:,.1f} days"
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def default_period(today: date) -> Period:
    """The current month and the ``DEFAULT_MONTHS - 1`` before it, up to and including today."""
    months_back = DEFAULT_MONTHS - 1
    year, month = divmod(today.year * 12 + today.month - 1 - months_back, 12)
    return Period.parse(f"{date(year, month + 1, 1)}..{today}")


def _crm_label(crm: CRM) -> str:
    """The database the report is about, without a password in it."""
    return sa.engine.make_url(crm.config.database_url).render_as_string(hide_password=True)


# --- gathering ---------------------------------------------------------------------------


@attrs.define
class _Scope:
    """The metrics of one CRM and the parameters every metric of the report shares."""

    registry: Metrics
    period: Period
    pipeline: Pipeline | None
    currency: str

    def has(self, name: str) -> bool:
        return name in self.registry.registry

    def compute(self, name: str, *, by: str | None = None, series: bool = False, dated: bool = True) -> MetricResult | None:
        """Metric ``name`` for the report's period (when ``dated`` and it uses one), pipeline
        (when it filters by pipeline) and currency; None when no plugin registers it."""
        if not self.has(name):
            return None
        metric: Metric = self.registry.get(name)
        filters = {"pipeline": self.pipeline.id} if self.pipeline is not None and "pipeline" in metric.filters else {}
        period = self.period if dated and metric.uses_period else None
        return self.registry.compute(name, period=period, by=by, filters=filters, currency=self.currency,
                                     series=series and period is not None)


def _tile(scope: _Scope, key: str, label: str, name: str, note: Callable[[MetricResult], str], *, dated: bool = True) -> Tile:
    result = scope.compute(name, dated=dated)
    if result is None:
        return Tile(key, label, name, None, UNDEFINED, f"metric {name} is not registered")
    text = format_value(result.value, result.unit, result.currency)
    explained = note(result) if result.value is not None else "no data for this period" if dated else "no data"
    return Tile(key, label, name, _float(result.value), text, explained)


def _tiles(scope: _Scope) -> list[Tile]:
    def money(key: str) -> Callable[[MetricResult], str]:
        return lambda r: format_value(r.details.get(key), "money", r.currency)

    return [
        _tile(scope, "win_rate", "Win rate", "sales.win_rate",
              lambda r: f"{r.details.get('won', 0):,} won of {_plural(r.sample_size, 'closed deal')}"),
        _tile(scope, "average_deal_size", "Average deal size", "sales.average_deal_size",
              lambda r: f"over {_plural(r.sample_size, 'won deal')}"),
        _tile(scope, "sales_cycle", "Sales cycle", "sales.cycle_length",
              lambda r: f"creation to win, {_plural(r.sample_size, 'won deal')}"),
        _tile(scope, "velocity", "Sales velocity", "sales.velocity",
              lambda r: f"{_plural(int(r.details.get('opportunities', 0)), 'new deal')}"),
        _tile(scope, "cac", "Customer acquisition cost", "acquisition.cac",
              lambda r: f"spend {money('spend')(r)} ÷ {_plural(r.sample_size, 'new customer')}"),
        _tile(scope, "weighted_pipeline", "Weighted pipeline", "forecast.weighted_pipeline",
              lambda r: f"of {money('amount')(r)} open in {_plural(r.sample_size, 'deal')}", dated=False),
        _tile(scope, "overdue_tasks", "Overdue tasks", "activity.overdue_tasks",
              lambda r: f"of {_plural(r.sample_size, 'open task')} with a due date"),
    ]


def _missing(key: str, title: str, name: str) -> Chart:
    return Chart(key, title, charts.empty_chart(key, title, f"metric {name} is not registered"))


def _funnel(crm: CRM, pipeline: Pipeline, several: bool) -> Chart:
    report = reports.funnel(crm, pipeline)
    first = report.stages[0].reached if report.stages else 0

    def share(count: int) -> str:
        return f"{count:,}" + (f" ({count / first:.0%})" if first else "")

    stages = [Bar(s.stage.name, s.reached, share(s.reached)) for s in report.stages]
    outcomes = [Bar(o.stage.name, o.entered, share(o.entered), tone=o.stage.outcome.value) for o in report.outcomes]
    title = f"Funnel: {pipeline.name}" if several else "Funnel"
    caption = (f"{_plural(report.deals, 'deal')} in the stage history; deals that reached at least each stage "
               f"(share of the first), then the outcomes. Win rate of closed deals: {format_value(report.win_rate, 'ratio')}.")
    return Chart("funnel", title, charts.funnel_chart("funnel", title, stages, outcomes, empty="No deals in this pipeline yet"),
                 caption, pipeline=pipeline.name)


def _money_bar(label: str, value: Any, currency: str | None, extra: str = "") -> Bar:
    return Bar(label, _float(value), format_value(value, "money", currency, cents=False) + extra)


def _pipeline_charts(crm: CRM, scope: _Scope, pipelines: Sequence[Pipeline]) -> list[Chart]:
    found = [_funnel(crm, p, len(pipelines) > 1) for p in pipelines]
    if not pipelines:
        found.append(Chart("funnel", "Funnel", charts.empty_chart("funnel", "Funnel", "No pipelines yet")))

    key, title = "weighted_pipeline", f"Weighted pipeline by stage ({scope.currency})"
    weighted = scope.compute("forecast.weighted_pipeline", dated=False)
    if weighted is None:
        found.append(_missing(key, title, "forecast.weighted_pipeline"))
    else:
        bars = [_money_bar(r.label, r.value, weighted.currency, f" of {format_value(r.details.get('amount'), 'money', cents=False)}")
                for r in weighted.breakdown]
        found.append(Chart(key, title, charts.bar_chart(key, title, bars, empty="No open deals"),
                           "Open deals now: amount × the stage's probability, of the open amount."))

    key, title = "forecast", f"Forecast of open deals ({scope.currency})"
    historical = scope.compute("forecast.historical", dated=False)
    if weighted is None or historical is None:
        found.append(_missing(key, title, "forecast.historical" if weighted else "forecast.weighted_pipeline"))
    else:
        observed = {r.key: r for r in historical.breakdown}
        by_probability = [_money_bar(r.label, r.value, weighted.currency) for r in weighted.breakdown]
        by_conversion = []
        for r in weighted.breakdown:
            row = observed.get(r.key)
            conversion = None if row is None else row.details.get("conversion")
            extra = "" if conversion is None else f" ({conversion:.0%} won)"
            by_conversion.append(_money_bar(r.label, None if row is None else row.value, historical.currency, extra))
        svg = charts.grouped_bar_chart(key, title, {"by stage probability": by_probability, "by observed conversion": by_conversion},
                                       empty="No open deals")
        found.append(Chart(key, title, svg, "Expected won revenue of the open deals: weighted by each stage's probability, and by "
                                            "the share of closed deals that passed through the stage and were won (— when none has)."))
    return found


def _breakdown_chart(scope: _Scope, key: str, title: str, name: str, by: str, caption: str,
                     detail: Callable[[Any, MetricResult], str] = lambda row, result: "") -> Chart:
    result = scope.compute(name, by=by)
    if result is None:
        return _missing(key, title, name)
    bars = [Bar(r.label, _float(r.value), format_value(r.value, result.unit, result.currency, cents=False) + detail(r, result))
            for r in result.breakdown]
    return Chart(key, title, charts.bar_chart(key, title, bars), caption)


def _series_chart(scope: _Scope, name: str, key: str | None = None, title: str | None = None) -> Chart:
    key = key or f"series:{name}"
    metric = scope.registry.get(name) if scope.has(name) else None
    title = title or (f"{metric.description} ({name})" if metric else name)
    if metric is None:
        return _missing(key, title, name)
    try:
        result = scope.compute(name, series=True)
    except ValidationFailed as exc:  # the metric cannot be computed for the report's parameters
        return Chart(key, title, charts.empty_chart(key, title, f"Not available: {exc}"))
    assert result is not None
    points = [Bar(p.period[:7] if re.match(r"\d{4}-\d{2}", p.period) else p.period, _float(p.value),
                  format_value(p.value, result.unit, result.currency)) for p in result.series]
    defined = [p.value for p in points if p.value is not None]
    low, high = (min(0.0, *defined), max(0.0, *defined)) if defined else (0.0, 0.0)
    svg = charts.line_chart(key, title, points, low=format_value(low, result.unit, result.currency),
                            high=format_value(high, result.unit, result.currency))
    return Chart(key, title, svg, f"Per month; over the whole period: {format_value(result.value, result.unit, result.currency)}.")


def _plugin_series(scope: _Scope) -> tuple[list[str], list[str]]:
    """Names of plugin metrics computed for a period: (named like NPS, the others)."""
    dated = [m.name for m in scope.registry.list() if m.uses_period and scope.registry.owner(m.name) != CORE_METRICS_PLUGIN]
    return [n for n in dated if NPS_NAME.search(n)], [n for n in dated if not NPS_NAME.search(n)]


def _sections(crm: CRM, scope: _Scope) -> list[Section]:
    pipelines = [scope.pipeline] if scope.pipeline is not None else crm.pipelines.list()
    sections = [
        Section("pipeline", "Pipeline", _pipeline_charts(crm, scope, pipelines)),
        Section("acquisition", "Acquisition and activity", [
            _breakdown_chart(scope, "cac_by_channel", f"Customer acquisition cost by channel ({scope.currency})", "acquisition.cac",
                             "channel", "Campaign spend in the period ÷ new customers (first won deal) by their source channel.",
                             lambda r, res: f" = {format_value(r.details.get('spend'), 'money', cents=False)} ÷ "
                                            f"{r.details.get('new_customers', 0)}"),
            _breakdown_chart(scope, "activity_per_user", "Activities per user", "activity.per_user", "owner",
                             "Activities that occurred in the period, by the user who logged them."),
        ]),
        Section("trends", "Trends", [
            _series_chart(scope, "sales.win_rate", title="Win rate per month"),
            _series_chart(scope, "activity.per_user", title="Activities per user per month"),
        ]),
    ]
    nps, others = _plugin_series(scope)
    if nps:
        sections.append(Section("nps", "NPS trend", [_series_chart(scope, name) for name in nps]))
    if others:
        sections.append(Section("more", "More trends", [_series_chart(scope, name) for name in others]))
    return sections


def _parse_options(crm: CRM, period: str | Period, pipeline: str | None, currency: str | None) -> tuple[Period, Pipeline | None, str]:
    """The report's period, pipeline and currency; every bad one is reported at once, by name,
    before any work is done."""
    from crmkit.domain.values import normalize_currency

    issues: list[FieldIssue] = []
    parsed, chosen, code = None, None, crm.config.default_currency
    try:
        parsed = period if isinstance(period, Period) else Period.parse(str(period))
    except ValidationFailed as exc:
        issues.extend(exc.issues)
    if currency not in (None, ""):
        try:
            code = normalize_currency(str(currency))
        except ValidationFailed as exc:
            issues.extend(exc.issues)
    if pipeline not in (None, ""):
        pipelines = crm.pipelines.list()
        chosen = next((p for p in pipelines if pipeline in (p.name, p.id)), None)
        if chosen is None:
            known = ", ".join(sorted(p.name for p in pipelines)) or "none"
            issues.append(FieldIssue("pipeline", "not_found", f"no pipeline named {pipeline!r} (pipelines: {known})"))
    if issues or parsed is None:
        raise ValidationFailed(issues)
    return parsed, chosen, code


def build_dashboard(crm: CRM, *, period: str | Period | None = None, pipeline: str | None = None,
                    currency: str | None = None, now: datetime | None = None) -> Dashboard:
    """Compute everything the dashboard shows.

    :param period: ``2026``, ``2026-Q3``, ``2026-09`` or ``2026-01-01..2026-03-31``; by default
        the current month and the eleven before it.
    :param pipeline: a pipeline's name or id to restrict pipeline-aware metrics to; by default
        all pipelines (one funnel each).
    :param currency: the currency of money metrics (default: the CRM's).
    :raises ValidationFailed: a bad period, currency or unknown pipeline, naming the field.
    """
    from crmkit.domain.values import utcnow

    now = now or utcnow()
    chosen_period, chosen, code = _parse_options(crm, period or default_period(now.date()), pipeline, currency)
    scope = _Scope(crm.metrics, chosen_period, chosen, code)
    return Dashboard(crm=_crm_label(crm), period=chosen_period, pipeline=chosen.name if chosen else None, currency=scope.currency,
                     generated_at=now, tiles=_tiles(scope), sections=_sections(crm, scope))


# --- rendering ---------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    # Built per call: no template environment exists at import time.
    return jinja2.Environment(loader=jinja2.PackageLoader("crmkit.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_dashboard(dashboard: Dashboard) -> str:
    """The dashboard as one HTML document: styles inline, charts as inline SVG, no scripts."""
    period = dashboard.period
    last_day = period.end - timedelta(days=1)
    return _environment().get_template("dashboard.html.j2").render(
        d=dashboard, period_range=f"{period.start:%Y-%m-%d}..{last_day:%Y-%m-%d}",
        generated=f"{dashboard.generated_at:%Y-%m-%d %H:%M} UTC")


def write_report(crm: CRM, out: str | os.PathLike[str], **options: Any) -> Dashboard:
    """Build the dashboard and write it to ``out`` (replacing it only once fully rendered)."""
    target = Path(out)
    if not target.parent.is_dir():
        raise ValidationFailed.single("out", "not_found", f"directory {target.parent} does not exist")
    dashboard = build_dashboard(crm, **options)
    html = render_dashboard(dashboard)
    # A sibling file renamed over the target: readers never see half a report, and the file
    # gets the usual permissions (``mkstemp`` would make it private).
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as stream:
            stream.write(html)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return dashboard
