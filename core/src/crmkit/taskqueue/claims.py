"""Passing a claimed row from a relay to exactly one worker, through the lease it carries.

A relay claims rows with the ordinary lease (``next_attempt_at = now + lease``) and puts the
lease value in the task next to the row id. The worker that executes the task *takes the row
over*: one ``UPDATE … WHERE id = :id AND next_attempt_at = :lease`` that moves the lease to
its own. The lease value works as a fencing token because every way a row can change also
changes ``next_attempt_at``: dispatched events and sent, vetoed or dead messages clear it,
failures set the retry time, deferrals the end of the quiet hours, a later claim a new lease.
So a second delivery of the same task — Redis redelivery, a relay retrying an enqueue, a
worker restarted — finds the token gone and does nothing, and a task that waited in Redis
past its lease loses to the relay's new claim of the same row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs
import sqlalchemy as sa

if TYPE_CHECKING:
    from crmkit.app import CRM

#: What a task carries per row: its id and the lease value it was claimed with (ISO 8601,
#: so task payloads are plain JSON).
Lease = tuple[str, str]


@attrs.frozen
class ClaimedRows:
    """One leased table: the outbox (``outbox_events``) or the send jobs (``messages``).

    :param pending: the condition a row must still meet to be worked on, beyond its lease.
    """

    engine: sa.Engine
    table: sa.Table
    pending: sa.ColumnElement[bool] | None = None

    def leases(self, ids: Sequence[str]) -> list[Lease]:
        """The lease each of ``ids`` holds now, read back as stored (the task's token)."""
        if not ids:
            return []
        c = self.table.c
        with self.engine.connect() as conn:
            held = dict(conn.execute(sa.select(c.id, c.next_attempt_at).where(c.id.in_(list(ids)))).all())
        return [(row_id, held[row_id].isoformat()) for row_id in ids if held.get(row_id) is not None]

    def _held(self, row_id: str, lease: str) -> sa.ColumnElement[bool]:
        c = self.table.c
        condition = sa.and_(c.id == row_id, c.next_attempt_at == datetime.fromisoformat(lease))
        return condition if self.pending is None else sa.and_(condition, self.pending)

    def take_over(self, leases: Iterable[Lease], until: datetime) -> list[str]:
        """Move each row still holding the given lease to the lease ``until``; the ids won, in
        order. One transaction; a row another worker took (or that changed) is skipped."""
        won = []
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            for row_id, lease in leases:
                if conn.execute(sa.update(self.table).where(self._held(row_id, lease)).values(next_attempt_at=until)).rowcount:
                    won.append(row_id)
        return won

    def release(self, leases: Iterable[Lease]) -> int:
        """Make rows still holding the given leases due again now (claimed but not worked on:
        an enqueue that failed, a worker stopping); returns how many were released."""
        released = 0
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            for row_id, lease in leases:
                released += conn.execute(sa.update(self.table).where(self._held(row_id, lease)).values(next_attempt_at=None)).rowcount
        return released


def outbox_rows(crm: CRM) -> ClaimedRows:
    """The outbox of ``crm``: an event is pending until it is marked dispatched."""
    events = crm.events
    return ClaimedRows(events.engine, events.outbox, events.outbox.c.dispatched_at.is_(None))


def message_rows(crm: CRM) -> ClaimedRows:
    """The send jobs of ``crm``. No status condition: the lease alone decides (every final
    state clears it), so the channel layer's own claimable states stay its business."""
    return ClaimedRows(crm.backend.engine, crm.messages.jobs.table)
