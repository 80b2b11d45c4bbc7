"""``crmkit dedupe``: merge duplicate contacts, undo a merge, list merges.

The group is built per CLI by :func:`dedupe_group` (no command objects at import time); further
duplicate commands (``dedupe scan`` …) are added in that function like the ones below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import KEY_VALUE, emit, json_option, print_table, say
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable

MERGE_COLUMNS = (
    ("id", lambda m: m.id), ("survivor", lambda m: m.survivor_id), ("duplicate", lambda m: m.duplicate_id),
    ("merged", lambda m: m.merged_at), ("by", lambda m: m.actor), ("undone", lambda m: m.undone_at),
    ("consent conflicts", lambda m: len(m.consent_conflicts)),
)
RULE_HELP = (
    "Survivorship rule for one field, FIELD=RULE (repeatable). RULE: most_recent, most_complete, "
    "prefer_source:CHANNEL, keep_a, keep_b, oldest; union (tags), merge_keys (custom), most_advanced "
    "(lifecycle_stage), max (score)."
)


def merge_command() -> click.Command:
    @click.command("merge")
    @click.argument("a")
    @click.argument("b")
    @click.option("--prefer", type=click.Choice(["A", "B"], case_sensitive=False), default=None,
                  help="Which contact survives (keeps its id). Default: the older one.")
    @click.option("--rule", "rules", type=KEY_VALUE, multiple=True, metavar="FIELD=RULE", help=RULE_HELP)
    @json_option
    @pass_crm
    def merge(crm: Any, a: str, b: str, prefer: str | None, rules: tuple[tuple[str, str], ...], as_json: bool) -> None:
        """Merge contacts A and B into one; every linked record moves to the survivor."""
        result = crm.merges.merge(a, b, prefer=prefer, rules=dict(rules))

        def render() -> None:
            say(f"Merged {result.duplicate_id} into {result.survivor.id} (merge {result.merge_id})")
            for target, count in result.relinked.items():
                click.echo(f"  moved {count} × {target}")
            for system, value in result.merged_identifiers:
                click.echo(f"  kept {value} as {system}")
            for c in result.consent_conflicts:
                say(f"  consent {c.channel}/{c.purpose}: survivor {c.survivor_status or 'no record'}, duplicate "
                    f"{c.duplicate_status or 'no record'} → {c.resolved}", style="yellow")
            click.echo(f"Undo with: crmkit dedupe undo {result.merge_id}")

        emit(as_json, result, render)

    return merge


def undo_command() -> click.Command:
    @click.command("undo")
    @click.argument("merge_id")
    @click.option("--force", is_flag=True, help="Undo even if the survivor was edited since (those edits are lost).")
    @json_option
    @pass_crm
    def undo(crm: Any, merge_id: str, force: bool, as_json: bool) -> None:
        """Undo a merge: both contacts, their links and their consents come back as they were."""
        result = crm.merges.undo(merge_id, force=force)
        emit(as_json, result, lambda: say(f"Undid merge {merge_id}: {result.duplicate.id} restored beside {result.survivor.id}"))

    return undo


def merges_command() -> click.Command:
    @click.command("merges")
    @click.option("--contact", "contact_id", default=None, help="Only merges this contact took part in.")
    @click.option("--active", is_flag=True, help="Leave out undone merges.")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @json_option
    @pass_crm
    def merges(crm: Any, contact_id: str | None, active: bool, limit: int, as_json: bool) -> None:
        """List merges, newest first."""
        found = crm.merges.list(contact_id=contact_id, include_undone=not active, limit=limit)
        summaries = [{k: v for k, v in to_jsonable(m).items() if k != "snapshot"} for m in found]  # snapshots: crm.merges.get
        emit(as_json, summaries, lambda: print_table("Merges", found, MERGE_COLUMNS))

    return merges


def dedupe_group() -> click.Group:
    @click.group("dedupe")
    def dedupe() -> None:
        """Duplicate contacts: merge, undo, list merges."""

    for command in (merge_command(), undo_command(), merges_command()):
        dedupe.add_command(command)
    return dedupe


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(dedupe_group())
