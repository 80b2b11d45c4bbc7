"""The metrics a CRM offers, collected from every plugin's ``crmkit_register_metrics``.

:class:`Metrics` is built per call from the CRM's plugins (collecting is a handful of hook
calls), so nothing is cached at import time and two CRMs never share metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from crmkit.errors import PluginError, ValidationFailed
from crmkit.metrics.protocol import UNITS, Metric, MetricResult, Period, SeriesPoint, parse_params
from crmkit.plugins import Plugins, Registry

if TYPE_CHECKING:
    from crmkit.app import CRM


def collect_metrics(plugins: Plugins) -> Registry[Metric]:
    """Every metric registered through ``crmkit_register_metrics``, remembering its plugin."""
    registry: Registry[Metric] = Registry("metric", key=lambda m: getattr(m, "name", None))
    plugins.collect("crmkit_register_metrics", registry)
    for name, metric in registry.items():
        owner = registry.owners[name]
        if not isinstance(metric, Metric):
            raise PluginError(owner, f"metric {name!r} lacks name, description, unit, group_by, filters, uses_period or compute()")
        if metric.unit not in UNITS:
            raise PluginError(owner, f"metric {name!r} has unit {metric.unit!r}; units are: {', '.join(UNITS)}")
    return registry


@attrs.define
class Metrics:
    """The metrics of one CRM: list them, compute one by name."""

    crm: CRM
    registry: Registry[Metric]

    @classmethod
    def of(cls, crm: CRM) -> Metrics:
        return cls(crm, collect_metrics(crm.plugins))

    def list(self) -> list[Metric]:
        return [self.registry[name] for name in sorted(self.registry)]

    def owner(self, name: str) -> str:
        return self.registry.owners[name]

    def get(self, name: str) -> Metric:
        """The metric called ``name``, or the only one whose name ends in ``.name`` — so
        ``funnel`` finds ``sales.funnel`` as long as no other plugin has a ``*.funnel``."""
        if name in self.registry:
            return self.registry[name]
        matches = sorted(full for full in self.registry if full.endswith(f".{name}"))
        if len(matches) == 1:
            return self.registry[matches[0]]
        if matches:
            raise ValidationFailed.single("metric", "ambiguous", f"{name!r} could be any of: {', '.join(matches)}; give the full name")
        known = ", ".join(sorted(self.registry)) or "none"
        raise ValidationFailed.single("metric", "not_found", f"no metric named {name!r} (metrics: {known})")

    def compute(
        self,
        name: str,
        *,
        period: str | Period | None = None,
        by: str | None = None,
        filters: Mapping[str, str] | None = None,
        currency: str | None = None,
        series: bool = False,
    ) -> MetricResult:
        """Compute metric ``name``; bad parameters raise :class:`ValidationFailed` naming them.

        With ``series`` the metric is computed once more per calendar month of the period (a
        dozen aggregate queries for a year), which works for every metric without each having
        to know how to group by month on three SQL dialects.
        """
        metric = self.get(name)
        params = parse_params(metric, period=period, by=by, filters=filters, currency=currency, series=series)
        result = metric.compute(self.crm, params)
        if params.series and params.period is not None:
            points = []
            for month in params.period.months():
                part = metric.compute(self.crm, attrs.evolve(params, period=month, group_by=None, series=False))
                points.append(SeriesPoint(month.label, part.value, part.sample_size))
            result = attrs.evolve(result, series=points)
        return result


def metrics(crm: CRM) -> Metrics:
    """The metrics ``crm``'s plugins offer."""
    return Metrics.of(crm)
