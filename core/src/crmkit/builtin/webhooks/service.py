"""``crm.webhooks``: manage subscriptions, enqueue deliveries, run and inspect them."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from crmkit.builtin.audit.subjects import contact_of
from crmkit.builtin.webhooks.delivery import Runner, WebhookSettings
from crmkit.builtin.webhooks.records import ALL_EVENTS, PENDING, Delivery, DeliveryReport, NewSubscription, Subscription, payload_of
from crmkit.builtin.webhooks.tables import DELIVERIES, SUBSCRIPTIONS
from crmkit.domain import Event
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import CRMError, FieldIssue, NotFound, ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM

SECTION = "webhooks"
#: Event types the plugin emits, so changes to who receives the CRM's data are audited.
EVENT_TYPES = {
    "webhook.subscribed": "a webhook subscription was added",
    "webhook.unsubscribed": "a webhook subscription was removed",
    "webhook.enabled": "a disabled webhook subscription was enabled again",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_MAX = 2000
#: How long the active subscriptions are reused for queueing. Every event is handed to the
#: subscriber on its own, and reading the table for each one cost an import more than the
#: import itself; changes made through this object apply at once, others within this time.
SUBSCRIPTIONS_TTL = 1.0


class Webhooks:
    def __init__(self, crm: CRM):
        self.crm = crm
        self.settings: WebhookSettings = crm.settings_for(SECTION)
        self.runner = Runner(crm, self.settings)
        tables = crm.backend.metadata.tables
        self.subscriptions: sa.Table = tables[SUBSCRIPTIONS]
        self.deliveries_table: sa.Table = tables[DELIVERIES]
        self._active: tuple[float, list[Subscription]] | None = None

    # --- subscriptions ------------------------------------------------------------------

    def add(self, url: str, events: Iterable[str], *, secret_env: str | None = None, actor: str | None = None) -> NewSubscription:
        """Subscribe ``url`` to ``events`` (event types, or ``"*"`` for all).

        The payloads are signed with the secret held in the environment variable
        ``secret_env`` (read at each delivery, never stored), or else with a generated secret
        that is returned here once and never shown again.
        """
        wanted = list(dict.fromkeys(e.strip() for e in events if e.strip()))
        issues = [*self._check_url(url), *self._check_events(wanted), *self._check_secret_env(secret_env)]
        if issues:
            raise ValidationFailed(issues)
        secret = None if secret_env else "whsec_" + secrets.token_urlsafe(32)
        row = {"id": new_id(), "url": url.strip(), "events": wanted, "secret": secret, "secret_env": secret_env,
               "active": True, "created_at": utcnow()}
        with self.crm.uow(actor) as uow:
            assert uow.connection is not None
            uow.connection.execute(sa.insert(self.subscriptions).values(**row))
            uow.emit("webhook.subscribed", row["id"], {"url": row["url"], "events": wanted, "secret_source": "env" if secret_env else "generated"})
            self._forget()  # before the commit dispatches: '*' subscriptions get their own creation
        return NewSubscription(subscription=self.get(row["id"]), secret=secret)

    def _check_url(self, url: str) -> list[FieldIssue]:
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError) as exc:
            return [FieldIssue("url", "invalid_url", f"not a valid URL: {exc}")]
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return [FieldIssue("url", "invalid_url", "must be an absolute http:// or https:// URL")]
        if len(url.strip()) > _URL_MAX:
            return [FieldIssue("url", "too_long", f"must be at most {_URL_MAX} characters")]
        return []

    def _check_events(self, wanted: list[str]) -> list[FieldIssue]:
        if not wanted:
            return [FieldIssue("events", "required", f"name at least one event type (or {ALL_EVENTS!r} for all)")]
        unknown = [e for e in wanted if e != ALL_EVENTS and e not in self.crm.event_types]
        if unknown:
            known = ", ".join(sorted(self.crm.event_types))
            return [FieldIssue("events", "unknown_event_type", f"not registered: {', '.join(unknown)} (registered: {known})")]
        return []

    def _check_secret_env(self, name: str | None) -> list[FieldIssue]:
        if name is None:
            return []
        if not _ENV_NAME.fullmatch(name):
            return [FieldIssue("secret_env", "invalid", f"{name!r} is not an environment variable name")]
        if not os.environ.get(name):
            return [FieldIssue("secret_env", "not_set", f"environment variable {name} is not set (or empty) here")]
        return []

    def list(self) -> list[Subscription]:
        with self.crm.backend.connect() as conn:
            rows = conn.execute(sa.select(self.subscriptions).order_by(self.subscriptions.c.created_at, self.subscriptions.c.id))
            return [Subscription.from_row(row) for row in rows]

    def get(self, subscription_id: str) -> Subscription:
        return Subscription.from_row(self._row(self.subscriptions, subscription_id, "webhook subscription"))

    def _row(self, table: sa.Table, ident: str, kind: str) -> Any:
        with self.crm.backend.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == ident)).first()
        if row is None:
            raise NotFound(kind, ident)
        return row

    def remove(self, subscription_id: str, *, actor: str | None = None) -> None:
        """Delete the subscription and its delivery log; nothing more is sent to it."""
        subscription = self.get(subscription_id)
        with self.crm.uow(actor) as uow:
            assert uow.connection is not None
            uow.connection.execute(sa.delete(self.subscriptions).where(self.subscriptions.c.id == subscription_id))
            uow.emit("webhook.unsubscribed", subscription_id, {"url": subscription.url, "events": subscription.events})
            self._forget()

    def enable(self, subscription_id: str, *, actor: str | None = None) -> Subscription:
        """Resume a subscription disabled by a 410; its pending deliveries are sent again."""
        self.get(subscription_id)
        with self.crm.uow(actor) as uow:
            assert uow.connection is not None
            uow.connection.execute(sa.update(self.subscriptions).where(self.subscriptions.c.id == subscription_id)
                                   .values(active=True, disabled_at=None, disabled_reason=None))
            uow.emit("webhook.enabled", subscription_id, {})
            self._forget()
        return self.get(subscription_id)

    # --- deliveries ---------------------------------------------------------------------

    def _subscribed(self, fresh: bool = False) -> list[Subscription]:
        """The active subscriptions, read at most every :data:`SUBSCRIPTIONS_TTL` seconds."""
        cached = self._active
        if fresh or cached is None or time.monotonic() - cached[0] > SUBSCRIPTIONS_TTL:
            with self.crm.backend.connect() as conn:
                rows = conn.execute(sa.select(self.subscriptions).where(self.subscriptions.c.active.is_(True)))
                cached = self._active = (time.monotonic(), [Subscription.from_row(row) for row in rows])
        return cached[1]

    def _forget(self) -> None:
        self._active = None

    def enqueue(self, event: Event) -> list[str]:
        """Queue one delivery of ``event`` per active subscription that wants it; an event
        handed over again (a dispatcher retry) queues nothing new. Returns the new ids."""
        matching = [s for s in self._subscribed() if s.wants(event.type)]
        if not matching:
            return []
        try:
            return self._insert(event, matching)
        except sa.exc.IntegrityError:
            # Another process queued this event at the same moment (the unique key kept its
            # rows), or a subscription was removed since it was read: look again, once. A
            # second failure reaches the dispatcher, which retries this subscriber later.
            return self._insert(event, [s for s in self._subscribed(fresh=True) if s.wants(event.type)])

    def _insert(self, event: Event, matching: list[Subscription]) -> list[str]:
        d, now = self.deliveries_table.c, utcnow()
        payload, contact_id = payload_of(event), contact_of(event)
        with self.crm.backend.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            queued = set(conn.scalars(sa.select(d.subscription_id).where(d.event_id == event.id)))
            rows = [
                {"id": new_id(), "subscription_id": s.id, "event_id": event.id, "event_type": event.type, "contact_id": contact_id,
                 "payload": payload, "status": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
                for s in matching if s.id not in queued
            ]
            if rows:
                conn.execute(sa.insert(self.deliveries_table), rows)
        return [row["id"] for row in rows]

    def deliver(self, *, now: datetime | None = None, limit: int | None = None) -> DeliveryReport:
        """Attempt every delivery that is due (new ones and retries whose time has come)."""
        return self._ran(self.runner.run(now=now, limit=limit))

    def _ran(self, report: DeliveryReport) -> DeliveryReport:
        if report.disabled:
            self._forget()  # a 410 disabled a subscription: stop queueing for it now
        return report

    def deliveries(self, *, subscription_id: str | None = None, status: str | None = None, event_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        """The delivery log, newest first."""
        d = self.deliveries_table.c
        stmt = sa.select(self.deliveries_table).order_by(d.created_at.desc(), d.id).limit(limit)
        for column, value in ((d.subscription_id, subscription_id), (d.status, status), (d.event_id, event_id)):
            if value is not None:
                stmt = stmt.where(column == value)
        with self.crm.backend.connect() as conn:
            return [Delivery.from_row(row) for row in conn.execute(stmt)]

    def delivery(self, delivery_id: str) -> Delivery:
        return Delivery.from_row(self._row(self.deliveries_table, delivery_id, "webhook delivery"))

    def redeliver(self, delivery_id: str, *, now: datetime | None = None) -> Delivery:
        """Send a delivery again now, whatever its state, with a fresh retry schedule; returns
        it after the attempt."""
        delivery = self.delivery(delivery_id)
        subscription = self.get(delivery.subscription_id)
        if not subscription.active:
            raise CRMError(f"webhook subscription {subscription.id} is disabled ({subscription.disabled_reason}); "
                           f"enable it first: crmkit webhooks enable {subscription.id}")
        at = now or utcnow()
        with self.crm.backend.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            conn.execute(sa.update(self.deliveries_table).where(self.deliveries_table.c.id == delivery_id)
                         .values(status=PENDING, attempts=0, next_attempt_at=at))
        self._ran(self.runner.run(now=at, ids=[delivery_id]))
        return self.delivery(delivery_id)

    # --- personal data ------------------------------------------------------------------

    def about(self, contact_id: str) -> list[dict[str, Any]]:
        """Every delivery whose payload concerns the person, with where it went."""
        d, s = self.deliveries_table.c, self.subscriptions.c
        stmt = (sa.select(d.id, d.event_id, d.event_type, d.status, d.created_at, d.delivered_at, d.payload, s.url)
                .join_from(self.deliveries_table, self.subscriptions, d.subscription_id == s.id)
                .where(d.contact_id == contact_id).order_by(d.created_at, d.id))
        with self.crm.backend.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]


def redact_deliveries(conn: sa.Connection, deliveries: sa.Table, contact_id: str) -> None:
    """Replace the data in every payload about the person with the core's erasure marker;
    the envelope (event id, type, time) stays so the log still reads."""
    rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.payload).where(deliveries.c.contact_id == contact_id)).all()
    for row in rows:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == row.id).values(payload={**row.payload, "data": {"erased": True}}))
