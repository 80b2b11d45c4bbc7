"""What a metric is: its name, description and unit, the parameters it is computed for, and
the shape of its result.

A metric is any object with the attributes of :class:`Metric` (a structural protocol); the
core's own are :class:`MetricDefinition` instances wrapping a ``compute(crm, params)``
function. Parameters arrive as text (CLI, HTTP) or values (Python) and are parsed here once, so
every metric rejects a bad period or an unsupported grouping the same way, naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from crmkit.errors import FieldIssue, ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM

#: Dimensions a metric may be broken down by. ``segment`` is reserved for the Segment entity,
#: which does not exist yet: no core metric offers it.
GROUP_BY = ("owner", "source", "segment", "pipeline", "channel", "campaign", "stage")
#: Filters every metric understands the names of; each metric says which it applies.
FILTERS = ("owner", "pipeline", "source", "channel", "campaign")
#: Units a result's value is expressed in.
UNITS = ("ratio", "money", "days", "count", "money_per_day")

Value = float | Decimal | int | None


@attrs.frozen
class Period:
    """A half-open UTC interval ``[start, end)`` with the label it was given by.

    Written ``2026`` (a year), ``2026-Q3`` (a quarter), ``2026-09`` (a month) or
    ``2026-01-15..2026-02-14`` (a range of days, both ends included).
    """

    label: str
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, text: str, field: str = "period") -> Period:
        value = str(text).strip()
        try:
            if m := re.fullmatch(r"(\d{4})", value):
                year = int(m[1])
                return cls(value, _utc(date(year, 1, 1)), _utc(date(year + 1, 1, 1)))
            if m := re.fullmatch(r"(\d{4})-[Qq]([1-4])", value):
                year, quarter = int(m[1]), int(m[2])
                return cls(f"{year}-Q{quarter}", _utc(date(year, 3 * quarter - 2, 1)), _month_after(year, 3 * quarter))
            if m := re.fullmatch(r"(\d{4})-(\d{2})", value):
                year, month = int(m[1]), int(m[2])
                return cls(value, _utc(date(year, month, 1)), _month_after(year, month))
            if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", value):
                first, last = date.fromisoformat(m[1]), date.fromisoformat(m[2])
                if last < first:
                    raise ValidationFailed.single(field, "invalid_period", f"{value!r} ends before it starts")
                return cls(value, _utc(first), _utc(last + timedelta(days=1)))
        except ValueError:
            pass  # a month 13 or a 30 February: reported below like any other bad period
        raise ValidationFailed.single(
            field, "invalid_period", f"{value!r} is not a period: use 2026, 2026-Q3, 2026-09 or 2026-01-01..2026-03-31"
        )

    def months(self) -> list[Period]:
        """The calendar months this period covers, clipped to it (for series)."""
        parts: list[Period] = []
        cursor = self.start
        while cursor < self.end:
            following = _month_after(cursor.year, cursor.month)
            stop = min(following, self.end)
            whole = cursor.day == 1 and stop == following
            label = f"{cursor:%Y-%m}" if whole else f"{cursor:%Y-%m-%d}..{stop - timedelta(days=1):%Y-%m-%d}"
            parts.append(Period(label, cursor, stop))
            cursor = stop
        return parts


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_after(year: int, month: int) -> datetime:
    return _utc(date(year + month // 12, month % 12 + 1, 1))


@attrs.frozen
class MetricParams:
    """What a metric is computed for.

    :ivar period: the interval the metric looks at (each metric says which timestamp it
        filters on); None means all time, or "as of now" for point-in-time metrics.
    :ivar filters: ``{dimension: value}`` restricting the data (owner id, pipeline name or id,
        source channel, campaign name or id).
    :ivar group_by: the dimension of the breakdown, or None.
    :ivar currency: money metrics count only amounts in this currency (amounts in different
        currencies are never added); None means the CRM's default currency.
    :ivar series: also compute the value per calendar month of the period.
    """

    period: Period | None = None
    filters: Mapping[str, str] = attrs.field(factory=dict)
    group_by: str | None = None
    currency: str | None = None
    series: bool = False


@attrs.frozen
class BreakdownRow:
    """The metric for one value of the group-by dimension (``key`` the id, ``label`` its name)."""

    key: str | None
    label: str
    value: Value
    sample_size: int
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SeriesPoint:
    period: str
    value: Value
    sample_size: int


@attrs.frozen
class MetricResult:
    """A computed metric.

    :ivar value: the headline number, or None when it is undefined for the data (a ratio with
        nothing to divide by); ``sample_size`` is then usually 0.
    :ivar sample_size: how many records the value is computed from (the denominator's count).
    :ivar breakdown: one row per group when ``group_by`` was asked for (or the metric's natural
        breakdown, such as stages of a funnel).
    :ivar series: one point per month of the period when asked for.
    :ivar details: further named numbers the value is made of (numerator, denominator …).
    """

    name: str
    unit: str
    value: Value
    sample_size: int
    period: str | None = None
    currency: str | None = None
    group_by: str | None = None
    breakdown: list[BreakdownRow] = attrs.field(factory=list)
    series: list[SeriesPoint] = attrs.field(factory=list)
    details: Mapping[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class Metric(Protocol):
    """A named calculation over the CRM's data.

    ``group_by`` and ``filters`` list what the metric supports (a subset of :data:`GROUP_BY` /
    :data:`FILTERS`); ``uses_period`` says whether ``period`` means anything to it.
    ``compute`` must push its work down to the database (aggregate queries), never iterate over
    rows in Python, and return ``value=None`` rather than divide by zero.
    """

    name: str
    description: str
    unit: str
    group_by: Sequence[str]
    filters: Sequence[str]
    uses_period: bool

    def compute(self, crm: CRM, params: MetricParams) -> MetricResult: ...


Compute = Callable[["CRM", MetricParams], MetricResult]


@attrs.frozen
class MetricDefinition:
    """A :class:`Metric` made of its description and a compute function."""

    name: str
    description: str
    unit: str
    function: Compute = attrs.field(repr=False)
    group_by: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    uses_period: bool = True

    def compute(self, crm: CRM, params: MetricParams) -> MetricResult:
        return self.function(crm, params)


def parse_params(
    metric: Metric,
    *,
    period: str | Period | None = None,
    by: str | None = None,
    filters: Mapping[str, str] | None = None,
    currency: str | None = None,
    series: bool = False,
) -> MetricParams:
    """Check text parameters against what ``metric`` supports; every problem is reported at once."""
    issues: list[FieldIssue] = []
    parsed: Period | None = None
    if isinstance(period, Period):
        parsed = period
    elif period not in (None, ""):
        try:
            parsed = Period.parse(str(period))
        except ValidationFailed as exc:
            issues.extend(exc.issues)
    if parsed is not None and not metric.uses_period:
        issues.append(FieldIssue("period", "unsupported", f"metric {metric.name!r} is not computed for a period"))
    if series and (parsed is None or not metric.uses_period):
        issues.append(FieldIssue("series", "unsupported", "a series needs a period and a metric computed for one"))
    if by not in (None, "") and by not in metric.group_by:
        offered = ", ".join(metric.group_by) or "nothing"
        issues.append(FieldIssue("by", "unsupported", f"metric {metric.name!r} cannot be broken down by {by!r} (it offers: {offered})"))
    for key in filters or {}:
        if key not in metric.filters:
            offered = ", ".join(metric.filters) or "none"
            issues.append(FieldIssue(f"filters.{key}", "unsupported", f"metric {metric.name!r} has no filter {key!r} (it offers: {offered})"))
    clean_currency = None
    if currency not in (None, ""):
        from crmkit.domain.values import normalize_currency

        try:
            clean_currency = normalize_currency(str(currency))
        except ValidationFailed as exc:
            issues.extend(exc.issues)
    if issues:
        raise ValidationFailed(issues)
    return MetricParams(period=parsed, filters=dict(filters or {}), group_by=by or None, currency=clean_currency, series=series)
