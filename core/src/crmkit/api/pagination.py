"""List endpoints: keyset pagination with opaque cursors, filtering and sorting on indexed
columns, and sparse fields.

A cursor is the sort key of the last row of a page — ``(sort column, id)`` — base64url-encoded
JSON, so walking a collection reads every row exactly once even while rows are inserted (unlike
OFFSET), and each page is one indexed range scan. Only non-null indexed columns are sortable:
tuple comparison skips rows whose key is NULL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.api.errors import bad_request
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.sql.repository import Repository
    from crmkit.storage.uow import UnitOfWork

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@attrs.frozen
class Listing:
    """How a collection may be listed: its filters (query parameter → JSON Schema of the value,
    each an indexed column), its sortable columns, and its default order column."""

    filters: Mapping[str, dict[str, Any]] = attrs.field(factory=dict)
    sorts: Sequence[str] = ()
    order_column: str = "created_at"

    @property
    def sort_values(self) -> list[str]:
        columns = [self.order_column, *self.sorts]
        return [value for column in columns for value in (column, f"-{column}")]


@attrs.frozen
class PageRequest:
    limit: int
    sort: str
    cursor: str | None
    fields: frozenset[str] | None
    filters: dict[str, Any]

    @property
    def column(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


def single(params: Any, name: str) -> str | None:
    """A query parameter given at most once, without NUL characters."""
    values = params.getall(name, []) if hasattr(params, "getall") else [params[name]] if name in params else []
    if len(values) > 1:
        raise bad_request(name, "repeated", "may be given only once")
    if not values:
        return None
    if "\x00" in values[0]:
        raise bad_request(name, "invalid_character", "must not contain NUL characters")
    return str(values[0])


def parse_fields(params: Any, known: Sequence[str]) -> frozenset[str] | None:
    """``?fields=a,b``: the names to return (``id`` always is); unknown names are a 400."""
    text = single(params, "fields")
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise bad_request("fields", "unknown_field", f"unknown field(s): {', '.join(unknown) or '(none given)'}; fields are: {', '.join(known)}")
    return frozenset(names) | {"id"}


def read_query(params: Any, allowed: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """The query parameters an endpoint takes (name → JSON Schema); any other is a 400, and
    so is a value outside an ``enum``."""
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        names = ", ".join(sorted(allowed)) or "none"
        raise bad_request(unknown[0], "unknown_parameter", f"is not a parameter of this endpoint (parameters: {names})")
    values: dict[str, str] = {}
    for name, schema in allowed.items():
        value = single(params, name)
        if value is None:
            continue
        if "enum" in schema and value not in schema["enum"]:
            raise bad_request(name, "invalid_choice", f"must be one of: {', '.join(schema['enum'])}")
        values[name] = value
    return values


def parse_page_request(params: Any, listing: Listing, known_fields: Sequence[str]) -> PageRequest:
    paging = {"limit": {}, "cursor": {}, "fields": {}, "sort": {"enum": listing.sort_values}}
    values = read_query(params, {**paging, **listing.filters})
    try:
        limit = int(values.pop("limit", DEFAULT_LIMIT))
    except ValueError:
        raise bad_request("limit", "invalid_integer", f"must be an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request("limit", "out_of_range", f"must be an integer from 1 to {MAX_LIMIT}")
    sort = values.pop("sort", listing.order_column)
    cursor = values.pop("cursor", None)
    values.pop("fields", None)
    return PageRequest(limit=limit, sort=sort, cursor=cursor, fields=parse_fields(params, known_fields), filters=values)


def encode_cursor(sort: str, key: Sequence[Any]) -> str:
    raw = json.dumps({"sort": sort, "after": to_jsonable(list(key))}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The key a cursor continues after, typed like its columns; a 400 for anything else."""
    invalid = bad_request("cursor", "invalid_cursor", "is not a cursor of this list in this order; use next_cursor as returned")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(data, dict) or data.get("sort") != sort or not isinstance(data.get("after"), list) or len(data["after"]) != len(types):
        raise invalid
    key = []
    for value, python_type in zip(data["after"], types, strict=True):
        if python_type is datetime:
            try:
                value = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None or value.tzinfo is None:
                raise invalid
        elif not isinstance(value, python_type) or isinstance(value, bool):
            raise invalid
        key.append(value)
    return tuple(key)


def fetch_page(crm: CRM, repository: Callable[[UnitOfWork], Repository[Any]], page: PageRequest,
               conditions: Sequence[Any] = (), partitions: Sequence[Any] | None = None) -> tuple[list[Any], str | None]:
    """One page of ``repository(uow)`` and the cursor of the next (None on the last page).

    ``partitions`` (disjoint conditions, one of which each row must meet) are read as separate
    ranges and merged; see :meth:`crmkit.storage.sql.repository.Repository.list`."""
    order_by = (page.column, "id")
    with crm.read() as uow:
        repo = repository(uow)
        after = None
        if page.cursor is not None:
            after = decode_cursor(page.cursor, page.sort, [_python_type(repo.table.c[name].type) for name in order_by])
        where = [*conditions, *repo.where(**page.filters)]
        rows = repo.list(where, order_by=order_by, limit=page.limit + 1, after=after, descending=page.descending,
                         partitions=partitions)
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    return rows, encode_cursor(page.sort, [getattr(last, name) for name in order_by])


def _python_type(column_type: sa.types.TypeEngine[Any]) -> type:
    """What a column's values are in Python (a TypeDecorator says ``object``; ask its impl)."""
    if isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    return column_type.python_type


def project(data: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """Sparse fields: only the names asked for (and ``id``)."""
    return data if fields is None else {key: value for key, value in data.items() if key in fields}
