"""``crmkit import …`` and ``crmkit export …``: a built-in plugin contributing two command
groups. The commands only parse options and print; the work is :mod:`crmkit.transfer`'s."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(import_group())
    register(export_group())


# --- import -------------------------------------------------------------------------------


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    return {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(value, value)


def _import_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("file", type=click.Path(dir_okay=False)),
        click.option("--map", "mapping", multiple=True, metavar="COLUMN=FIELD",
                     help="Map a column to a field (address.city, custom.NAME, tags, external_id.SYSTEM …); COLUMN= skips it. Repeatable."),
        click.option("--format", "file_format", type=click.Choice(["csv", "jsonl", "xlsx"]), default=None, help="File format (default: from the file name)."),
        click.option("--encoding", default=None, help="The file's encoding (default: detected; UTF-8, UTF-16 with BOM, else cp1252)."),
        click.option("--delimiter", default=None, help="CSV delimiter (default: sniffed; 'tab' for tabs)."),
        click.option("--on-duplicate", type=click.Choice(["update", "skip", "create"]), default="update", show_default=True,
                     help="What to do with rows that match an existing record."),
        click.option("--dry-run", is_flag=True, help="Validate and match every row, write nothing (the errors file is still written)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Rows per transaction."),
        click.option("--errors", "errors_path", default=None, metavar="FILE", help="Where rejected rows go (default: FILE.errors.csv beside the input)."),
        click.option("--ignore-unknown", is_flag=True, help="Skip columns that match no field instead of failing."),
        click.option("--defer-events", is_flag=True,
                     help="Leave the events in the outbox for `crmkit events drain` or a worker instead of dispatching them during the import."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@contextlib.contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[..., None] | None]:
    """A rich progress bar over the file's bytes, when a person is watching."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(summary: Any, done: int, total: int) -> None:
            description = f"{label}: {summary.read:,} rows, {summary.rejected:,} rejected"
            bar.update(task, completed=done, total=total or None, description=description)

        yield update


def _report(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False))
        return
    prefix = "Dry run — nothing written. Would have: " if summary.dry_run else ""
    click.echo(f"{prefix}read {summary.read:,} rows from {summary.file}: {summary.created:,} created, {summary.updated:,} updated, "
               f"{summary.skipped:,} skipped, {summary.rejected:,} rejected.")
    if summary.errors_file:
        click.echo(f"Rejected rows and their reasons: {summary.errors_file} (fix them there and import that file).")


def _run_import(importer: Callable[..., Any], crm: Any, file: str, *, mapping: tuple[str, ...], file_format: str | None,
                delimiter: str | None, errors_path: str | None, as_json: bool, **options: Any) -> None:
    show_progress = sys.stdout.isatty() and not as_json
    with _progress(show_progress, f"Importing {file}") as progress:
        summary = importer(crm, file, mapping=list(mapping), format=file_format, delimiter=_delimiter(delimiter),
                           errors_path=errors_path, progress=progress, **options)
    _report(summary, as_json)


def import_group() -> click.Group:
    @click.group("import")
    def group() -> None:
        """Import contacts, organizations or deals from CSV, JSON Lines or XLSX files.

        Rows are validated exactly like any other input; rejected rows are written with their
        reasons to an errors file that can be fixed and imported as it is. Running the same
        import twice changes nothing.
        """

    @group.command("contacts")
    @_import_options
    @click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Processes validating rows in parallel (the result is the same as with 1).")
    @pass_crm
    def contacts(crm: Any, file: str, **options: Any) -> None:
        """Import contacts from FILE through the intake pipeline (matched on e-mail, phone,
        account number or external id)."""
        from crmkit.transfer import import_contacts

        _run_import(import_contacts, crm, file, **options)

    @group.command("organizations")
    @_import_options
    @pass_crm
    def organizations(crm: Any, file: str, **options: Any) -> None:
        """Import organizations from FILE (matched on domain, then name)."""
        from crmkit.transfer import import_organizations

        _run_import(import_organizations, crm, file, **options)

    @group.command("deals")
    @_import_options
    @click.option("--pipeline", default=None, help="Pipeline (name or id) for rows without a pipeline column.")
    @pass_crm
    def deals(crm: Any, file: str, **options: Any) -> None:
        """Import deals from FILE: title, pipeline, stage, amount, currency, contact_email,
        organization … (matched on pipeline, title, contact and organization)."""
        from crmkit.transfer import import_deals

        _run_import(import_deals, crm, file, **options)

    return group


# --- export -------------------------------------------------------------------------------


def _export_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--format", "out_format", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True),
        click.option("--out", "out_path", default=None, metavar="FILE", help="Write to FILE instead of standard output."),
        click.option("--since", default=None, metavar="DATE", help="Only records changed (activities: that happened) at or after DATE (ISO 8601)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_export(crm: Any, kind: str, out_format: str, out_path: str | None, **filters: Any) -> None:
    from crmkit.transfer import ExportFilters, export

    chosen = ExportFilters(**filters)
    if out_path is None:
        export(crm, kind, sys.stdout, format=out_format, filters=chosen)
        return
    with open(out_path, "w", encoding="utf-8", newline="") as handle:
        count = export(crm, kind, handle, format=out_format, filters=chosen)
    click.echo(f"Exported {count:,} {kind} to {out_path}.", err=True)


def export_group() -> click.Group:
    @click.group("export")
    def group() -> None:
        """Export records as CSV (importable again) or JSON Lines, streaming."""

    @group.command("contacts")
    @_export_options
    @click.option("--tag", default=None, help="Only contacts with this tag.")
    @click.option("--lifecycle-stage", default=None, help="Only contacts in this lifecycle stage.")
    @pass_crm
    def contacts(crm: Any, **options: Any) -> None:
        """Export contacts."""
        _run_export(crm, "contacts", **options)

    @group.command("organizations")
    @_export_options
    @click.option("--tag", default=None, help="Only organizations with this tag.")
    @pass_crm
    def organizations(crm: Any, **options: Any) -> None:
        """Export organizations."""
        _run_export(crm, "organizations", **options)

    @group.command("deals")
    @_export_options
    @click.option("--pipeline", default=None, help="Only deals of this pipeline (name or id).")
    @click.option("--stage", default=None, help="Only deals in this stage (needs --pipeline).")
    @click.option("--status", type=click.Choice(["open", "won", "lost"]), default=None)
    @pass_crm
    def deals(crm: Any, **options: Any) -> None:
        """Export deals with their pipeline, stage and contact e-mail."""
        _run_export(crm, "deals", **options)

    @group.command("activities")
    @_export_options
    @click.option("--kind", default=None, help="Only activities of this kind (call, email.sent …).")
    @click.option("--contact", "contact_id", default=None, metavar="ID", help="Only this contact's activities.")
    @pass_crm
    def activities(crm: Any, **options: Any) -> None:
        """Export the activity log."""
        _run_export(crm, "activities", **options)

    return group
