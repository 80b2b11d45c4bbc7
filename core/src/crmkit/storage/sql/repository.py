"""Repositories: load and store entities with SQLAlchemy Core inside one unit of work."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar

import sqlalchemy as sa

from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, NotFound
from crmkit.storage.sql.mapping import from_row, to_row

E = TypeVar("E")


class _InsertPlan:
    """How to insert rows with a given set of keys into one table on one dialect: the compiled
    statement (or a ``COPY`` on PostgreSQL) and each column's bind processor, in column order."""

    def __init__(self, table: sa.Table, dialect: sa.Dialect, keys: tuple[str, ...]):
        # inline(): no implicit RETURNING of the primary key, as for any executemany.
        compiled = sa.insert(table).inline().compile(dialect=dialect, column_keys=list(keys))
        processors = compiled._bind_processors  # exactly the converters SQLAlchemy itself applies
        self.positional = compiled.positional
        self.names = list(compiled.positiontup) if compiled.positional else [b for b in compiled.binds]
        self.columns = [(name, processors.get(name)) for name in self.names]
        self.sql = compiled.string
        self.copy_sql: str | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer.quote
            self.copy_sql = f"COPY {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in self.names)}) FROM STDIN"


#: Plans per table (tables belong to one CRM's metadata: the cache goes with them).
_PLANS: weakref.WeakKeyDictionary[sa.Table, dict[tuple[str, tuple[str, ...]], _InsertPlan | None]] = weakref.WeakKeyDictionary()


def _plan_for(table: sa.Table, dialect: sa.Dialect, keys: tuple[str, ...]) -> _InsertPlan | None:
    """The plan, or None when SQLAlchemy must do the insert itself: a column left out of the
    rows has a Python-side default (which only SQLAlchemy fills in)."""
    plans = _PLANS.setdefault(table, {})
    key = (dialect.name, keys)
    if key not in plans:
        unknown = set(keys) - set(table.c.keys())
        if unknown:
            raise sa.exc.CompileError(f"unconsumed column names for {table.name}: {', '.join(sorted(unknown))}")
        plan = _InsertPlan(table, dialect, keys)
        defaulted = any(c.default is not None and c.key not in keys for c in table.c)
        # Bind names are the column keys unless a name needed escaping: SQLAlchemy handles those.
        plans[key] = None if defaulted or sorted(plan.names) != sorted(keys) else plan
    return plans[key]


def insert_rows(connection: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (mappings with the same keys) — what ``connection.execute(sa.insert(table),
    rows)`` does, for bulk writes.

    SQLAlchemy builds and converts a parameter dictionary per row, which costs more than the
    database's own insert for wide rows. Here each column's values go through the column type's
    bind processor (the same function SQLAlchemy would call, so the stored values are the same)
    in one pass per column, and the driver gets plain tuples: ``executemany`` on SQLite and
    MariaDB, ``COPY … FROM STDIN`` on PostgreSQL (psycopg 3). Returns the number of rows.
    """
    if not rows:
        return 0
    keys = tuple(rows[0])
    dialect = connection.dialect
    plan = _plan_for(table, dialect, keys)
    if plan is None:
        connection.execute(sa.insert(table), list(rows))
        return len(rows)
    columns = []
    for name, process in plan.columns:
        values = [row[name] for row in rows]
        columns.append(values if process is None else list(map(process, values)))
    if plan.copy_sql is not None:
        cursor = connection.connection.cursor()
        try:
            with cursor.copy(plan.copy_sql) as copy:  # type: ignore[attr-defined]
                for values in zip(*columns, strict=True):
                    copy.write_row(values)
        finally:
            cursor.close()
    elif plan.positional:
        sequence = dialect.execute_sequence_format
        params: list[Any] = list(zip(*columns, strict=True)) if sequence is tuple else [sequence(v) for v in zip(*columns, strict=True)]
        connection.exec_driver_sql(plan.sql, params)
    else:
        connection.exec_driver_sql(plan.sql, [dict(zip(plan.names, v, strict=True)) for v in zip(*columns, strict=True)])
    return len(rows)


class Repository(Generic[E]):
    """Rows of one table as entities of one attrs class.

    Updates are optimistic: ``UPDATE … WHERE id = :id AND version = :expected`` and a
    :class:`ConflictError` when no row matched, so two writers cannot silently overwrite each
    other.
    """

    def __init__(self, connection: sa.Connection, table: sa.Table, cls: type[E], kind: str):
        self.connection = connection
        self.table = table
        self.cls = cls
        self.kind = kind
        self._columns = set(table.c.keys())
        self._versioned = "version" in self._columns

    def _row(self, entity: E) -> dict[str, Any]:
        return {k: v for k, v in to_row(entity).items() if k in self._columns}

    def find(self, ident: str) -> E | None:
        row = self.connection.execute(sa.select(self.table).where(self.table.c.id == ident)).first()
        return None if row is None else from_row(self.cls, row)

    def get(self, ident: str) -> E:
        entity = self.find(ident)
        if entity is None:
            raise NotFound(self.kind, ident)
        return entity

    def get_for_update(self, ident: str) -> E:
        """Read a row and lock it until the transaction ends (no-op lock on SQLite, whose
        write transactions are already exclusive)."""
        stmt = sa.select(self.table).where(self.table.c.id == ident)
        if self.connection.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        row = self.connection.execute(stmt).first()
        if row is None:
            raise NotFound(self.kind, ident)
        return from_row(self.cls, row)

    def add(self, entity: E) -> E:
        self.connection.execute(sa.insert(self.table), [self._row(entity)])
        return entity

    def add_many(self, entities: Iterable[E]) -> int:
        rows = [self._row(e) for e in entities]
        if rows:
            self.connection.execute(sa.insert(self.table), rows)
        return len(rows)

    def update(self, entity: E, expected_version: int | None = None) -> E:
        """Write ``entity`` back. ``expected_version`` defaults to the entity's own version
        (the one it was read with); on success the entity's version is incremented."""
        row = self._row(entity)
        ident = row.pop("id")
        stmt = sa.update(self.table).where(self.table.c.id == ident)
        if self._versioned:
            expected = entity.version if expected_version is None else expected_version  # type: ignore[attr-defined]
            stmt = stmt.where(self.table.c.version == expected)
            row["version"] = expected + 1
            if "updated_at" in self._columns:
                row["updated_at"] = utcnow()
        result = self.connection.execute(stmt.values(**row))
        if result.rowcount != 1:
            if self.find(ident) is None:
                raise NotFound(self.kind, ident)
            raise ConflictError(self.kind, ident, expected if self._versioned else None)
        if self._versioned:
            entity.version = row["version"]  # type: ignore[attr-defined]
            entity.updated_at = row["updated_at"]  # type: ignore[attr-defined]
        return entity

    def delete(self, ident: str, expected_version: int | None = None) -> None:
        stmt = sa.delete(self.table).where(self.table.c.id == ident)
        if expected_version is not None and self._versioned:
            stmt = stmt.where(self.table.c.version == expected_version)
        if self.connection.execute(stmt).rowcount != 1:
            if self.find(ident) is None:
                raise NotFound(self.kind, ident)
            raise ConflictError(self.kind, ident, expected_version)

    def where(self, **equals: Any) -> list[sa.ColumnElement[bool]]:
        conditions = []
        for name, value in equals.items():
            if name not in self._columns:
                raise ValueError(f"{self.kind} has no column {name!r}")
            column = self.table.c[name]
            conditions.append(column.is_(None) if value is None else column == value)
        return conditions

    def list(
        self,
        conditions: Sequence[sa.ColumnElement[bool]] = (),
        *,
        order_by: Sequence[str] = ("created_at", "id"),
        limit: int | None = None,
        after: Sequence[Any] | None = None,
        descending: bool = False,
        lock: Literal["share", "update"] | None = None,
        partitions: Sequence[sa.ColumnElement[bool]] | None = None,
    ) -> list[E]:
        """Entities matching ``conditions``, ordered, with keyset pagination.

        :param after: the values of ``order_by`` of the last row of the previous page; rows
            strictly after it are returned (stable under concurrent inserts, unlike OFFSET).
        :param lock: ``"share"`` or ``"update"`` locks the rows until the transaction ends and
            reads their latest committed state, which a plain read inside a MariaDB (REPEATABLE
            READ) transaction may not see. No-op on SQLite, whose write lock is the database.
        :param partitions: disjoint conditions whose OR is also required (such as "owned by
            user X", one per user). Each is read as its own ordered, limited range and the
            ranges are merged (``UNION ALL``), so with an index led by the partition's column
            a page costs ``limit`` rows per partition, however many rows the OR matches —
            where one query over the OR would read and sort all of them.
        """
        columns = [self.table.c[name] for name in order_by]

        def ranged(*extra: sa.ColumnElement[bool]) -> sa.Select[Any]:
            stmt = sa.select(self.table).where(*conditions, *extra)
            if after is not None:
                key = sa.tuple_(*columns)
                # Bind each cursor value with its column's type: a bare tuple would bind an aware
                # datetime as TIMESTAMPTZ, which PostgreSQL shifts by the session's time zone.
                cursor = sa.tuple_(*(sa.literal(value, type_=column.type) for column, value in zip(columns, after, strict=True)))
                stmt = stmt.where(key < cursor if descending else key > cursor)
            stmt = stmt.order_by(*(c.desc() if descending else c.asc() for c in columns))
            return stmt if limit is None else stmt.limit(limit)

        if partitions:
            if lock is not None:
                raise ValueError("partitions cannot be read with a lock")
            merged = sa.union_all(*(sa.select(ranged(partition).subquery()) for partition in partitions)).subquery()
            outer = [merged.c[name] for name in order_by]
            stmt = sa.select(merged).order_by(*(c.desc() if descending else c.asc() for c in outer))
            if limit is not None:
                stmt = stmt.limit(limit)
        else:
            stmt = ranged()
        if lock is not None and self.connection.dialect.name != "sqlite":
            stmt = stmt.with_for_update(read=lock == "share")
        return [from_row(self.cls, row) for row in self.connection.execute(stmt)]

    def count(self, conditions: Sequence[sa.ColumnElement[bool]] = ()) -> int:
        stmt = sa.select(sa.func.count()).select_from(self.table).where(*conditions)
        return int(self.connection.execute(stmt).scalar_one())

    def first(
        self,
        conditions: Sequence[sa.ColumnElement[bool]],
        order_by: Sequence[str] = ("created_at", "id"),
        *,
        lock: Literal["share", "update"] | None = None,
    ) -> E | None:
        found = self.list(conditions, order_by=order_by, limit=1, lock=lock)
        return found[0] if found else None

