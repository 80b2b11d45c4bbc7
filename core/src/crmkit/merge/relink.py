"""Moving every row that points at one contact onto another, and back.

The rows to move are found from the schema, not from a list: every column of every table
(plugin tables included) with a foreign key to ``contacts.id``. Deleting the duplicate would
otherwise cascade to, or orphan, whatever a plugin keeps about the person.

Each move is recorded as a JSON-safe entry — table, column, primary-key columns and, per row,
its primary key (plus ``version``/``updated_at`` for versioned tables, whose version a move
bumps so a writer holding the old row gets a conflict instead of writing the duplicate's id
back) — which is what :func:`move_back` replays in reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crmkit.domain.values import parse_datetime
from crmkit.merge.records import MergeError

_CHUNK = 250  # rows per IN (…) list: far below every backend's parameter limit


def contact_references(tables: Mapping[str, sa.Table]) -> list[tuple[sa.Table, sa.Column[Any]]]:
    """``(table, column)`` for every foreign key to ``contacts.id``, in a stable order."""
    found = []
    for table in tables.values():
        for fk in table.foreign_keys:
            if fk.column.table.name == "contacts" and fk.column.name == "id":
                found.append((table, fk.parent))
    return sorted(found, key=lambda pair: (pair[0].name, pair[1].name))


def _key_columns(table: sa.Table) -> list[sa.Column[Any]]:
    key = list(table.primary_key.columns)
    if not key:
        raise MergeError(f"table {table.name!r} references contacts but has no primary key, so a merge could not be undone; give it one")
    return key


def _jsonable(value: Any, table: sa.Table) -> Any:
    if isinstance(value, str | int):
        return value
    raise MergeError(f"table {table.name!r} has a primary key of type {type(value).__name__}; merges support text and integer keys")


def move(conn: sa.Connection, references: Sequence[tuple[sa.Table, sa.Column[Any]]], from_id: str, to_id: str, now: datetime) -> list[dict[str, Any]]:
    """Point every referencing row at ``to_id``; return the entries that undo it."""
    entries = []
    for table, column in references:
        key = _key_columns(table)
        versioned = "version" in table.c
        stamped = versioned and "updated_at" in table.c
        extra = [table.c.version] if versioned else []
        extra += [table.c.updated_at] if stamped else []
        rows = conn.execute(sa.select(*key, *extra).where(column == from_id)).all()
        if not rows:
            continue
        values: dict[str, Any] = {column.name: to_id}
        if versioned:
            values["version"] = table.c.version + 1
        if stamped:
            values["updated_at"] = now
        conn.execute(sa.update(table).where(column == from_id).values(**values))
        entries.append({
            "table": table.name,
            "column": column.name,
            "key": [c.name for c in key],
            "versioned": versioned,
            "stamped": stamped,
            "rows": [
                [*(_jsonable(v, table) for v in row[:len(key)]), *([row[len(key)]] if versioned else []),
                 *([row[len(key) + 1].isoformat()] if stamped else [])]
                for row in rows
            ],
        })
    return entries


def moved_keys(entries: Iterable[Mapping[str, Any]], table: str, column: str = "contact_id") -> list[list[Any]]:
    """The primary keys of the rows of ``table`` that ``entries`` moved."""
    return [row[:len(e["key"])] for e in entries if e["table"] == table and e["column"] == column for row in e["rows"]]


def key_condition(table: sa.Table, key: Sequence[str], keys: Sequence[Sequence[Any]]) -> sa.ColumnElement[bool]:
    """``key IN keys`` for a single or composite primary key."""
    if len(key) == 1:
        return table.c[key[0]].in_([k[0] for k in keys])
    return sa.or_(*(sa.and_(*(table.c[name] == value for name, value in zip(key, k, strict=True))) for k in keys))


def move_back(conn: sa.Connection, tables: Mapping[str, sa.Table], entries: Sequence[Mapping[str, Any]], from_id: str, to_id: str, now: datetime) -> None:
    """Replay ``entries`` in reverse: rows still pointing at ``from_id`` go back to ``to_id``.

    A versioned row nobody changed since gets its old version and ``updated_at`` back
    exactly; one changed since keeps its changes and gets a new version. Rows moved elsewhere
    or deleted since are left as they are.
    """
    for entry in reversed(entries):
        table = tables[entry["table"]]
        column = table.c[entry["column"]]
        key: list[str] = entry["key"]
        if not entry["versioned"]:
            for start in range(0, len(entry["rows"]), _CHUNK):
                chunk = entry["rows"][start:start + _CHUNK]
                conn.execute(sa.update(table).where(column == from_id, key_condition(table, key, chunk)).values({column.name: to_id}))
            continue
        for row in entry["rows"]:
            this_row = sa.and_(column == from_id, key_condition(table, key, [row[:len(key)]]))
            version = row[len(key)]
            exact: dict[str, Any] = {column.name: to_id, "version": version}
            changed: dict[str, Any] = {column.name: to_id, "version": table.c.version + 1}
            if entry["stamped"]:
                exact["updated_at"] = parse_datetime(row[len(key) + 1], "updated_at")
                changed["updated_at"] = now
            if conn.execute(sa.update(table).where(this_row, table.c.version == version + 1).values(**exact)).rowcount == 0:
                conn.execute(sa.update(table).where(this_row).values(**changed))
