"""The delivery runner: claims due deliveries, POSTs them signed, records each outcome.

* 2xx: delivered. 410 Gone: the receiver asked to stop; the subscription is disabled.
  Anything else — another status, a timeout, a refused connection — is retried with
  exponential backoff (30 s doubling, capped at 6 h); after :data:`MAX_ATTEMPTS` attempts
  (about 14 hours) the delivery is ``failed`` and waits for a manual redelivery.
* Claims work like the outbox's: a lease (``next_attempt_at`` pushed forward) taken in a
  transaction only one runner wins (``FOR UPDATE SKIP LOCKED`` on PostgreSQL/MariaDB,
  ``BEGIN IMMEDIATE`` on SQLite), so runners in several processes share the work and a runner
  that dies mid-request only delays its deliveries until the lease expires.
* Each outcome is written as soon as it is known, in its own transaction.
* Neither secrets nor URLs (which may carry tokens) are logged.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import sqlalchemy as sa

from crmkit.builtin.webhooks.records import DELIVERED, FAILED, PENDING, DeliveryReport, body_of
from crmkit.builtin.webhooks.signing import HEADER, sign
from crmkit.builtin.webhooks.tables import DELIVERIES, SUBSCRIPTIONS
from crmkit.domain.values import utcnow

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=6)
MAX_ATTEMPTS = 12  # 30 s doubling, capped at 6 h: the last retry comes about 14.5 h after the first attempt
LEASE = timedelta(minutes=5)  # longer than any request may take (see WebhookSettings.timeout)
BATCH = 200
_ERROR_BODY = 300  # bytes of a failed response's body kept in last_error


@attrs.frozen
class WebhookSettings:
    """``[plugins.webhooks]`` in crmkit.toml.

    :ivar timeout: seconds to wait for a receiver (connect and each read) before the attempt
        counts as failed and is retried.
    :ivar deliver_after_dispatch: deliver new deliveries (and retries that are due) right
        after the event is dispatched, in the dispatching process; with False only
        ``crmkit webhooks deliver`` / ``crm.webhooks.deliver()`` sends them.
    """

    timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    deliver_after_dispatch: bool = True


def backoff(attempts: int) -> timedelta:
    """Delay after failed attempt number ``attempts`` (1-based): 30 s, 1 min, 2 min … capped at 6 h."""
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


@attrs.frozen
class Outcome:
    response_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300

    @property
    def gone(self) -> bool:
        return self.response_code == 410


class Runner:
    def __init__(self, crm: CRM, settings: WebhookSettings):
        self.crm = crm
        self.settings = settings
        tables = crm.backend.metadata.tables
        self.deliveries: sa.Table = tables[DELIVERIES]
        self.subscriptions: sa.Table = tables[SUBSCRIPTIONS]

    @property
    def engine(self) -> sa.Engine:
        return self.crm.backend.engine

    def run(self, *, now: datetime | None = None, limit: int | None = None, ids: list[str] | None = None) -> DeliveryReport:
        """Attempt every due delivery (or the due ones among ``ids``), at most ``limit``.

        :param now: the time to schedule by (default: the clock); tests pass a later time
            instead of sleeping until retries are due.
        """
        at = now or utcnow()
        report = DeliveryReport()
        done = 0
        with httpx.Client(timeout=self.settings.timeout, follow_redirects=False, headers={"User-Agent": "crmkit-webhooks"}) as client:
            while limit is None or done < limit:
                claimed = self._claim(at, ids, min(BATCH, limit - done) if limit is not None else BATCH)
                if not claimed:
                    break
                for row in self._load(claimed):
                    if row.subscription_id in report.disabled:
                        self._release(row.id, at)  # its subscription was disabled a moment ago
                        continue
                    self._record(row, self._attempt(client, row), at, report)
                done += len(claimed)
                if ids is not None:
                    break
        return report

    # --- claiming -----------------------------------------------------------------------

    def _claim(self, now: datetime, ids: list[str] | None, limit: int) -> list[str]:
        d, s = self.deliveries.c, self.subscriptions.c
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            active = list(conn.scalars(sa.select(s.id).where(s.active.is_(True))))
            if not active:
                return []
            stmt = sa.select(d.id).where(d.status == PENDING, d.next_attempt_at <= now, d.subscription_id.in_(active)).order_by(d.created_at, d.id)
            stmt = stmt.where(d.id.in_(ids)) if ids is not None else stmt.limit(limit)
            if self.engine.dialect.name != "sqlite":
                stmt = stmt.with_for_update(skip_locked=True)
            won = list(conn.scalars(stmt))
            if won:
                conn.execute(sa.update(self.deliveries).where(d.id.in_(won)).values(next_attempt_at=now + LEASE))
        return won

    def _load(self, ids: list[str]) -> list[Any]:
        d, s = self.deliveries.c, self.subscriptions.c
        stmt = (
            sa.select(d.id, d.subscription_id, d.event_id, d.event_type, d.attempts, d.payload, s.url, s.secret, s.secret_env)
            .join_from(self.deliveries, self.subscriptions, d.subscription_id == s.id)
            .where(d.id.in_(ids))
            .order_by(d.created_at, d.id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def _release(self, delivery_id: str, now: datetime) -> None:
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            conn.execute(sa.update(self.deliveries).where(self.deliveries.c.id == delivery_id).values(next_attempt_at=now))

    # --- one attempt --------------------------------------------------------------------

    def _attempt(self, client: httpx.Client, row: Any) -> Outcome:
        secret = row.secret or (os.environ.get(row.secret_env) if row.secret_env else None)
        if not secret:
            return Outcome(error=f"the signing secret's environment variable {row.secret_env!r} is not set")
        body = body_of(row.payload)
        headers = {
            "Content-Type": "application/json",
            HEADER: sign(secret, body),
            "X-Crmkit-Event": row.event_type,
            "X-Crmkit-Event-Id": row.event_id,
            "X-Crmkit-Delivery": row.id,
        }
        try:
            with client.stream("POST", row.url, content=body, headers=headers) as response:
                code = response.status_code
                if 200 <= code < 300:
                    return Outcome(code)
                snippet = b""
                for chunk in response.iter_bytes():
                    snippet += chunk
                    if len(snippet) >= _ERROR_BODY:
                        break
        except httpx.TimeoutException as exc:
            return Outcome(error=f"no answer within {self.settings.timeout:g} s ({type(exc).__name__})")
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}")
        text = snippet[:_ERROR_BODY].decode("utf-8", "replace").strip()
        return Outcome(code, f"HTTP {code}" + (f": {text}" if text else ""))

    def _record(self, row: Any, outcome: Outcome, now: datetime, report: DeliveryReport) -> None:
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now, "response_code": outcome.response_code,
                                  "last_error": outcome.error, "next_attempt_at": None}
        if outcome.delivered:
            values.update(status=DELIVERED, delivered_at=now)
            report.delivered += 1
        elif outcome.gone:
            values.update(status=FAILED, last_error=f"{outcome.error} (the receiver asked to stop: subscription disabled)")
            report.failed += 1
            report.disabled.append(row.subscription_id)
        elif attempts >= MAX_ATTEMPTS:
            values.update(status=FAILED)
            report.failed += 1
        else:
            values.update(status=PENDING, next_attempt_at=now + backoff(attempts))
            report.retrying += 1
        with self.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            conn.execute(sa.update(self.deliveries).where(self.deliveries.c.id == row.id).values(**values))
            if outcome.gone:
                s = self.subscriptions.c
                conn.execute(sa.update(self.subscriptions).where(s.id == row.subscription_id)
                             .values(active=False, disabled_at=now, disabled_reason="the receiver answered 410 Gone"))
        if not outcome.delivered:
            log.warning("webhook delivery %s (event %s, subscription %s) attempt %d failed: %s",
                        row.id, row.event_id, row.subscription_id, attempts, values["last_error"])
