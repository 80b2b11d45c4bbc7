"""Repositories: load and store entities with SQLAlchemy Core inside one unit of work."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

import sqlalchemy as sa

from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, NotFound
from crmkit.storage.sql.mapping import from_row, to_row

E = TypeVar("E")


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
    ) -> list[E]:
        """Entities matching ``conditions``, ordered, with keyset pagination.

        :param after: the values of ``order_by`` of the last row of the previous page; rows
            strictly after it are returned (stable under concurrent inserts, unlike OFFSET).
        :param lock: ``"share"`` or ``"update"`` locks the rows until the transaction ends and
            reads their latest committed state, which a plain read inside a MariaDB (REPEATABLE
            READ) transaction may not see. No-op on SQLite, whose write lock is the database.
        """
        columns = [self.table.c[name] for name in order_by]
        stmt = sa.select(self.table).where(*conditions)
        if after is not None:
            key = sa.tuple_(*columns)
            # Bind each cursor value with its column's type: a bare tuple would bind an aware
            # datetime as TIMESTAMPTZ, which PostgreSQL shifts by the session's time zone.
            cursor = sa.tuple_(*(sa.literal(value, type_=column.type) for column, value in zip(columns, after, strict=True)))
            stmt = stmt.where(key < cursor if descending else key > cursor)
        stmt = stmt.order_by(*(c.desc() if descending else c.asc() for c in columns))
        if limit is not None:
            stmt = stmt.limit(limit)
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

