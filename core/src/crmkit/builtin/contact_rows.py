"""Contact rows and ``contact.created`` payloads built straight from validated values.

An import creates contacts by the hundred thousand. Going through the entity for each —
``Contact(**clean)``, then ``to_row`` for the insert and ``to_jsonable`` (cattrs) for the event —
cost more per row than the database insert itself. :class:`ContactRows` produces the very same
row and payload from the clean values with one dictionary copy and a loop over the fields that
were given; the layout (flattened nested objects, enum values, defaults) is taken once from the
entity and its table mapping, so a field added to ``Contact`` needs nothing here. Tests compare
both against the entity path.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import attrs

from crmkit.domain import Contact
from crmkit.domain.values import new_id
from crmkit.storage.sql.mapping import _plan, to_row


class ContactRows:
    """Rows (as :func:`~crmkit.storage.sql.mapping.to_row` gives them) and event payloads (as
    :func:`~crmkit.serialize.to_jsonable` gives them) for new contacts."""

    def __init__(self) -> None:
        template = to_row(Contact(id=""))
        # Mutable defaults (tags, custom) must be fresh per row: they are copied, not shared.
        self._mutable = [k for k, v in template.items() if isinstance(v, list | dict)]
        self._template = template
        self._nested: dict[str, tuple[str, list[str]]] = {}
        self._enums: set[str] = set()
        for name, kind in _plan(Contact):
            if isinstance(kind, tuple):
                prefix, cls = kind
                self._nested[name] = (prefix, [f.name for f in attrs.fields(cls)])
            elif kind is not None:
                self._enums.add(name)
        self._order = [name for name, _ in _plan(Contact)]

    def row(self, clean: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The table row of ``Contact(**{k: v for k, v in clean.items() if v is not None})``
        created at ``now``, with a new id."""
        row = self._template.copy()
        for key in self._mutable:
            row[key] = type(row[key])()
        row["id"] = new_id()
        row["created_at"] = row["updated_at"] = now
        nested, enums = self._nested, self._enums
        for key, value in clean.items():
            if value is None:
                continue
            if key in nested:
                prefix, names = nested[key]
                for name in names:
                    row[prefix + name] = getattr(value, name)
            elif key in enums:
                row[key] = value.value
            else:
                row[key] = value
        return row

    def payload(self, row: dict[str, Any]) -> dict[str, Any]:
        """The contact's JSON form (``to_jsonable(contact)``) from its row."""
        # Called once per imported contact: most values are text or None and are taken as they
        # are; only the others are checked for the conversions to_jsonable makes.
        payload: dict[str, Any] = {}
        nested = self._nested
        for name in self._order:
            if name in nested:
                prefix, names = nested[name]
                payload[name] = {sub: row[prefix + sub] for sub in names}
                continue
            value = row[name]
            kind = value.__class__
            if value is None or kind is str:
                pass
            elif isinstance(value, _DATES):
                value = value.isoformat()
            elif isinstance(value, list):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            payload[name] = value
        return payload


_DATES = (datetime, date)
