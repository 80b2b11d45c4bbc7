"""The audit log: one entry per event, written in the transaction of the change.

An entry says who (``actor``, as given to ``crm.uow(actor=...)`` or a service's ``actor=``),
did what (``type``), to which record (``subject_id``) and how (``changes``: the field-by-field
``{"from": …, "to": …}`` of an update, or the data of any other event), and when. Because the
rows are inserted by ``crmkit_before_commit`` inside the unit of work, an entry exists exactly
when its change committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.builtin.audit.subjects import contact_of
from crmkit.builtin.audit.tables import TABLE
from crmkit.domain import Event
from crmkit.storage.sql.repository import insert_rows

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

#: What erased values are replaced with. Keys stay, so the trail still shows *that* a field
#: changed, by whom and when, but not what it held.
REDACTED = "[erased]"


@attrs.frozen(kw_only=True)
class AuditEntry:
    """One audited change. ``id`` is the id of the event it records."""

    id: str
    occurred_at: datetime
    actor: str | None
    type: str
    subject_id: str | None
    contact_id: str | None
    changes: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        return cls(id=row.event_id, occurred_at=row.occurred_at, actor=row.actor, type=row.type,
                   subject_id=row.subject_id, contact_id=row.contact_id, changes=row.changes)


def changes_of(event: Event) -> dict[str, Any]:
    """An update's field changes, or the whole data of any other event (a creation's values,
    a stage move, a merge …)."""
    changes = event.data.get("changes")
    return changes if isinstance(changes, dict) else dict(event.data)


def record(uow: UnitOfWork, events: Sequence[Event]) -> None:
    """Insert one entry per event through the unit of work's own connection."""
    if not events:
        return
    assert uow.connection is not None
    insert_rows(uow.connection, uow.table(TABLE), [
        {"event_id": e.id, "occurred_at": e.occurred_at, "actor": e.actor, "type": e.type,
         "subject_id": e.subject_id, "contact_id": contact_of(e), "changes": changes_of(e)}
        for e in events
    ])


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` with every personal value replaced by :data:`REDACTED`. Ids and versions
    stay (they identify records, not people) and so does the shape of nested changes."""
    if key is not None and (key == "id" or key.endswith("_id") or key == "version"):
        return value
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    return value if value in (None, "", []) else REDACTED


def _about(table: sa.Table, contact_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(table.c.contact_id == contact_id, table.c.subject_id == contact_id)


def erase(uow: UnitOfWork, contact_id: str) -> int:
    """Redact the changes of every entry about the person; return how many were redacted."""
    conn, table = uow.connection, uow.table(TABLE)
    assert conn is not None
    rows = conn.execute(sa.select(table.c.seq, table.c.changes).where(_about(table, contact_id))).all()
    for row in rows:
        conn.execute(sa.update(table).where(table.c.seq == row.seq).values(changes=redact(row.changes)))
    return len(rows)


class AuditLog:
    """``crm.audit``: read the audit log."""

    def __init__(self, crm: CRM):
        self.crm = crm

    def query(
        self,
        *,
        subject_id: str | None = None,
        contact_id: str | None = None,
        actor: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, newest first.

        :param type: an event type (``deal.won``) or a family ending in ``.*`` (``contact.*``).
        :param since: entries at or after this time; ``until``: before it.
        """
        with self.crm.read() as uow:
            table = uow.table(TABLE)
            c = table.c
            stmt = sa.select(table).order_by(c.seq.desc()).limit(limit)
            for column, value in ((c.subject_id, subject_id), (c.contact_id, contact_id), (c.actor, actor)):
                if value is not None:
                    stmt = stmt.where(column == value)
            if type is not None:
                stmt = stmt.where(c.type.startswith(type[:-1], autoescape=True) if type.endswith(".*") else c.type == type)
            if since is not None:
                stmt = stmt.where(c.occurred_at >= since)
            if until is not None:
                stmt = stmt.where(c.occurred_at < until)
            assert uow.connection is not None
            return [AuditEntry.from_row(row) for row in uow.connection.execute(stmt)]

    def trail_of(self, contact_id: str) -> list[AuditEntry]:
        """Every entry about the person, oldest first (for a personal-data export)."""
        with self.crm.read() as uow:
            table = uow.table(TABLE)
            assert uow.connection is not None
            rows = uow.connection.execute(sa.select(table).where(_about(table, contact_id)).order_by(table.c.seq))
            return [AuditEntry.from_row(row) for row in rows]
