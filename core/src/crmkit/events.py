"""The outbox dispatcher: hands committed events to ``crmkit_handle_event`` subscribers.

Events are rows in ``outbox_events``, written in the transaction of the change they describe.
A dispatcher *claims* an event with a lease (an UPDATE that only one process can win, portable
across SQLite, PostgreSQL and MariaDB), calls each subscriber on its own, and then marks the
event dispatched. A subscriber that raises gets a row in ``event_deliveries`` with its error
and a retry time (exponential backoff); subscribers that succeeded are remembered so a retry
calls only the ones that failed. A process killed mid-dispatch leaves the lease to expire and
another dispatcher picks the event up, so nothing is lost (a subscriber may then see an event
twice: ``event.id`` is stable for deduplication).

The embedded default dispatches inline right after commit; ``crmkit events drain`` (and the
workers of later issues) drain the same table from another process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain import Event
from crmkit.domain.values import utcnow

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=6)
MAX_ATTEMPTS = 12  # 10 s doubling, capped at 6 h: about a day and a half of retries


def backoff(attempts: int) -> timedelta:
    """Delay before retry number ``attempts`` (1-based): 10 s, 20 s, 40 s … capped at 6 h."""
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


@attrs.define
class DispatchReport:
    dispatched: int = 0
    failed: int = 0
    dead: int = 0

    def __iadd__(self, other: DispatchReport) -> DispatchReport:
        self.dispatched += other.dispatched
        self.failed += other.failed
        self.dead += other.dead
        return self


def _row_to_event(row: Any) -> Event:
    return Event(type=row.type, subject_id=row.subject_id, data=row.data, actor=row.actor, id=row.id, occurred_at=row.occurred_at)


class Dispatcher:
    def __init__(self, crm: CRM):
        self.crm = crm
        self.lease = LEASE  # a worker may shorten it (crmkit worker --lease); it must outlast a claimed batch
        tables = crm.backend.metadata.tables
        self.outbox: sa.Table = tables["outbox_events"]
        self.deliveries: sa.Table = tables["event_deliveries"]

    @property
    def engine(self) -> sa.Engine:
        return self.crm.backend.engine

    def subscribers(self) -> list[Any]:
        return self.crm.plugins.impls("crmkit_handle_event")

    # --- claiming ---------------------------------------------------------------------

    def _due(self, now: datetime) -> sa.ColumnElement[bool]:
        o = self.outbox.c
        return sa.and_(o.dispatched_at.is_(None), sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))

    def _claim(self, now: datetime, ids: list[str] | None = None, limit: int = 500) -> list[str]:
        """Take a lease on due events (the given ones, or the oldest ``limit``) and return the
        ids won. One transaction: rows are selected ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
        and MariaDB (concurrent dispatchers split the work instead of queueing), and SQLite's
        ``BEGIN IMMEDIATE`` serialises claimers; the lease makes the rows not due for others."""
        o = self.outbox.c
        stmt = sa.select(o.id).where(self._due(now)).order_by(o.seq)
        stmt = stmt.where(o.id.in_(ids)) if ids is not None else stmt.limit(limit)
        if self.engine.dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            won = [row.id for row in conn.execute(stmt)]
            if won:
                conn.execute(sa.update(self.outbox).where(o.id.in_(won)).values(next_attempt_at=now + self.lease))
        return won

    def claim_due(self, limit: int = 500, now: datetime | None = None) -> list[str]:
        """Lease up to ``limit`` due events for dispatch elsewhere (the Redis relay hands their
        ids to workers on other machines); whoever holds the lease calls :meth:`dispatch_claimed`."""
        return self._claim(now or utcnow(), limit=limit)

    def pending_ids(self, limit: int = 500, now: datetime | None = None) -> list[str]:
        """Ids of events that are due (not dispatched, not leased, retry time reached)."""
        o = self.outbox.c
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(sa.select(o.id).where(self._due(now or utcnow())).order_by(o.seq).limit(limit))]

    # --- dispatching ------------------------------------------------------------------

    def dispatch(self, events: Iterable[Event]) -> DispatchReport:
        """Dispatch events that were just committed (the inline, embedded path)."""
        known = {e.id: e for e in events}
        report = DispatchReport()
        ids = list(known)
        for start in range(0, len(ids), 500):
            now = utcnow()
            report += self._dispatch_batch(self._claim(now, ids[start:start + 500]), now, known)
        return report

    def drain(self, limit: int | None = None, now: datetime | None = None) -> DispatchReport:
        """Dispatch every event that is due: new ones, and failed ones whose retry time came."""
        report = DispatchReport()
        done = 0
        while limit is None or done < limit:
            at = now or utcnow()
            claimed = self._claim(at, limit=min(500, limit - done) if limit else 500)
            if not claimed:
                break
            report += self._dispatch_batch(claimed, at, {})
            done += len(claimed)
        return report

    def dispatch_claimed(self, event_ids: list[str], now: datetime | None = None) -> DispatchReport:
        """Dispatch events whose lease this process holds (claimed with :meth:`claim_due`, or
        taken over from a relay's claim); outcomes are recorded exactly as :meth:`drain` does."""
        return self._dispatch_batch(event_ids, now or utcnow(), {})

    def _dispatch_batch(self, event_ids: list[str], now: datetime, known: dict[str, Event]) -> DispatchReport:
        if not event_ids:
            return DispatchReport()
        subscribers = self.subscribers()
        o, d = self.outbox.c, self.deliveries.c
        with self.engine.connect() as conn:
            missing = [i for i in event_ids if i not in known]
            if missing:
                known = {**known, **{r.id: _row_to_event(r) for r in conn.execute(sa.select(self.outbox).where(o.id.in_(missing)))}}
            previous: dict[str, dict[str, Any]] = {}
            for row in conn.execute(sa.select(self.deliveries).where(d.event_id.in_(event_ids))):
                previous.setdefault(row.event_id, {})[row.subscriber] = row
        results = []
        for event_id in event_ids:
            event, before = known[event_id], previous.get(event_id, {})
            outcomes: dict[str, tuple[str, str | None]] = {}
            for impl in subscribers:
                name = impl.plugin_name
                if name in before and before[name].status in ("ok", "dead"):
                    continue
                try:
                    impl.function(**{arg: {"event": event, "crm": self.crm}[arg] for arg in impl.argnames})
                    outcomes[name] = ("ok", None)
                except Exception as exc:  # a subscriber's failure must not touch the write or other subscribers
                    log.warning("event %s (%s): subscriber %r failed: %s", event_id, event.type, name, exc, exc_info=True)
                    outcomes[name] = ("failed", f"{type(exc).__name__}: {exc}")
            results.append((event_id, before, outcomes))
        return self._record(results, now)

    def _record(self, results: list[tuple[str, dict[str, Any], dict[str, tuple[str, str | None]]]], now: datetime) -> DispatchReport:
        """Write the outcome of a batch in one transaction. Successes are only written when a
        retry will follow (or already happened), so the happy path costs one UPDATE per batch."""
        report = DispatchReport()
        clean: list[str] = []
        o, d = self.outbox.c, self.deliveries.c
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            for event_id, previous, outcomes in results:
                any_failed = any(status == "failed" for status, _ in outcomes.values())
                if not any_failed and not previous:
                    clean.append(event_id)
                    continue
                retry_at: datetime | None = None
                for name, (status, error) in outcomes.items():
                    before = previous.get(name)
                    if status == "ok" and not any_failed and before is None:
                        continue
                    attempts = (before.attempts if before is not None else 0) + 1
                    next_at = None
                    if status == "failed":
                        if attempts >= MAX_ATTEMPTS:
                            status = "dead"
                            report.dead += 1
                        else:
                            next_at = now + backoff(attempts)
                            retry_at = next_at if retry_at is None else min(retry_at, next_at)
                            report.failed += 1
                    values = {"status": status, "attempts": attempts, "last_error": error, "next_attempt_at": next_at, "updated_at": now}
                    if before is None:
                        conn.execute(sa.insert(self.deliveries).values(event_id=event_id, subscriber=name, **values))
                    else:
                        conn.execute(sa.update(self.deliveries).where(d.event_id == event_id, d.subscriber == name).values(**values))
                if retry_at is None:
                    clean.append(event_id)
                else:
                    conn.execute(sa.update(self.outbox).where(o.id == event_id).values(next_attempt_at=retry_at))
            if clean:
                conn.execute(sa.update(self.outbox).where(o.id.in_(clean)).values(dispatched_at=now, next_attempt_at=None))
                report.dispatched += len(clean)
        return report

    # --- inspection -------------------------------------------------------------------

    def failures(self) -> list[dict[str, Any]]:
        """Deliveries that failed and will be retried, or gave up (``dead``)."""
        d, o = self.deliveries.c, self.outbox.c
        stmt = (
            sa.select(d.event_id, o.type, d.subscriber, d.status, d.attempts, d.last_error, d.next_attempt_at)
            .join_from(self.deliveries, self.outbox, d.event_id == o.id)
            .where(d.status.in_(("failed", "dead")))
            .order_by(o.seq)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def counts(self) -> dict[str, int]:
        o = self.outbox.c
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(self.outbox)).scalar_one()
            pending = conn.execute(sa.select(sa.func.count()).select_from(self.outbox).where(o.dispatched_at.is_(None))).scalar_one()
        return {"total": int(total), "pending": int(pending), "dispatched": int(total) - int(pending)}
