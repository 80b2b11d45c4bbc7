"""Per-recipient-domain rate limits: a token bucket per domain.

Large mailbox providers defer or junk mail from a sender that suddenly sends them too much, so
the limit is per recipient domain rather than global. Each bucket holds up to ``burst`` tokens
and refills at ``rate`` per second; a send takes one. The buckets live in the channel object,
so the limit holds per worker process (N workers: N times the rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class DomainThrottle:
    def __init__(self, rate: float, burst: int, overrides: Mapping[str, float] | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.overrides = {domain.lower(): value for domain, value in (overrides or {}).items()}
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # domain -> (tokens, at)
        self._lock = threading.Lock()

    def rate_for(self, domain: str) -> float:
        return self.overrides.get(domain.lower(), self.rate)

    def reserve(self, domain: str, max_wait: float) -> float | None:
        """Take a token for ``domain``: the seconds to wait before sending (0: now), or None
        when that would be more than ``max_wait`` (nothing is taken then)."""
        rate = self.rate_for(domain)
        if rate <= 0:
            return 0.0
        key = domain.lower()
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
            if wait > max_wait:
                self._buckets[key] = (tokens, now)
                return None
            # Taking the token now (possibly going negative) reserves the slot, so concurrent
            # senders queue behind each other instead of all waking at the same moment.
            self._buckets[key] = (tokens - 1, now)
            return wait
