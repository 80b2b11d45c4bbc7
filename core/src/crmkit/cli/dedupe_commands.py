"""``crmkit dedupe``: scan the stored contacts for duplicates, merge them, undo a merge, list merges.

The group is built per CLI by :func:`dedupe_group` (no command objects at import time); further
duplicate commands are added in that function like the ones below.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import KEY_VALUE, emit, json_option, print_json, print_table, say
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


SCAN_COLUMNS = (
    ("a", lambda p: p.a), ("b", lambda p: p.b), ("score", lambda p: f"{p.score:.4f}"), ("decision", lambda p: p.decision),
    ("agrees", lambda p: _evidence(p, positive=True)), ("disagrees", lambda p: _evidence(p, positive=False)),
)


def _evidence(pair: Any, *, positive: bool) -> str:
    """``field agreement +weight`` for the fields that spoke for (or against) the pair, strongest first."""
    parts = sorted((e for e in pair.explanation if (e.weight > 0) == positive and e.weight != 0), key=lambda e: -abs(e.weight))
    return ", ".join(f"{e.field} {e.agreement} {e.weight:+.1f}" for e in parts)


@contextlib.contextmanager
def _scan_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A rich progress display while contacts are read, scored and merged, when a person is watching."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    labels = {"reading": "Reading contacts", "scoring": "Blocking, comparing and scoring pairs", "merging": "Merging auto_merge pairs"}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(labels["reading"], total=None)

        def update(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=labels.get(stage, stage), completed=done, total=total)

        yield update


def _scan_summary(summary: Any, merges: list[Any] | None, *, err: bool) -> None:
    """What the scan looked at and what it could not compare fully; on stderr under ``--json``."""
    echo = (lambda text, style="green": click.echo(text, err=True)) if err else say
    echo(f"Scanned {summary.contacts:,} contacts: {summary.candidate_pairs:,} candidate pairs compared, "
         f"{summary.auto_merge:,} auto_merge (score ≥ {summary.auto_merge_at}) and {summary.review:,} review "
         f"(score ≥ {summary.review_at}) pairs in {summary.clusters:,} clusters; {summary.reported:,} listed.")
    if summary.capped_blocks or summary.skipped_blocks:
        echo(f"{summary.capped_blocks:,} blocks over the block cap were compared only within a sorted window and "
             f"{summary.skipped_blocks:,} skipped (largest block {summary.largest_block:,} contacts); duplicates inside "
             "them may be missed:", "yellow")
        for warning in summary.warnings:
            echo(f"  {warning}", "yellow")
    if merges is None:
        return
    counts = {status: sum(m.status == status for m in merges) for status in ("merged", "skipped", "failed")}
    echo(f"Auto-merge: {counts['merged']:,} merged, {counts['skipped']:,} skipped, {counts['failed']:,} failed.")
    if not err:
        for m in merges:
            if m.status == "merged":
                click.echo(f"  merged {m.duplicate_id} into {m.survivor_id} (merge {m.merge_id})")
            else:
                say(f"  {m.status} {m.a} + {m.b}: {m.reason}", style="yellow" if m.status == "skipped" else "red")
    if counts["merged"]:
        echo("Undo any of them with: crmkit dedupe undo MERGE_ID")


def scan_command() -> click.Command:
    @click.command("scan")
    @click.option("--min-score", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                  help="List pairs scoring at least this (the review threshold; default 0.5). Score = probability of one person.")
    @click.option("--auto-merge-at", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                  help="Score from which a pair is auto_merge (default 0.99).")
    @click.option("--max-block-size", type=click.IntRange(min=2), default=None,
                  help="Blocks of more contacts sharing a key are compared only within a sorted window (default 20).")
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="List (and with --auto-merge, merge) only the N best pairs.")
    @click.option("--auto-merge", "merge", is_flag=True,
                  help="Merge every listed auto_merge pair through the same rules as `dedupe merge`; each merge can be undone.")
    @click.option("--rule", "rules", type=KEY_VALUE, multiple=True, metavar="FIELD=RULE", help=f"With --auto-merge: {RULE_HELP}")
    @json_option
    @pass_crm
    def scan(crm: Any, min_score: float | None, auto_merge_at: float | None, max_block_size: int | None, limit: int | None,
             merge: bool, rules: tuple[tuple[str, str], ...], as_json: bool) -> None:
        """Find likely duplicates among all stored contacts, with the reasons for each pair.

        Pairs come highest score first, each with per-field evidence: which fields agreed and how
        much each weighed. --json prints an array of pairs (a, b, score, decision, explanation;
        with --auto-merge also merge: status, merge_id).
        """
        if rules and not merge:
            raise click.UsageError("--rule applies to --auto-merge only")
        with _scan_progress(sys.stdout.isatty() and not as_json) as progress:
            result = crm.dedupe.scan(review_at=min_score, auto_merge_at=auto_merge_at, max_block_size=max_block_size,
                                     limit=limit, progress=progress)
            merges = crm.dedupe.auto_merge(result, rules=dict(rules), progress=progress) if merge else None
        if as_json:
            outcome = {(m.a, m.b): m for m in merges or ()}
            rows = [{**to_jsonable(p), **({"merge": to_jsonable(outcome.get((p.a, p.b)))} if merge else {})} for p in result.pairs]
            print_json(rows)
            _scan_summary(result.summary, merges, err=True)
            return
        print_table("Possible duplicates", result.pairs, SCAN_COLUMNS)
        _scan_summary(result.summary, merges, err=False)

    return scan


def dedupe_group() -> click.Group:
    @click.group("dedupe")
    def dedupe() -> None:
        """Duplicate contacts: scan for them, merge, undo, list merges."""

    for command in (scan_command(), merge_command(), undo_command(), merges_command()):
        dedupe.add_command(command)
    return dedupe


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(dedupe_group())
