"""How the core commands talk: ``--json`` output, rich tables for people, and the option types
that turn command-line text into the plain values services take.

Nothing here knows about CRM rules; commands hand services raw strings and services validate
them, so a value is checked the same way from the CLI, the HTTP API and an import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from crmkit.serialize import to_jsonable

PIPED_WIDTH = 200

#: A table column: its header and how to get the cell from a row.
Column = tuple[str, Callable[[Any], Any]]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def console() -> Console:
    """A console on the current stdout. Built per use, not at import: click's test runner
    swaps stdout per invocation. Markup is off so data such as ``[vip]`` prints as is; piped
    output gets a wide page so rows stay on one line for grep."""
    return Console(markup=False, highlight=False, width=None if sys.stdout.isatty() else PIPED_WIDTH)


def json_text(data: Any) -> str:
    """Entities, lists and dicts of them as indented JSON (decimals as strings, times in ISO 8601)."""
    return json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, default=str)


def print_json(data: Any) -> None:
    click.echo(json_text(data))


def emit(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON, or call ``render`` to show it to a person."""
    if as_json:
        print_json(data)
    else:
        render()


def say(message: str, style: str = "green") -> None:
    console().print(message, style=style, soft_wrap=True)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(to_jsonable(value), ensure_ascii=False, default=str)
    return str(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (``address.city``), the way ``--set`` names them."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def print_record(title: str, entity: Any, extra: Mapping[str, Any] | None = None) -> None:
    """One record as a two-column table of its non-empty fields."""
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in {**flatten(to_jsonable(entity)), **(extra or {})}.items():
        if value in (None, "", [], {}):
            continue
        table.add_row(key, cell(value))
    console().print(table)


def print_table(title: str, rows: Sequence[Any], columns: Sequence[Column]) -> None:
    if not rows:
        console().print(f"No {title.lower()}.", style="dim")
        return
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for header, _ in columns:
        table.add_column(header, overflow="fold", no_wrap=header == "id")
    for row in rows:
        table.add_row(*(cell(get(row)) for _, get in columns))
    console().print(table)


# --- option types -------------------------------------------------------------------------


class KeyValue(click.ParamType):
    """``KEY=VALUE`` as a ``(key, value)`` pair; anything else is a usage error (exit 2)."""

    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key.strip(), text


class JsonObject(click.ParamType):
    """A JSON object given on the command line, e.g. ``--payload '{"minutes": 12}'``."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc})", param, ctx)
        if not isinstance(data, dict):
            self.fail('must be a JSON object such as {"key": "value"}', param, ctx)
        return data


KEY_VALUE = KeyValue()
JSON_OBJECT = JsonObject()
