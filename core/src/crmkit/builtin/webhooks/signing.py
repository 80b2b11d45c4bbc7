"""Webhook signatures: how crmkit signs a delivery and how a receiver checks it.

Every delivery carries the header::

    X-Crmkit-Signature: t=1717000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``t`` is the Unix time of the attempt and ``v1`` the hex HMAC-SHA256, keyed with the
subscription's secret, of ``f"{t}." + body`` (the raw request body bytes). Signing the time
with the body lets a receiver refuse replays of an old request. A receiver checks it with
:func:`verify_signature` (the standard library is all it needs)::

    from crmkit.builtin.webhooks.signing import verify_signature

    if not verify_signature(secret, request.headers["X-Crmkit-Signature"], request.body):
        return 400

and deduplicates on the payload's ``id`` (the event id): a delivery may arrive more than once.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta

HEADER = "X-Crmkit-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = timedelta(minutes=5)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` at ``timestamp`` (now by default)."""
    at = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={at},{SCHEME}={_digest(secret, at, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance: timedelta | float | None = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid crmkit signature of ``body`` under ``secret``.

    :param header: the ``X-Crmkit-Signature`` value; several ``v1=`` entries are allowed (any
        one matching is enough), so a sender can sign with an old and a new secret at once.
    :param body: the request body exactly as received (bytes, before any JSON parsing).
    :param tolerance: how far the signed time may be from ``now`` (seconds or a timedelta);
        None accepts any age (only for replaying stored requests in tests).
    :param now: the receiver's Unix time (default: the clock).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if tolerance is not None:
        limit = tolerance.total_seconds() if isinstance(tolerance, timedelta) else float(tolerance)
        if abs((time.time() if now is None else now) - timestamp) > limit:
            return False
    expected = _digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
