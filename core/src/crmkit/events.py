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
        tables = crm.backend.metadata.tables
        self.outbox: sa.Table = tables["outbox_events"]
        self.deliveries: sa.Table = tables["event_deliveries"]

    @property
    def engine(self) -> sa.Engine:
        return self.crm.backend.engine

    def subscribers(self) -> list[Any]:
        return self.crm.plugins.impls("crmkit_handle_event")

    # --- claiming ---------------------------------------------------------------------

    def _claim(self, event_id: str, now: datetime) -> bool:
        o = self.outbox.c
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            result = conn.execute(
                sa.update(self.outbox)
                .where(o.id == event_id, o.dispatched_at.is_(None), sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
                .values(next_attempt_at=now + LEASE)
            )
            return result.rowcount == 1

    def pending_ids(self, limit: int = 500, now: datetime | None = None) -> list[str]:
        now = now or utcnow()
        o = self.outbox.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(o.id).where(o.dispatched_at.is_(None), sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
                .order_by(o.seq).limit(limit)
            )
            return [r.id for r in rows]

    # --- dispatching ------------------------------------------------------------------

    def dispatch(self, events: Iterable[Event]) -> DispatchReport:
        """Dispatch events that were just committed (the inline, embedded path)."""
        report = DispatchReport()
        for event in events:
            report += self._dispatch_one(event.id, utcnow(), known=event)
        return report

    def drain(self, limit: int | None = None, now: datetime | None = None) -> DispatchReport:
        """Dispatch every event that is due: new ones, and failed ones whose retry time came."""
        report = DispatchReport()
        done = 0
        while limit is None or done < limit:
            batch = self.pending_ids(min(500, limit - done) if limit else 500, now)
            if not batch:
                break
            for event_id in batch:
                report += self._dispatch_one(event_id, now or utcnow())
            done += len(batch)
        return report

    def _dispatch_one(self, event_id: str, now: datetime, known: Event | None = None) -> DispatchReport:
        if not self._claim(event_id, now):
            return DispatchReport()  # another dispatcher has it, or it is not due
        with self.engine.connect() as conn:
            if known is None:
                known = _row_to_event(conn.execute(sa.select(self.outbox).where(self.outbox.c.id == event_id)).one())
            previous = {r.subscriber: r for r in conn.execute(sa.select(self.deliveries).where(self.deliveries.c.event_id == event_id))}
        outcomes: dict[str, tuple[str, str | None]] = {}
        for impl in self.subscribers():
            name = impl.plugin_name
            before = previous.get(name)
            if before is not None and before.status in ("ok", "dead"):
                continue
            try:
                impl.function(**{arg: {"event": known, "crm": self.crm}[arg] for arg in impl.argnames})
                outcomes[name] = ("ok", None)
            except Exception as exc:  # a subscriber's failure must not touch the write or other subscribers
                log.warning("event %s (%s): subscriber %r failed: %s", event_id, known.type, name, exc, exc_info=True)
                outcomes[name] = ("failed", f"{type(exc).__name__}: {exc}")
        return self._record(event_id, now, previous, outcomes)

    def _record(self, event_id: str, now: datetime, previous: dict[str, Any], outcomes: dict[str, tuple[str, str | None]]) -> DispatchReport:
        report = DispatchReport()
        any_failed = any(status == "failed" for status, _ in outcomes.values())
        retry_at: datetime | None = None
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            # Successes are only written when a retry will follow (or already happened), so the
            # happy path costs one UPDATE per event.
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
                    d = self.deliveries.c
                    conn.execute(sa.update(self.deliveries).where(d.event_id == event_id, d.subscriber == name).values(**values))
            o = self.outbox.c
            if retry_at is None:
                conn.execute(sa.update(self.outbox).where(o.id == event_id).values(dispatched_at=now, next_attempt_at=None))
                report.dispatched += 1
            else:
                conn.execute(sa.update(self.outbox).where(o.id == event_id).values(next_attempt_at=retry_at))
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
