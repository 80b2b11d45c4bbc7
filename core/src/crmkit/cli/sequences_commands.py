"""``crmkit sequences``: save nurture sequences from a TOML/JSON file, list and show them,
enroll and unenroll contacts, inspect enrollments, and send due steps (``tick``). Registered by
:mod:`crmkit.builtin.sequences_plugin`; built per CLI (no commands at import)."""

from __future__ import annotations

from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_json, print_table, say
from crmkit.domain.values import parse_datetime
from crmkit.sequences.service import STATUSES, load_definition

SEQUENCE_COLUMNS = (
    ("name", lambda s: s.name), ("steps", lambda s: [f"{st.channel}:{st.template}+{st.delay}" for st in s.steps]),
    ("exit on", lambda s: s.exit_on), ("description", lambda s: s.description), ("id", lambda s: s.id),
)
ENROLLMENT_COLUMNS = (
    ("sequence", lambda e: e.sequence), ("contact", lambda e: e.contact_id), ("status", lambda e: e.status),
    ("steps sent", lambda e: e.step), ("next step at", lambda e: e.next_step_at), ("enrolled", lambda e: e.enrolled_at),
    ("exit", lambda e: e.exit_reason), ("detail", lambda e: e.exit_detail), ("id", lambda e: e.id),
)


def _now(text: str | None) -> Any:
    return None if text is None else parse_datetime(text, "now")


now_option = click.option("--now", default=None, metavar="DATETIME", help="Act as of this moment (ISO 8601; default: now).")


def sequences_group() -> click.Group:
    @click.group("sequences")
    def sequences() -> None:
        """Nurture sequences: timed messages to enrolled contacts until they reply, convert or unsubscribe."""

    @sequences.command("add")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--replace", is_flag=True, help="Replace the sequence of the same name (active enrollments carry on).")
    @click.option("--check", "check_only", is_flag=True, help="Only check the definition; save nothing.")
    @json_option
    @pass_crm
    def add(crm: Any, file: str, replace: bool, check_only: bool, as_json: bool) -> None:
        """Save the sequence defined in FILE (TOML or JSON: name, steps, exit_on)."""
        definition = load_definition(file)
        if check_only:
            draft = crm.sequences.validate(definition)
            emit(as_json, draft, lambda: say(f"Sequence {draft.name!r} is valid ({len(draft.steps)} step(s)); nothing saved"))
            return
        saved = crm.sequences.save(definition, replace=replace)
        emit(as_json, saved, lambda: say(f"Saved sequence {saved.name!r} with {len(saved.steps)} step(s)"))

    @sequences.command("list")
    @json_option
    @pass_crm
    def list_(crm: Any, as_json: bool) -> None:
        """The sequences, by name."""
        found = crm.sequences.list()
        emit(as_json, found, lambda: print_table("Sequences", found, SEQUENCE_COLUMNS))

    @sequences.command("show")
    @click.argument("sequence")
    @pass_crm
    def show(crm: Any, sequence: str) -> None:
        """Print SEQUENCE (name or id) as JSON."""
        print_json(crm.sequences.get(sequence))

    @sequences.command("remove")
    @click.argument("sequence")
    @json_option
    @pass_crm
    def remove(crm: Any, sequence: str, as_json: bool) -> None:
        """Delete SEQUENCE and its enrollments."""
        removed = crm.sequences.remove(sequence)
        emit(as_json, {"removed": removed.id, "name": removed.name}, lambda: say(f"Removed sequence {removed.name!r}"))

    @sequences.command("enroll")
    @click.argument("sequence")
    @click.argument("contact_ids", nargs=-1, required=True, metavar="CONTACT_ID...")
    @now_option
    @json_option
    @pass_crm
    def enroll(crm: Any, sequence: str, contact_ids: tuple[str, ...], now: str | None, as_json: bool) -> None:
        """Enroll contacts in SEQUENCE (one already in it keeps its place)."""
        at = _now(now)
        done = [crm.sequences.enroll(sequence, contact_id, now=at) for contact_id in contact_ids]
        emit(as_json, done, lambda: say(f"{len(done)} contact(s) enrolled in {sequence!r}"))

    @sequences.command("unenroll")
    @click.argument("sequence")
    @click.argument("contact_id")
    @json_option
    @pass_crm
    def unenroll(crm: Any, sequence: str, contact_id: str, as_json: bool) -> None:
        """Take CONTACT_ID out of SEQUENCE: no further steps are sent."""
        ended = crm.sequences.unenroll(sequence, contact_id)
        emit(as_json, ended, lambda: say(f"Contact {contact_id} unenrolled from {sequence!r} after {ended.step} step(s)"))

    @sequences.command("enrollments")
    @click.option("--sequence", default=None, help="Only this sequence's (name or id).")
    @click.option("--contact", "contact_id", default=None, metavar="ID")
    @click.option("--status", type=click.Choice(STATUSES), default=None)
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @json_option
    @pass_crm
    def enrollments(crm: Any, sequence: str | None, contact_id: str | None, status: str | None, limit: int, as_json: bool) -> None:
        """Enrollments, oldest first: where each contact is, and why it ended."""
        found = crm.sequences.enrollments(sequence=sequence, contact_id=contact_id, status=status, limit=limit)
        emit(as_json, found, lambda: print_table("Enrollments", found, ENROLLMENT_COLUMNS))

    @sequences.command("tick")
    @now_option
    @click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True, help="Enrollments handled in this run.")
    @json_option
    @pass_crm
    def tick(crm: Any, now: str | None, limit: int, as_json: bool) -> None:
        """Send the steps that are due (the worker does this every pass; or run it from cron)."""
        report = crm.sequences.tick(_now(now), limit=limit)
        emit(as_json, report, lambda: say(f"Due {report.due}: sent {report.sent}, vetoed {report.vetoed}, exited {report.exited}, "
                                           f"completed {report.completed}, failed {report.failed}"))

    return sequences
