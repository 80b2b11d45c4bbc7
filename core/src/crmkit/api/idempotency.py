"""``Idempotency-Key`` on POST: a retried request gets the first response instead of a second
write.

The key is stored hashed together with the API key that sent it (two clients cannot collide)
and a hash of the request (method, path, query, body). The first request reserves the key in a
committed row, runs, and stores its response — errors included, except 5xx, which release the
key so the retry runs again. A retry with the same request replays the stored response
(``Idempotent-Replayed: true``); the same key with a different request is refused (422); a retry
while the first is still running gets 409. Keys are kept for :data:`RETENTION`; a reservation
whose request died without answering is taken over after :data:`LEASE`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from litestar import Response

from crmkit.api.errors import ApiError, bad_request, error_response
from crmkit.domain.values import utcnow

if TYPE_CHECKING:
    from crmkit.app import CRM

HEADER = "Idempotency-Key"
RETENTION = timedelta(hours=24)
LEASE = timedelta(minutes=5)
MAX_LENGTH = 255
#: Response headers worth replaying (the rest are recomputed by the server).
REPLAYED_HEADERS = ("etag", "location", "x-intake-outcome")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def request_hash(method: str, path: str, query: str, body: Any) -> str:
    canonical = json.dumps({"method": method, "path": path, "query": query, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return _sha256(canonical)


class IdempotencyStore:
    def __init__(self, crm: CRM):
        self.crm = crm

    def run(self, key: str | None, principal_id: str, fingerprint: str, produce: Callable[[], Response[Any]]) -> Response[Any]:
        """Answer a POST: replay, refuse, or run ``produce`` and remember its response.

        ``produce`` must not raise for request errors; it returns error responses, which are
        remembered like any other first response.
        """
        if key is None:
            return produce()
        if not key.strip() or len(key) > MAX_LENGTH:
            raise bad_request(HEADER, "invalid_header", f"must be 1 to {MAX_LENGTH} characters")
        key_hash = _sha256(f"{principal_id}\n{key}")
        stored = self._reserve(key_hash, principal_id, fingerprint)
        if stored is not None:
            return self._answer_retry(stored, fingerprint)
        try:
            response = produce()
        except BaseException:
            self._release(key_hash)
            raise
        if response.status_code >= 500:
            self._release(key_hash)
        else:
            self._complete(key_hash, response)
        return response

    def _reserve(self, key_hash: str, principal_id: str, fingerprint: str) -> Any:
        """Insert the reservation, or return the row that holds the key already."""
        now = utcnow()
        for _attempt in range(2):
            try:
                with self.crm.uow() as uow:
                    table = uow.table("idempotency_keys")
                    conn = uow.connection
                    assert conn is not None
                    # Forgetting expired keys here keeps the table bounded without a scheduler.
                    conn.execute(sa.delete(table).where(table.c.created_at < now - RETENTION))
                    row = conn.execute(sa.select(table).where(table.c.key_hash == key_hash)).first()
                    if row is not None and (row.status is not None or row.created_at >= now - LEASE):
                        return row
                    if row is not None:  # its request died without answering
                        conn.execute(sa.delete(table).where(table.c.key_hash == key_hash))
                    conn.execute(sa.insert(table), [{"key_hash": key_hash, "api_key_id": principal_id, "request_hash": fingerprint,
                                                      "status": None, "response": None, "created_at": now}])
                    return None
            except sa.exc.IntegrityError:
                continue  # another request reserved the key between our read and insert: read it
        raise ApiError(409, "idempotency_in_progress", f"a request with this {HEADER} is being processed; retry later")

    def _answer_retry(self, row: Any, fingerprint: str) -> Response[Any]:
        if row.request_hash != fingerprint:
            raise ApiError(422, "idempotency_key_reused", f"this {HEADER} was used for a different request; use a new key for a new request")
        if row.status is None:
            raise ApiError(409, "idempotency_in_progress", f"the first request with this {HEADER} is still being processed; retry later")
        stored = row.response or {}
        headers = {**stored.get("headers", {}), "Idempotent-Replayed": "true"}
        return Response(stored.get("body"), status_code=row.status, headers=headers)

    def _complete(self, key_hash: str, response: Response[Any]) -> None:
        headers = {name: value for name, value in response.headers.items() if name.lower() in REPLAYED_HEADERS}
        with self.crm.uow() as uow:
            table = uow.table("idempotency_keys")
            assert uow.connection is not None
            uow.connection.execute(sa.update(table).where(table.c.key_hash == key_hash).values(
                status=response.status_code, response={"body": response.content, "headers": headers}))

    def _release(self, key_hash: str) -> None:
        with self.crm.uow() as uow:
            table = uow.table("idempotency_keys")
            assert uow.connection is not None
            uow.connection.execute(sa.delete(table).where(table.c.key_hash == key_hash))


def guarded(produce: Callable[[], Response[Any]]) -> Callable[[], Response[Any]]:
    """``produce`` with request errors turned into error responses (so they are remembered)."""

    def run() -> Response[Any]:
        try:
            return produce()
        except Exception as exc:  # noqa: BLE001 - every error becomes the API's error response
            return error_response(exc)

    return run
