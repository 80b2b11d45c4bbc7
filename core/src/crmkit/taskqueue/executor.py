"""The worker side of Redis mode: executes tasks against the database, one CRM per thread.

huey runs tasks in consumer threads; each thread opens its own CRM on first use (its own
connection pool and channel objects, so an SMTP connection is never shared between threads)
and closes it when the consumer stops. A task takes its rows over from the relay's lease
(:meth:`~crmkit.taskqueue.claims.ClaimedRows.take_over`), then dispatches or sends exactly as
the in-process worker does, so outcomes, retries, backoff and dead letters are recorded in the
database by the same code. An exception (the database unreachable …) leaves the rows leased:
huey drops the task, and a relay enqueues the rows again once the lease runs out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

from crmkit.domain.values import utcnow
from crmkit.taskqueue.claims import Lease, message_rows, outbox_rows
from crmkit.worker import WorkerStats, close_channels

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)


class Executor:
    """Runs crmkit's queue tasks; thread-safe (one CRM per calling thread).

    :param open_crm: opens a CRM on the store (``dispatch_inline=False``: events written while
        sending wait in the outbox for a relay, like everyone else's).
    :param lease: how long a taken-over row is protected (default: the dispatcher's and send
        jobs' own); it must outlast executing one task.
    """

    def __init__(self, open_crm: Callable[[], CRM], *, lease: timedelta | None = None):
        self.open_crm = open_crm
        self.lease = lease
        self.stats = WorkerStats()
        #: Rows whose task arrived after another worker (or a newer claim) already had them.
        self.skipped = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._opened: list[CRM] = []
        self._stopping = threading.Event()

    # --- per-thread CRMs ------------------------------------------------------------------

    def crm(self) -> CRM:
        crm: CRM | None = getattr(self._local, "crm", None)
        if crm is None:
            crm = self.open_crm()
            if self.lease is not None:
                crm.events.lease = self.lease
                crm.messages.jobs.lease = self.lease
            self._local.crm = crm
            with self._lock:
                self._opened.append(crm)
        return crm

    def close_thread(self) -> None:
        """Close the calling thread's CRM (huey's on_shutdown hook, run in each worker thread)."""
        crm = getattr(self._local, "crm", None)
        if crm is not None:
            self._local.crm = None
            with self._lock:
                self._opened = [c for c in self._opened if c is not crm]
            crm.close()

    def close(self) -> None:
        """Close every CRM still open (threads that died without their shutdown hook)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for crm in opened:
            crm.close()

    # --- control --------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the message in hand; messages of the task not yet started are handed back."""
        self._stopping.set()

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                if name == "skipped":
                    self.skipped += value
                else:
                    setattr(self.stats, name, getattr(self.stats, name) + value)

    # --- tasks ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _task(self) -> Iterator[CRM]:
        """The calling thread's CRM, counted as busy meanwhile (``--once`` waits for idle)."""
        with self._lock:
            self._in_flight += 1
        try:
            yield self.crm()
        finally:
            with self._lock:
                self._in_flight -= 1

    def dispatch_events(self, leases: list[Lease]) -> None:
        """Hand the events still held by these leases to their subscribers."""
        with self._task() as crm:
            now = utcnow()
            won = outbox_rows(crm).take_over(leases, now + crm.events.lease)
            report = crm.events.dispatch_claimed(won, now)
            self._count(events=report.dispatched + report.failed + report.dead, skipped=len(leases) - len(won))

    def send_messages(self, leases: list[Lease]) -> None:
        """Send the messages still held by these leases, one after the other."""
        with self._task() as crm:
            jobs, rows = crm.messages.jobs, message_rows(crm)
            until = utcnow() + jobs.lease
            won = rows.take_over(leases, until)
            self._count(skipped=len(leases) - len(won))
            try:
                for index, message_id in enumerate(won):
                    if self._stopping.is_set():
                        self._count(released=rows.release([(m, until.isoformat()) for m in won[index:]]))
                        return
                    self._count(**{jobs.deliver_claimed(message_id, utcnow()): 1})
            finally:
                close_channels(crm)  # a task is a batch: don't hold SMTP connections between tasks
