"""The huey side: one :class:`huey.RedisHuey` per queue, its two tasks, and a JSON serializer.

Tasks are registered on a Huey instance built here at run time (never at import), under fixed
names, so a relay on one machine and workers on another agree on them without sharing a module
level object. Task messages are JSON rather than huey's default pickle: they only ever carry
row ids and lease values, and a worker must not run whatever code someone able to write to
Redis puts in a pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from crmkit.errors import ConfigError
from crmkit.taskqueue.claims import Lease

EVENTS_TASK = "crmkit_dispatch_events"
MESSAGES_TASK = "crmkit_send_messages"


def _huey() -> Any:
    try:
        import huey
        import huey.serializer
        import redis  # noqa: F401 - huey's Redis storage needs it; say so before huey does
    except ImportError as exc:
        raise ConfigError(f"worker mode 'redis' needs huey and the redis client: pip install 'crmkit[redis]' ({exc})") from None
    return huey


class _JSONSerializer:
    """huey's serializer interface over JSON: a message is huey's ``Message`` tuple, whose
    fields are all JSON values for crmkit's tasks."""

    def __init__(self, message_type: Any):
        self.message_type = message_type

    def serialize(self, data: Any) -> bytes:
        return json.dumps(list(data), separators=(",", ":")).encode()

    def deserialize(self, data: bytes) -> Any:
        values = json.loads(data)
        # Revocation flags and results come through here too; only task messages are lists.
        return self.message_type(*values) if isinstance(values, list) else values


class TaskQueue:
    """A Redis queue of crmkit tasks.

    :param redis_url: the Redis server (``redis://host:port/db``).
    :param name: names the Redis keys (``huey.redis.<name>`` …).
    :param events: called with a task's ``[(event id, lease), …]`` when a worker executes it;
        ``None`` in a process that only enqueues (a relay), which then refuses to execute.
    :param messages: the same for send jobs.
    """

    def __init__(self, redis_url: str, name: str, *, events: Callable[[list[Lease]], Any] | None = None,
                 messages: Callable[[list[Lease]], Any] | None = None):
        huey = _huey()
        from huey.registry import Message

        self.name = name
        self.huey = huey.RedisHuey(name, url=redis_url, results=False, serializer=_JSONSerializer(Message),
                                   blocking=True, read_timeout=1)
        self._events = self.huey.task(name=EVENTS_TASK)(self._runner("events", events))
        self._messages = self.huey.task(name=MESSAGES_TASK)(self._runner("messages", messages))

    @staticmethod
    def _runner(kind: str, handler: Callable[[list[Lease]], Any] | None) -> Callable[[list[list[str]]], None]:
        def run(leases: list[list[str]]) -> None:
            if handler is None:
                raise RuntimeError(f"this process only enqueues crmkit {kind} tasks; run `crmkit worker --mode redis` to execute them")
            handler([(row_id, lease) for row_id, lease in leases])

        return run

    # --- producing ------------------------------------------------------------------------

    def enqueue_events(self, leases: Sequence[Lease]) -> None:
        self._events([list(lease) for lease in leases])

    def enqueue_messages(self, leases: Sequence[Lease]) -> None:
        self._messages([list(lease) for lease in leases])

    # --- inspecting -----------------------------------------------------------------------

    def pending(self) -> int:
        """Tasks waiting in Redis (not yet taken by a worker)."""
        return int(self.huey.pending_count())

    def ping(self) -> None:
        """Fail now, naming the server, if Redis cannot be reached."""
        try:
            self.huey.storage.conn.ping()
        except Exception as exc:
            url = self.huey.storage.pool.connection_kwargs
            where = f"{url.get('host', '?')}:{url.get('port', '?')}/{url.get('db', 0)}"
            raise ConfigError(f"worker mode 'redis': cannot reach Redis at {where}: {type(exc).__name__}: {exc}") from None

    def flush(self) -> None:
        """Delete this queue's keys (tasks, schedule, results, locks) and nothing else."""
        self.huey.flush()
        self.huey.storage.conn.delete(self.huey.storage.error_key)

    def close(self) -> None:
        self.huey.storage.pool.disconnect()
