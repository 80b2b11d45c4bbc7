"""The record of rule runs: one row per rule and event (or scheduled occurrence).

The row is what makes a run happen once: it is inserted under a unique (rule, event) key
before any action runs, and each action's progress (``step``) is advanced with an
``UPDATE … WHERE step = n`` — in the same transaction as the action's own writes for
transactional actions — so a redelivered event, a retry after a crash or a second worker
racing on the same event can never repeat a step that committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.automation.tables import RUNS
from crmkit.domain import Event
from crmkit.domain.values import new_id, utcnow

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.automation.rules import Rule

#: A run in one of these states is done: a redelivered event leaves it alone.
FINAL = frozenset({"ok", "skipped", "failed"})
STATUSES = ("running", "ok", "skipped", "failed", "retrying")


class LostRace(Exception):
    """Another runner recorded this step (or started this run) first."""


@attrs.define(kw_only=True)
class Run:
    id: str
    rule_id: str
    rule_name: str
    event_id: str
    event_type: str
    contact_id: str | None
    status: str
    step: int
    attempts: int
    results: list[Any]
    error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def final(self) -> bool:
        return self.status in FINAL


class RunStore:
    def __init__(self, crm: CRM):
        self.crm = crm

    @property
    def table(self) -> sa.Table:
        return self.crm.backend.metadata.tables[RUNS]

    def _write(self) -> Any:
        return self.crm.backend.engine.connect().execution_options(crmkit_write=True)

    def _runs(self, rows: Iterable[Any]) -> list[Run]:
        return [Run(**{f.name: getattr(row, f.name) for f in attrs.fields(Run)}) for row in rows]

    def find(self, rule_id: str, event_id: str) -> Run | None:
        t = self.table
        with self.crm.backend.engine.connect() as conn:
            found = self._runs(conn.execute(sa.select(t).where(t.c.rule_id == rule_id, t.c.event_id == event_id)))
        return found[0] if found else None

    def start(self, rule: Rule, event: Event, contact_id: str | None, *, status: str = "running", error: str | None = None) -> Run:
        """Insert the run; :class:`LostRace` if it exists already (another delivery has it)."""
        now = utcnow()
        run = Run(id=new_id(), rule_id=rule.id, rule_name=rule.name, event_id=event.id, event_type=event.type,
                  contact_id=contact_id, status=status, step=0, attempts=0 if status == "skipped" else 1, results=[],
                  error=error, created_at=now, updated_at=now)
        try:
            self._insert(run)
        except sa.exc.IntegrityError:
            if self.find(rule.id, event.id) is not None:
                raise LostRace(f"rule {rule.name!r} already has a run for event {event.id}") from None
            if contact_id is None:
                raise
            run.contact_id = None  # the contact was deleted meanwhile: keep the run without it
            self._insert(run)
        return run

    def _insert(self, run: Run) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(sa.insert(self.table).values(**attrs.asdict(run)))

    def resume(self, run: Run) -> Run:
        """Take a run up again (after a failure that may pass); :class:`LostRace` if another
        runner changed it meanwhile."""
        t, now = self.table, utcnow()
        with self._write() as conn, conn.begin():
            changed = conn.execute(
                sa.update(t).where(t.c.id == run.id, t.c.attempts == run.attempts, t.c.status == run.status)
                .values(status="running", attempts=run.attempts + 1, updated_at=now)
            ).rowcount
        if changed != 1:
            raise LostRace(f"run {run.id} was taken up by another runner")
        return attrs.evolve(run, status="running", attempts=run.attempts + 1, updated_at=now)

    def advance(self, conn: sa.Connection, run: Run, result: Any, *, done: bool) -> None:
        """Record that action number ``run.step`` is done, on ``conn`` (the action's own
        transaction when it has one). :class:`LostRace` when another runner recorded it first:
        the caller's transaction must then roll back."""
        t, now = self.table, utcnow()
        results = [*run.results, result]
        changed = conn.execute(
            sa.update(t).where(t.c.id == run.id, t.c.step == run.step)
            .values(step=run.step + 1, results=results, status="ok" if done else "running", error=None, updated_at=now)
        ).rowcount
        if changed != 1:
            raise LostRace(f"step {run.step} of run {run.id} was recorded by another runner")
        run.step, run.results, run.updated_at = run.step + 1, results, now
        run.status, run.error = ("ok" if done else "running"), None

    def advance_alone(self, run: Run, result: Any, *, done: bool) -> None:
        with self._write() as conn, conn.begin():
            self.advance(conn, run, result, done=done)

    def finish(self, run: Run, status: str, error: str | None) -> None:
        t, now = self.table, utcnow()
        with self._write() as conn, conn.begin():
            conn.execute(sa.update(t).where(t.c.id == run.id).values(status=status, error=error, updated_at=now))
        run.status, run.error, run.updated_at = status, error, now

    def list(self, *, rule_id: str | None = None, status: str | None = None, contact_id: str | None = None,
             event_id: str | None = None, limit: int | None = 100) -> list[Run]:
        t = self.table
        stmt = sa.select(t).order_by(t.c.created_at.desc(), t.c.id.desc())
        for column, value in ((t.c.rule_id, rule_id), (t.c.status, status), (t.c.contact_id, contact_id), (t.c.event_id, event_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.crm.backend.engine.connect() as conn:
            return self._runs(conn.execute(stmt))

    def delete_for_contact(self, conn: sa.Connection, contact_id: str) -> None:
        conn.execute(sa.delete(self.table).where(self.table.c.contact_id == contact_id))
