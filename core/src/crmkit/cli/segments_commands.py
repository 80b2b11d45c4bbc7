"""``crmkit segments``: save a segment from a JSON condition or a JSON/TOML file, list them,
show members, rebuild and remove. Registered by :mod:`crmkit.builtin.segments_plugin`; built
per CLI (no commands at import)."""

from __future__ import annotations

from typing import Any

import click

from crmkit.automation.service import load_definitions
from crmkit.cli import pass_crm
from crmkit.cli.output import JSON_OBJECT, emit, json_option, print_table, say
from crmkit.errors import ValidationFailed
from crmkit.segments.conditions import describe

SEGMENT_COLUMNS = (
    ("name", lambda s: s.name), ("where", lambda s: describe(s.conditions)), ("description", lambda s: s.description),
    ("rebuilt", lambda s: s.rebuilt_at),
)
MEMBER_COLUMNS = (
    ("name", lambda c: c.display_name), ("email", lambda c: c.email), ("lifecycle", lambda c: c.lifecycle_stage),
    ("score", lambda c: c.score), ("tags", lambda c: c.tags), ("id", lambda c: c.id),
)


def read_condition(path: str) -> Any:
    """A condition from a file: JSON for ``.json``, otherwise TOML (``all = [{field = …}]``)."""
    found = load_definitions(path)  # the reader automation rule files go through
    if len(found) != 1:
        raise ValidationFailed.single("file", "invalid", f"{path}: expected one condition, found {len(found)}")
    return found[0]


def segments_group() -> click.Group:
    @click.group("segments")
    def segments() -> None:
        """Segments: saved contact filters whose membership follows every contact change."""

    @segments.command("add")
    @click.argument("name")
    @click.option("--where", "where", type=JSON_OBJECT, default=None,
                  help='The condition as JSON, e.g. {"all": [{"field": "tags", "op": "contains", "value": "vip"}]}.')
    @click.option("--file", "file", type=click.Path(dir_okay=False), default=None, help="A JSON or TOML file holding the condition.")
    @click.option("--description", default=None)
    @click.option("--replace", is_flag=True, help="Replace the condition of an existing segment of this name.")
    @json_option
    @pass_crm
    def add(crm: Any, name: str, where: dict[str, Any] | None, file: str | None, description: str | None, replace: bool,
            as_json: bool) -> None:
        """Save segment NAME (give --where or --file) and build its membership."""
        if (where is None) == (file is None):
            raise click.UsageError("give the condition with --where JSON or --file FILE (one of them)")
        segment = crm.segments.save(name, where if file is None else read_condition(file), description=description, replace=replace)
        count = len(crm.segments.member_ids(segment.id))
        emit(as_json, {"segment": segment, "members": count}, lambda: say(f"Saved segment {segment.name!r}: {count} member(s)"))

    @segments.command("list")
    @json_option
    @pass_crm
    def list_(crm: Any, as_json: bool) -> None:
        """The segments, by name."""
        found = crm.segments.list()
        emit(as_json, found, lambda: print_table("Segments", found, SEGMENT_COLUMNS))

    @segments.command("members")
    @click.argument("name")
    @click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
    @json_option
    @pass_crm
    def members(crm: Any, name: str, limit: int | None, as_json: bool) -> None:
        """The contacts in segment NAME, in the order they entered."""
        found = crm.segments.members(name, limit=limit)
        emit(as_json, found, lambda: print_table(f"Members of {name}", found, MEMBER_COLUMNS))

    @segments.command("rebuild")
    @click.argument("name")
    @json_option
    @pass_crm
    def rebuild(crm: Any, name: str, as_json: bool) -> None:
        """Recompute NAME's membership from scratch in SQL (normally kept current by events)."""
        change = crm.segments.rebuild(name)
        counts = change.counts()
        emit(as_json, {**counts, "members": len(crm.segments.member_ids(name))},
             lambda: say(f"Rebuilt {name!r}: {counts['entered']} entered, {counts['left']} left"))

    @segments.command("remove")
    @click.argument("name")
    @json_option
    @pass_crm
    def remove(crm: Any, name: str, as_json: bool) -> None:
        """Delete segment NAME and its membership."""
        removed = crm.segments.remove(name)
        emit(as_json, {"removed": removed.id, "name": removed.name}, lambda: say(f"Removed segment {removed.name!r}"))

    return segments
