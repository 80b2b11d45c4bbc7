"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from crmkit.domain.values import MONEY_MAX, MONEY_PLACES

MONEY_SCALE = 10**MONEY_PLACES  # four decimal places: exact for every ISO 4217 currency


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in, timezone-aware UTC datetimes out.

    Stored naive-UTC with microseconds everywhere (MariaDB's DATETIME defaults to whole
    seconds, which would make stage history ambiguous), so ordering and comparison in SQL are
    plain and portable.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given where UTC is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Money(sa.TypeDecorator[Decimal]):
    """Decimal amounts stored as integers of 1/10,000 units: exact sums in SQL on every backend."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: sa.Dialect) -> int | None:
        if value is None:
            return None
        amount = Decimal(value)
        # Refuse rather than round: input parsing (``parse_money``) keeps such values out, so
        # reaching this is a programming error that must not cost anyone a cent.
        if amount.copy_abs() > MONEY_MAX or amount != amount.quantize(Decimal(1).scaleb(-MONEY_PLACES), rounding=ROUND_DOWN):
            raise ValueError(f"{value!r} cannot be stored exactly as money (at most {MONEY_PLACES} decimal places, at most {MONEY_MAX})")
        return int(amount.scaleb(MONEY_PLACES))

    def process_result_value(self, value: int | None, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) / MONEY_SCALE  # exact; keeps 1000 as 1000, not 1E+3


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON everywhere; JSONB on PostgreSQL (indexable, compact)."""
    from sqlalchemy.dialects import postgresql

    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
