"""The background worker: drains the event outbox and the message send jobs until told to stop.

A worker is a loop over two queues that already live in the database: ``outbox_events``
(:meth:`crmkit.events.Dispatcher.drain`) and ``messages`` (:class:`crmkit.channels.jobs.SendJobs`).
Both are claimed with leases, so any number of workers — on one machine or many — can drain
the same database without sending anything twice while they are alive; a worker that dies
(even by SIGKILL) leaves its leases to expire and another one picks the work up.

Stopping is graceful: :meth:`Worker.stop` (what ``crmkit worker`` calls on SIGTERM/SIGINT)
lets the job in hand finish, gives the messages it had claimed but not started back to the
queue at once (instead of leaving them to their lease), and returns.

Open the CRM with ``dispatch_inline=False`` for a worker (``crmkit worker`` does): the events
its own writes produce (``message.sent`` …) then wait in the outbox for the next pass like
everyone else's, instead of being dispatched inside the send loop.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from crmkit.domain.values import utcnow
from crmkit.taskqueue.claims import message_rows

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)


@attrs.define
class WorkerStats:
    """What a worker did: events handed to subscribers, and message outcomes."""

    passes: int = 0
    events: int = 0
    sent: int = 0
    vetoed: int = 0
    deferred: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0  # claimed messages handed back unsent because the worker was stopping

    @property
    def jobs(self) -> int:
        return self.events + self.sent + self.vetoed + self.deferred + self.retrying + self.dead

    def as_dict(self) -> dict[str, int]:
        return {**attrs.asdict(self), "jobs": self.jobs}


class Worker:
    """Drains one CRM's queues. ``run`` blocks until :meth:`stop` (from a signal handler or
    another thread), until the queues are empty with ``once``, or after ``max_jobs`` jobs.

    :param interval: seconds to wait when nothing was due before looking again.
    :param batch: events and messages claimed per pass; a claim's lease must outlast sending
        a whole batch, or another worker may take over messages this one still holds.
    :param lease: how long a claim protects its jobs from other workers (default: 5 minutes);
        after a crash the jobs it held wait this long before another worker retries them.
    """

    def __init__(self, crm: CRM, *, interval: float = 1.0, batch: int = 50, lease: timedelta | None = None):
        if batch < 1 or interval < 0:
            raise ValueError("batch must be at least 1 and interval not negative")
        self.crm = crm
        self.interval = interval
        self.batch = batch
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        if lease is not None:
            crm.events.lease = lease
            crm.messages.jobs.lease = lease

    # --- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the job in hand, then return from :meth:`run` (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, *, once: bool = False, max_jobs: int | None = None) -> WorkerStats:
        """Loop until stopped. ``once``: until a pass finds nothing due. ``max_jobs``: until
        about that many jobs are done (a pass never takes more than the remainder)."""
        try:
            while not self.stopping:
                room = None if max_jobs is None else max_jobs - self.stats.jobs
                if room is not None and room <= 0:
                    break
                try:
                    done = self.run_pass(room)
                except Exception:
                    if once:
                        raise
                    # The database restarting or a network blip must not end a long-running
                    # worker: say so and try again after the interval.
                    log.exception("worker pass failed; retrying in %.1f s", self.interval)
                    done = 0
                if done == 0:
                    self.close_channels()  # nothing left for now: don't hold SMTP connections idle
                    if once:
                        break
                    self._stopping.wait(self.interval)
        finally:
            self.close_channels()
        return self.stats

    # --- one pass -----------------------------------------------------------------------

    def run_pass(self, room: int | None = None) -> int:
        """Dispatch due events, then send due messages; returns how many jobs were done."""
        limit = self.batch if room is None else min(self.batch, room)
        self.stats.passes += 1
        # Time-driven work (sequence steps that came due …) first, so what it queues is sent
        # in this same pass; a failing plugin is logged with its name and does not stop the worker.
        self.crm.plugins.call_each_safely("crmkit_worker_tick", crm=self.crm, now=utcnow())
        report = self.crm.events.drain(limit=limit)
        events = report.dispatched + report.failed + report.dead
        self.stats.events += events
        if self.stopping:
            return events
        return events + self._send_messages(limit)

    def _send_messages(self, limit: int) -> int:
        jobs = self.crm.messages.jobs
        claimed_at = utcnow()
        claimed = jobs.claim(claimed_at, limit=limit)
        for index, message_id in enumerate(claimed):
            if self.stopping:
                self._release(claimed[index:], claimed_at + jobs.lease)
                return index
            outcome = jobs.deliver_claimed(message_id, utcnow())
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        return len(claimed)

    def _release(self, ids: list[str], lease_until: datetime) -> None:
        """Hand claimed, unstarted messages back: due again now rather than when the lease
        ends. Only rows still carrying this worker's lease change, so a message another
        worker took over (after this lease expired) keeps its new owner."""
        self.stats.released += message_rows(self.crm).release([(message_id, lease_until.isoformat()) for message_id in ids])

    def close_channels(self) -> None:
        close_channels(self.crm)


def close_channels(crm: CRM) -> None:
    """Call ``close()`` on every channel that has one (an SMTP connection kept open across a
    batch is closed when the queue runs dry and when a worker stops)."""
    for name, channel in crm.messages.channels.items():
        close = getattr(channel, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # a provider's broken close must not stop the worker
                log.warning("channel %r: close() failed", name, exc_info=True)
