"""``crmkit audit list``: read the audit log."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_table
from crmkit.domain.values import utcnow

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Since(click.ParamType):
    """A point in time: ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00+02:00``; no offset
    means UTC) or an age such as ``30m``, ``24h``, ``7d``."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        relative = _RELATIVE.match(text)
        if relative:
            return utcnow() - timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is neither an ISO 8601 date/time (2024-05-01, 2024-05-01T12:00) nor an age (30m, 24h, 7d)", param, ctx)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _changed(entry: Any) -> str:
    return ", ".join(sorted(entry.changes)) if entry.type.endswith(".updated") else ""


def audit_group() -> click.Group:
    @click.group("audit")
    def audit() -> None:
        """The audit log: who changed what and when."""

    @audit.command("list")
    @click.option("--subject", "subject_id", default=None, metavar="ID", help="Only changes to this record.")
    @click.option("--contact", "contact_id", default=None, metavar="ID", help="Only changes concerning this contact (its own and its deals', activities' …).")
    @click.option("--actor", default=None, help="Only changes made by this actor.")
    @click.option("--type", "event_type", default=None, metavar="TYPE", help="Only this event type (deal.won) or family (contact.*).")
    @click.option("--since", type=Since(), default=None, help="Only changes at or after this time: ISO 8601 or an age (24h, 7d).")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @json_option
    @pass_crm
    def list_(crm: Any, subject_id: str | None, contact_id: str | None, actor: str | None, event_type: str | None,
              since: datetime | None, limit: int, as_json: bool) -> None:
        """Audit entries, newest first."""
        entries = crm.audit.query(subject_id=subject_id, contact_id=contact_id, actor=actor, type=event_type, since=since, limit=limit)
        emit(as_json, entries, lambda: print_table("Audit log", entries, (
            ("at", lambda e: e.occurred_at), ("actor", lambda e: e.actor), ("type", lambda e: e.type),
            ("subject", lambda e: e.subject_id), ("changed", _changed))))

    return audit
