"""One ``crmkit worker --mode redis`` process: a relay, huey worker threads, or both.

The main thread runs the relay's passes (when asked to) and watches huey's consumer threads;
:meth:`RedisWorker.stop` (what SIGTERM/SIGINT call) stops claiming, lets every thread finish
the row in hand, hands the unstarted messages of its task back and returns. For more CPU than
one process gets, run more processes; each may have ``workers`` threads.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from crmkit.taskqueue.executor import Executor
from crmkit.taskqueue.huey_queue import TaskQueue
from crmkit.taskqueue.relay import Relay

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)


class RedisWorker:
    """Relay and/or execute crmkit tasks through Redis until stopped.

    :param crm: the CRM the relay claims from (also used to report where the process runs).
    :param open_crm: opens one more CRM on the same store, for each worker thread.
    :param relay: run a relay in this process.
    :param workers: huey worker threads executing tasks (0: relay only).
    :param interval: seconds to wait when a pass found nothing due (and between checks).
    """

    def __init__(self, crm: CRM, open_crm: Callable[[], CRM], *, redis_url: str, queue_name: str, relay: bool = True,
                 workers: int = 1, interval: float = 1.0, batch: int = 50, task_size: int = 10, lease: timedelta | None = None):
        if workers < 0 or (workers == 0 and not relay):
            raise ValueError("a Redis worker needs worker threads, a relay, or both")
        if lease is not None:
            crm.events.lease = lease
            crm.messages.jobs.lease = lease
        self.crm = crm
        self.interval = interval
        self.workers = workers
        self.executor = Executor(open_crm, lease=lease)
        run = workers > 0
        self.queue = TaskQueue(redis_url, queue_name, events=self.executor.dispatch_events if run else None,
                               messages=self.executor.send_messages if run else None)
        self.relay = Relay(crm, self.queue, batch=batch, task_size=task_size) if relay else None
        self._stopping = threading.Event()
        self._consumer: Any = None

    def stop(self) -> None:
        """Stop claiming and executing after the rows in hand (safe from a signal handler)."""
        self._stopping.set()
        self.executor.stop()
        if self.relay is not None:
            self.relay.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        """Check Redis, then start the worker threads (huey's consumer, without its scheduler's
        periodic tasks: delays are due times in the database)."""
        self.queue.ping()
        if self.workers:
            self.queue.huey.on_shutdown(name="crmkit-close-crm")(self.executor.close_thread)
            self._consumer = self.queue.huey.create_consumer(workers=self.workers, worker_type="thread", periodic=False,
                                                             check_worker_health=True)
            # huey's consumer installs its own SIGTERM/SIGINT/SIGHUP handlers, made for its own
            # main loop, which crmkit does not run: keep the caller's (crmkit worker's graceful stop).
            previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
            self._consumer.start()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self, *, once: bool = False) -> None:
        """Until :meth:`stop`; with ``once``, until nothing is due, queued or in hand (seen
        twice in a row, an interval apart, so a task just taken from Redis is not missed)."""
        self.start()
        idle_seen = 0
        try:
            while not self.stopping:
                done = 0
                if self.relay is not None:
                    try:
                        done = self.relay.run_pass()
                    except Exception:
                        # The database or Redis restarting must not end a long-running relay.
                        log.exception("relay pass failed; retrying in %.1f s", self.interval)
                if self._consumer is not None:
                    self._consumer.check_worker_health()
                if once:
                    idle = done == 0 and self.queue.pending() == 0 and not self.executor.busy
                    idle_seen = idle_seen + 1 if idle else 0
                    if idle_seen >= 2:
                        break
                if done == 0:
                    self._stopping.wait(self.interval)
        finally:
            self.executor.stop()
            if self._consumer is not None:
                self._consumer.stop(graceful=True)  # joins the threads: each finishes its row in hand
            self.executor.close()
            self.queue.close()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = {**self.executor.stats.as_dict(), "skipped": self.executor.skipped}
        if self.relay is not None:
            result["relay"] = self.relay.stats.as_dict()
        return result
