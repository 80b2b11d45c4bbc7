"""Metrics: named calculations over the CRM's data, computed in the database.

``crmkit.metrics.metrics(crm)`` gives the metrics every plugin registered through
``crmkit_register_metrics`` (the core's own come from ``crmkit.builtin.core_metrics``);
``.compute(name, period="2026-Q3", by="owner")`` computes one.
"""

from crmkit.metrics.protocol import (
    BreakdownRow,
    Metric,
    MetricDefinition,
    MetricParams,
    MetricResult,
    Period,
    SeriesPoint,
    parse_params,
)
from crmkit.metrics.registry import Metrics, collect_metrics, metrics

__all__ = [
    "BreakdownRow", "Metric", "MetricDefinition", "MetricParams", "MetricResult", "Metrics", "Period", "SeriesPoint",
    "collect_metrics", "metrics", "parse_params",
]
