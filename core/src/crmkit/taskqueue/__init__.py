"""Scale-out workers: the database outbox stays the queue of record, Redis (through huey) only
carries which rows to work on next.

``crmkit worker --mode redis`` splits the in-process worker (:mod:`crmkit.worker`) in two roles
that may run on any number of machines:

* a **relay** (:class:`~crmkit.taskqueue.relay.Relay`) claims due outbox events and due send
  jobs with the same leases the in-process worker uses and enqueues huey tasks carrying only
  ``(row id, lease)`` pairs; relays are safe to run concurrently (each row is claimed by one);
* **workers** (:class:`~crmkit.taskqueue.executor.Executor` run by huey's consumer threads)
  take each row over from the relay's lease — a compare-and-set on the lease value, so a task
  delivered twice runs once — and dispatch or send it against the database.

Nothing is only in Redis: a task lost with a killed worker or a flushed Redis leaves its rows
leased, and once the lease runs out a relay claims and enqueues them again. Retries, backoff,
dead letters, quiet-hour deferrals and sequence delays are due times in the database, never
Redis schedules. huey and the redis client are the optional extra ``crmkit[redis]``; nothing
here is imported unless a worker runs in Redis mode.
"""

from __future__ import annotations

from crmkit.taskqueue.settings import WorkerSettings

__all__ = ["WorkerSettings"]
