"""``crmkit webhooks``: subscriptions, the delivery log, delivery and redelivery."""

from __future__ import annotations

import sys
from typing import Any

import click

from crmkit.builtin.webhooks.records import DELIVERED, FAILED, PENDING
from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_record, print_table, say

SUBSCRIPTION_COLUMNS = (
    ("id", lambda s: s.id), ("url", lambda s: s.url), ("events", lambda s: s.events), ("active", lambda s: s.active),
    ("secret", lambda s: s.secret_source), ("created", lambda s: s.created_at), ("disabled because", lambda s: s.disabled_reason),
)
DELIVERY_COLUMNS = (
    ("id", lambda d: d.id), ("event", lambda d: d.event_type), ("event id", lambda d: d.event_id), ("status", lambda d: d.status),
    ("attempts", lambda d: d.attempts), ("code", lambda d: d.response_code), ("next attempt", lambda d: d.next_attempt_at),
    ("error", lambda d: d.last_error),
)


def _report_text(report: Any) -> str:
    text = f"Delivered {report.delivered}, retrying {report.retrying}, failed {report.failed}"
    return text + (f"; disabled subscription(s) {', '.join(report.disabled)} (410 Gone)" if report.disabled else "")


def webhooks_group() -> click.Group:
    @click.group("webhooks")
    def webhooks() -> None:
        """Outbound webhooks: signed POSTs of events to your URLs."""

    @webhooks.command("add")
    @click.argument("url")
    @click.option("--event", "events", multiple=True, required=True, metavar="TYPE",
                  help="An event type to send (repeatable), e.g. contact.created; '*' for all.")
    @click.option("--secret-env", default=None, metavar="VAR",
                  help="Sign with the secret in this environment variable (read at each delivery). Default: generate one, shown once.")
    @json_option
    @pass_crm
    def add(crm: Any, url: str, events: tuple[str, ...], secret_env: str | None, as_json: bool) -> None:
        """Send the given events to URL."""
        created = crm.webhooks.add(url, events, secret_env=secret_env)

        def render() -> None:
            print_record(f"Webhook {created.subscription.id}", created.subscription)
            if created.secret:
                say(f"Signing secret (shown only now; store it with the receiver): {created.secret}", style="yellow")

        emit(as_json, created, render)

    @webhooks.command("list")
    @json_option
    @pass_crm
    def list_(crm: Any, as_json: bool) -> None:
        """Subscriptions (secrets are never shown)."""
        rows = crm.webhooks.list()
        emit(as_json, rows, lambda: print_table("Webhooks", rows, SUBSCRIPTION_COLUMNS))

    @webhooks.command("remove")
    @click.argument("subscription_id")
    @json_option
    @pass_crm
    def remove(crm: Any, subscription_id: str, as_json: bool) -> None:
        """Delete a subscription and its delivery log."""
        crm.webhooks.remove(subscription_id)
        emit(as_json, {"removed": subscription_id}, lambda: say(f"Removed webhook {subscription_id}"))

    @webhooks.command("enable")
    @click.argument("subscription_id")
    @json_option
    @pass_crm
    def enable(crm: Any, subscription_id: str, as_json: bool) -> None:
        """Resume a subscription that was disabled (its receiver answered 410 Gone)."""
        subscription = crm.webhooks.enable(subscription_id)
        emit(as_json, subscription, lambda: say(f"Enabled webhook {subscription_id}"))

    @webhooks.command("deliveries")
    @click.option("--subscription", "subscription_id", default=None, metavar="ID", help="Only this subscription's deliveries.")
    @click.option("--status", type=click.Choice([PENDING, DELIVERED, FAILED]), default=None)
    @click.option("--event", "event_id", default=None, metavar="EVENT_ID", help="Only deliveries of this event.")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @json_option
    @pass_crm
    def deliveries(crm: Any, subscription_id: str | None, status: str | None, event_id: str | None, limit: int, as_json: bool) -> None:
        """The delivery log, newest first."""
        rows = crm.webhooks.deliveries(subscription_id=subscription_id, status=status, event_id=event_id, limit=limit)
        emit(as_json, rows, lambda: print_table("Webhook deliveries", rows, DELIVERY_COLUMNS))

    @webhooks.command("redeliver")
    @click.argument("delivery_id")
    @json_option
    @pass_crm
    def redeliver(crm: Any, delivery_id: str, as_json: bool) -> None:
        """Send a delivery again now (exit status 1 if the receiver did not accept it)."""
        delivery = crm.webhooks.redeliver(delivery_id)
        ok = delivery.status == DELIVERED
        emit(as_json, delivery, lambda: say(f"Delivered {delivery_id} (HTTP {delivery.response_code})") if ok
             else say(f"Delivery {delivery_id} failed: {delivery.last_error}; status {delivery.status}", style="red"))
        if not ok:
            sys.exit(1)

    @webhooks.command("deliver")
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="Attempt at most this many deliveries.")
    @json_option
    @pass_crm
    def deliver(crm: Any, limit: int | None, as_json: bool) -> None:
        """Attempt every delivery that is due: new ones and retries whose time has come."""
        report = crm.webhooks.deliver(limit=limit)
        emit(as_json, report, lambda: say(_report_text(report)))

    return webhooks
