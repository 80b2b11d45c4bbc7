"""``crmkit messages``: the send queue from the command line — list messages (by status,
channel, contact, or those whose delivery is ambiguous), show one, the dead-letter list, retry a
dead letter, and drain what is due. A built-in command module (``crmkit_register_commands``);
every command takes ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_record, print_table, say
from crmkit.plugins import hookimpl

#: Every state a message can be in (see crmkit.channels.jobs and MessageService.record_receipt).
STATUSES = ("queued", "retrying", "handing_over", "sent", "vetoed", "dead", "delivered", "soft_bounce", "hard_bounce", "complaint")

MESSAGE_COLUMNS = (
    ("id", lambda m: m["id"]), ("status", lambda m: m["status"]), ("channel", lambda m: m["channel"]),
    ("contact", lambda m: m["contact_id"]), ("to", lambda m: m["address"]), ("purpose", lambda m: m["purpose"]),
    ("subject", lambda m: (m["subject"] or m["body"] or "")[:60]), ("attempts", lambda m: m["attempts"]),
    ("ambiguous", lambda m: m["ambiguous"] or ""), ("next attempt", lambda m: m["next_attempt_at"]),
    ("updated", lambda m: m["updated_at"]), ("why", lambda m: m["veto_reason"] or m["last_error"]),
)

limit_option = click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many, newest first.")


def messages_group() -> click.Group:
    @click.group("messages")
    def messages() -> None:
        """Outbound messages: the send queue, dead letters and ambiguous deliveries."""

    @messages.command("list")
    @click.option("--status", type=click.Choice(STATUSES), default=None, help="Only messages in this state.")
    @click.option("--channel", default=None, help="Only this channel's (email, sms …).")
    @click.option("--contact", "contact_id", default=None, metavar="ID", help="Only messages to this contact.")
    @click.option("--ambiguous", is_flag=True,
                  help="Only messages handed over at least once without an answer (the recipient may hold a second copy).")
    @limit_option
    @json_option
    @pass_crm
    def list_(crm: Any, status: str | None, channel: str | None, contact_id: str | None, ambiguous: bool, limit: int, as_json: bool) -> None:
        """Messages, newest first."""
        found = crm.messages.list(status=status, channel=channel, contact_id=contact_id, ambiguous=ambiguous or None, limit=limit)
        emit(as_json, found, lambda: print_table("Messages", found, MESSAGE_COLUMNS))

    @messages.command("show")
    @click.argument("message_id")
    @json_option
    @pass_crm
    def show(crm: Any, message_id: str, as_json: bool) -> None:
        """One message: its state, attempts, errors and body."""
        found = crm.messages.get(message_id)
        emit(as_json, found, lambda: print_record(f"Message {message_id}", found))

    @messages.command("dead")
    @limit_option
    @json_option
    @pass_crm
    def dead(crm: Any, limit: int, as_json: bool) -> None:
        """The dead-letter list: messages that failed permanently or ran out of retries."""
        found = crm.messages.dead_letters(limit=limit)
        emit(as_json, found, lambda: print_table("Dead letters", found, MESSAGE_COLUMNS))

    @messages.command("retry")
    @click.argument("message_ids", nargs=-1, required=True, metavar="MESSAGE_ID...")
    @json_option
    @pass_crm
    def retry(crm: Any, message_ids: tuple[str, ...], as_json: bool) -> None:
        """Give dead letters a new set of attempts (after fixing the cause); the worker, or
        crmkit messages drain, sends them."""
        done = [crm.messages.requeue(message_id) for message_id in message_ids]
        emit(as_json, done, lambda: say(f"{len(done)} message(s) queued again: {', '.join(m['id'] for m in done)}"))

    @messages.command("drain")
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="Send at most this many.")
    @json_option
    @pass_crm
    def drain(crm: Any, limit: int | None, as_json: bool) -> None:
        """Send every message that is due now, once (crmkit worker keeps doing it)."""
        report = crm.messages.drain(limit=limit)
        emit(as_json, report, lambda: say(f"Sent {report.sent}, vetoed {report.vetoed}, deferred {report.deferred}, "
                                           f"retrying {report.retrying}, dead {report.dead}"))

    return messages


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(messages_group())
