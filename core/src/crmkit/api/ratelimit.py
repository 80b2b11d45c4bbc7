"""Rate limits: per API key on authenticated endpoints, per client IP on public ones.

Public endpoints — the documentation, and plugin routes such as e-mail unsubscribe links, web
forms and providers' callbacks — are served without a key, so the client's address is the only
thing to count by. Every other request is counted against the API key it authenticated with
(after authentication, so a made-up key cannot spend someone else's allowance).

Each counter is a token bucket: ``count`` requests may come at once, and the allowance refills
continuously at ``count`` per ``period``. A request that finds the bucket empty is answered 429
in the API's error shape with ``Retry-After`` (whole seconds until a request would be
accepted). Litestar's ``RateLimitMiddleware`` was not used: it counts in fixed windows (twice
the limit can pass across a window's edge), keeps a timestamp per request of the window in its
store (JSON-encoded again on every request), sets no ``Retry-After``, and applies one limit
where crmkit needs two.

This module imports no Litestar at import time: its settings are declared on every CRM open
(``crmkit.cli.serve_commands``), and the web stack loads only when the API is built.

Buckets live in the serving process: with several uvicorn workers each enforces the limit on
its own (a shared store such as Redis is not built). Configure in ``crmkit.toml``::

    [plugins.api]
    rate_limit = "1200/minute"        # per API key; "off" disables
    public_rate_limit = "300/minute"  # per client IP on public endpoints; "off" disables
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.api.keys import ApiKey

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from crmkit.api.errors import ApiError

SECTION = "api"
UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)
#: Past this many buckets, idle ones (full again, so forgetting them changes nothing) are dropped.
MAX_IDLE_BUCKETS = 10_000


@attrs.frozen
class Rate:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"600/minute"`` → a rate; ``"off"`` → None (no limit)."""
        if text.strip().lower() in ("off", "none", "0"):
            return None
        match = _RATE.fullmatch(text)
        if match is None or int(match[1]) < 1:
            raise ValueError(f"{text!r} is not a rate: write <count>/<second|minute|hour|day> such as 600/minute, or off")
        return cls(int(match[1]), UNITS[match[2].lower()])

    def __str__(self) -> str:
        unit = next(name for name, seconds in UNITS.items() if seconds == self.period)
        return f"{self.count}/{unit}"


def _rate(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    Rate.parse(value)


@attrs.define(kw_only=True)
class ApiSettings:
    """``[plugins.api]`` in crmkit.toml.

    :ivar rate_limit: requests per API key (``<count>/<second|minute|hour|day>``, or ``off``).
    :ivar public_rate_limit: requests per client IP address on endpoints served without a key.
    """

    rate_limit: str = attrs.field(default="1200/minute", validator=_rate)
    public_rate_limit: str = attrs.field(default="300/minute", validator=_rate)


class TokenBuckets:
    """One token bucket per identity, all with the same rate. Thread-safe."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.rate, self.clock = rate, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, as of)
        self._lock = threading.Lock()

    def take(self, identity: str) -> float:
        """Spend one request of ``identity``'s allowance: 0.0 if it may proceed, else the
        seconds until it may."""
        per_second = self.rate.count / self.rate.period
        with self._lock:
            now = self.clock()
            tokens, since = self._buckets.get(identity, (float(self.rate.count), now))
            tokens = min(float(self.rate.count), tokens + (now - since) * per_second)
            if tokens >= 1.0:
                self._buckets[identity] = (tokens - 1.0, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[identity] = (tokens, now)
            return (1.0 - tokens) / per_second

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) > MAX_IDLE_BUCKETS:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self.rate.period}


@attrs.frozen
class RateLimits:
    """The two limits of an app; None means unlimited."""

    per_key: TokenBuckets | None
    per_ip: TokenBuckets | None

    @classmethod
    def from_settings(cls, settings: ApiSettings, clock: Callable[[], float] = time.monotonic) -> RateLimits:
        return cls.of(settings.rate_limit, settings.public_rate_limit, clock)

    @classmethod
    def of(cls, per_key: str, per_ip: str, clock: Callable[[], float] = time.monotonic) -> RateLimits:
        """From rates written as in crmkit.toml (``"600/minute"``, ``"off"``)."""
        key_rate, ip_rate = Rate.parse(per_key), Rate.parse(per_ip)
        return cls(TokenBuckets(key_rate, clock) if key_rate else None, TokenBuckets(ip_rate, clock) if ip_rate else None)

    @property
    def enabled(self) -> bool:
        return self.per_key is not None or self.per_ip is not None


def too_many_requests(wait: float, what: str, rate: Rate) -> ApiError:
    from crmkit.api.errors import ApiError

    seconds = max(1, math.ceil(wait))
    return ApiError(429, "rate_limited", f"too many requests {what} (limit {rate}); retry in {seconds} s",
                    headers={"Retry-After": str(seconds)})


class RateLimitMiddleware:
    """Counts each HTTP request against its API key, or its client address on a public route.

    Placed after authentication, so ``scope["user"]`` is the key that authenticated.
    """

    def __init__(self, app: ASGIApp, limits: RateLimits):
        from crmkit.api.auth import PUBLIC

        self.app, self.limits, self.public = app, limits, PUBLIC

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.check(scope)
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        handler = scope.get("route_handler")
        user = scope.get("user")
        if handler is not None and handler.opt.get(self.public) or not isinstance(user, ApiKey):
            buckets, identity, what = self.limits.per_ip, _client(scope), "from this address"
        else:
            buckets, identity, what = self.limits.per_key, user.id, "with this API key"
        if buckets is None:
            return
        wait = buckets.take(identity)
        if wait > 0:
            raise too_many_requests(wait, what, buckets.rate)


def _client(scope: Scope) -> str:
    """The client's address as the server saw it (behind a proxy, run uvicorn with
    ``--proxy-headers`` and ``--forwarded-allow-ips`` so this is the real client)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def rate_limiting(limits: RateLimits) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware factory to list after authentication in ``Litestar(middleware=...)``."""

    def wrap(app: ASGIApp) -> ASGIApp:
        return RateLimitMiddleware(app, limits)

    return wrap


#: The OpenAPI response every operation may answer when its caller is over the limit.
RESPONSE_NAME = "TooManyRequests"
RETRY_AFTER = {"description": "Seconds to wait before the request would be accepted.", "schema": {"type": "integer", "minimum": 1}}


def document(openapi: Any) -> None:
    """Add the 429 answer to every operation of ``openapi`` (Litestar's OpenAPI object)."""
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is not None and operation.responses is not None:
                operation.responses.setdefault("429", {"$ref": f"#/components/responses/{RESPONSE_NAME}"})
