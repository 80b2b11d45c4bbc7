"""The relay: moves due work from the database to Redis, as ids and leases.

Each pass runs the time-driven hooks (``crmkit_worker_tick``: sequence steps that came due
are queued), claims due outbox events and due send jobs with the ordinary leases, reads back
the lease each row now holds and enqueues tasks of ``task_size`` rows. Several relays may run
at once (the claims split the rows between them). A relay claims only while the Redis queue
holds fewer than ``backlog`` rows, so claims do not go stale waiting behind a backlog; rows
whose enqueue fails are released at once rather than left to their lease.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from crmkit.domain.values import utcnow
from crmkit.taskqueue.claims import ClaimedRows, Lease, message_rows, outbox_rows

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.taskqueue.huey_queue import TaskQueue

log = logging.getLogger(__name__)


@attrs.define
class RelayStats:
    passes: int = 0
    events: int = 0  # event ids enqueued
    messages: int = 0  # message ids enqueued
    released: int = 0  # claimed rows handed back because Redis refused the task

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class Relay:
    """Claims due rows of one CRM and enqueues them on ``queue``.

    :param batch: rows claimed per table and pass.
    :param task_size: rows per task: small enough that workers share a batch, large enough
        that a send task reuses its SMTP connection.
    :param backlog: claim nothing while Redis already holds about this many rows (default
        four batches).
    """

    def __init__(self, crm: CRM, queue: TaskQueue, *, batch: int = 50, task_size: int = 10, backlog: int | None = None):
        if batch < 1 or task_size < 1:
            raise ValueError("batch and task_size must be at least 1")
        self.crm = crm
        self.queue = queue
        self.batch = batch
        self.task_size = task_size
        self.backlog = backlog if backlog is not None else 4 * batch
        self.stats = RelayStats()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run_pass(self) -> int:
        """One pass; returns how many rows were enqueued."""
        self.stats.passes += 1
        self.crm.plugins.call_each_safely("crmkit_worker_tick", crm=self.crm, now=utcnow())
        room = self.backlog - self.queue.pending() * self.task_size
        if room <= 0 or self._stopping.is_set():
            return 0
        events = self._relay(outbox_rows(self.crm), lambda limit: self.crm.events.claim_due(limit),
                             self.queue.enqueue_events, min(self.batch, room))
        self.stats.events += events
        if self._stopping.is_set():
            return events
        messages = self._relay(message_rows(self.crm), lambda limit: self.crm.messages.jobs.claim(utcnow(), limit=limit),
                               self.queue.enqueue_messages, min(self.batch, room))
        self.stats.messages += messages
        return events + messages

    def _relay(self, rows: ClaimedRows, claim: Callable[[int], list[str]], enqueue: Callable[[Sequence[Lease]], None], limit: int) -> int:
        leases = rows.leases(claim(limit))
        for start in range(0, len(leases), self.task_size):
            chunk = leases[start:start + self.task_size]
            try:
                enqueue(chunk)
            except Exception:
                # Redis down or refusing: give the rows back now instead of after their lease.
                unsent = leases[start:]
                self.stats.released += rows.release(unsent)
                log.exception("relay: enqueueing %d row(s) failed; released them", len(unsent))
                raise
        return len(leases)
