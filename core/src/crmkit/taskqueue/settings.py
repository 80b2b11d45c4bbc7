"""``[plugins.worker]`` in crmkit.toml: how ``crmkit worker`` runs."""

from __future__ import annotations

import re
from typing import Literal

import attrs

from crmkit.errors import ConfigError

MODES = ("inline", "redis")  # the values of WorkerSettings.mode


def check_queue_name(value: str, where: str = "--queue-name") -> str:
    """Return ``value`` if it can name a queue. huey silently drops every other character from
    the name its Redis keys are built from, so "crm-prod" and "crmprod" would share a queue."""
    if not re.fullmatch(r"[a-z0-9]+", value):
        raise ConfigError(f"{where}: must be lower-case letters and digits only (it names the Redis keys), got {value!r}")
    return value


@attrs.define
class WorkerSettings:
    #: ``inline``: each ``crmkit worker`` drains the database itself (the default, one machine
    #: or many sharing one database). ``redis``: relays hand work to workers through Redis.
    mode: Literal["inline", "redis"] = "inline"
    #: The Redis server carrying task notifications (``redis://host:6379/0``, ``rediss://`` for
    #: TLS); use ``"${REDIS_URL}"`` to keep credentials in the environment.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Names the Redis keys (``huey.redis.<queue_name>`` …), so several CRMs can share a server;
    #: lower-case letters and digits (checked by :func:`check_queue_name` when a worker starts).
    queue_name: str = "crmkit"
