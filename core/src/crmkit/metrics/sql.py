"""SQL building blocks shared by the calculators: period bounds, money sums, durations,
filters and group-by columns for deals, and labels for breakdown keys.

Everything here builds SQLAlchemy Core expressions that run the same on SQLite, PostgreSQL and
MariaDB; where the dialects differ (durations) the expression is chosen per dialect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit.errors import ValidationFailed
from crmkit.metrics.protocol import BreakdownRow, MetricParams, MetricResult, Period
from crmkit.storage.sql.types import MONEY_SCALE

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

NONE_LABEL = "(none)"
MONEY_QUANTUM = Decimal(1) / MONEY_SCALE
SECONDS_PER_DAY = 86_400


def ratio(numerator: float | int | Decimal, denominator: float | int | Decimal) -> float | None:
    """``numerator / denominator`` as a float, or None when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else None


def within(column: Any, period: Period | None) -> list[Any]:
    """Conditions keeping ``column`` inside ``period`` (none for all time)."""
    return [] if period is None else [column >= period.start, column < period.end]


def before_end(column: Any, period: Period | None) -> list[Any]:
    return [] if period is None else [column < period.end]


def raw_money(column: Any) -> Any:
    """A Money column as its stored integer (1/10,000 units), so SUM stays an exact integer."""
    return sa.type_coerce(column, sa.BigInteger)


def money(raw_sum: Any) -> Decimal:
    """A summed raw Money column back as a Decimal amount (0 for an empty sum)."""
    return Decimal(int(raw_sum or 0)) / MONEY_SCALE


def average_money(raw_sum: Any, count: int) -> Decimal | None:
    """Exact mean of money values, rounded to the stored precision; None for no values."""
    if not count:
        return None
    return (Decimal(int(raw_sum or 0)) / count / MONEY_SCALE).quantize(MONEY_QUANTUM)


def seconds_between(dialect: str, start: Any, end: Any) -> Any:
    """``end - start`` in seconds as a number, for the connection's dialect."""
    if dialect == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * SECONDS_PER_DAY
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    # MariaDB/MySQL: microseconds keep sub-second history exact.
    return sa.func.timestampdiff(sa.literal_column("MICROSECOND"), start, end) / 1_000_000


def currency(crm: CRM, params: MetricParams) -> str:
    return params.currency or crm.config.default_currency


def rows(uow: UnitOfWork, statement: Any) -> Sequence[Any]:
    return uow.connection.execute(statement).all()  # type: ignore[union-attr]


def resolve(uow: UnitOfWork, table_name: str, value: str, field: str) -> str:
    """The id of the row of ``table_name`` whose id or name is ``value``."""
    table = uow.table(table_name)
    found = rows(uow, sa.select(table.c.id).where(sa.or_(table.c.id == value, table.c.name == value)).limit(2))
    if len(found) != 1:
        raise ValidationFailed.single(field, "not_found", f"no {table_name[:-1]} with id or name {value!r}")
    return str(found[0][0])


class DealScope:
    """Deals joined to their contact, with the metric's filters applied and its group-by column.

    Dimensions: ``owner`` (the deal's owner), ``pipeline``, ``source`` (the contact's source
    channel) and ``campaign`` (the contact's source campaign) — first-touch attribution, since
    a contact's source is recorded when it is first captured.
    """

    DIMENSIONS = ("owner", "pipeline", "source", "campaign")

    def __init__(self, uow: UnitOfWork, params: MetricParams):
        self.deals, self.contacts = uow.table("deals"), uow.table("contacts")
        self.source = sa.outerjoin(self.deals, self.contacts, self.contacts.c.id == self.deals.c.contact_id)
        columns = {
            "owner": self.deals.c.owner_id, "pipeline": self.deals.c.pipeline_id,
            "source": self.contacts.c.source_channel, "campaign": self.contacts.c.source_campaign_id,
        }
        self.group = columns[params.group_by] if params.group_by in columns else None
        self.conditions: list[Any] = []
        for key, value in params.filters.items():
            if key == "pipeline":
                value = resolve(uow, "pipelines", value, "filters.pipeline")
            elif key == "campaign":
                value = resolve(uow, "campaigns", value, "filters.campaign")
            self.conditions.append(columns[key] == value)

    def select(self, *columns: Any, where: Iterable[Any] = ()) -> Any:
        """``SELECT [group,] columns FROM deals ⟕ contacts WHERE filters AND where [GROUP BY group]``."""
        head = [self.group.label("group_key")] if self.group is not None else []
        statement = sa.select(*head, *columns).select_from(self.source).where(*self.conditions, *where)
        return statement.group_by(self.group) if self.group is not None else statement


LABEL_SOURCES = {"owner": ("users", "name", "email"), "pipeline": ("pipelines", "name", None),
                 "campaign": ("campaigns", "name", None), "stage": ("stages", "name", None)}


def labels(uow: UnitOfWork, dimension: str | None, keys: Iterable[Any]) -> dict[Any, str]:
    """Readable labels for breakdown keys: user names, pipeline, campaign and stage names (one
    query for all keys); other dimensions label a key by itself."""
    wanted = sorted({k for k in keys if k is not None})
    found: dict[Any, str] = {}
    if dimension in LABEL_SOURCES and wanted:
        table_name, column, fallback = LABEL_SOURCES[dimension]
        table = uow.table(table_name)
        chosen = sa.func.coalesce(table.c[column], table.c[fallback]) if fallback else table.c[column]
        found = {key: str(label) for key, label in rows(uow, sa.select(table.c.id, chosen).where(table.c.id.in_(wanted)))}
    return {key: found.get(key, str(key)) for key in wanted}


def breakdown(uow: UnitOfWork, dimension: str | None, entries: Iterable[tuple[Any, Any, int, dict[str, Any]]]) -> list[BreakdownRow]:
    """Rows from ``(key, value, sample_size, details)`` tuples, labelled and sorted by label
    (the key-less group, e.g. deals without an owner, last)."""
    entries = list(entries)
    names = labels(uow, dimension, (e[0] for e in entries))
    built = [BreakdownRow(key=None if key is None else str(key), label=NONE_LABEL if key is None else names[key],
                          value=value, sample_size=size, details=details) for key, value, size, details in entries]
    return sorted(built, key=lambda r: (r.key is None, r.label, r.key or ""))


Evaluate = Any  # Callable[[Mapping[str, Any]], tuple[value, sample_size, details]]


def assemble(
    uow: UnitOfWork,
    name: str,
    unit: str,
    params: MetricParams,
    found: Sequence[Any],
    evaluate: Evaluate,
    *,
    dimension: str | None = None,
    currency_code: str | None = None,
) -> MetricResult:
    """A result from the rows of one aggregate query whose columns are all additive (counts and
    sums): with a group-by, one breakdown row per group and the total as the column sums of the
    (few) groups; without, the single row. ``evaluate(columns)`` turns the additive columns into
    ``(value, sample_size, details)``, so a ratio is computed once from totals, never averaged."""
    dimension = dimension or params.group_by
    grouped = bool(found) and "group_key" in found[0]._fields
    if grouped:
        fields = [f for f in found[0]._fields if f != "group_key"]
        totals = {f: sum((r._mapping[f] or 0) for r in found) for f in fields}
        entries = [(r.group_key, *evaluate({f: r._mapping[f] or 0 for f in fields})) for r in found]
        rows_out = breakdown(uow, dimension, entries)
    else:
        totals = {f: v or 0 for f, v in (found[0]._mapping.items() if found else ())}
        rows_out = []
    # No group at all: every additive column is 0 (a sum is 0, a ratio of zeros None).
    value, size, details = evaluate(totals or defaultdict(int))
    return MetricResult(name=name, unit=unit, value=value, sample_size=size, period=params.period.label if params.period else None,
                        currency=currency_code, group_by=dimension if grouped or params.group_by else None,
                        breakdown=rows_out, details=details)
