"""``crmkit init`` and ``crmkit db``: creating a CRM and keeping its schema current.

These are the only commands that migrate; every other command refuses a database whose schema
is behind the code (``require_current``) and says to run ``crmkit db upgrade``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from crmkit.cli import CliContext, database_options, fail
from crmkit.cli.output import emit, json_option, say
from crmkit.config import CONFIG_FILENAME, load_config, render_default_config

DEFAULT_DATABASE = "sqlite:///crm.db"


def schema_state(crm: Any) -> dict[str, Any]:
    current, heads = crm.backend.current(), crm.backend.heads()
    return {
        "database": crm.backend.url.render_as_string(hide_password=True),
        "current": current,
        "heads": heads,
        "up_to_date": set(current) == set(heads),
    }


def describe_state(state: dict[str, Any]) -> str:
    current = ", ".join(state["current"]) or "nothing (empty database)"
    verdict = "up to date" if state["up_to_date"] else f"behind; the code wants {', '.join(state['heads'])}"
    return f"{state['database']}: at {current} — {verdict}"


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".", metavar="[DIR]")
@click.option("--force", is_flag=True, help="Overwrite an existing crmkit.toml.")
@json_option
@database_options
@click.pass_obj
def init_command(obj: CliContext, directory: Path, force: bool, as_json: bool) -> None:
    """Write DIR/crmkit.toml (DIR defaults to here) and create and migrate its database.

    The database is a SQLite file crm.db next to the configuration, or the one given with
    --database (a relative SQLite path is then relative to DIR).
    """
    import crmkit

    path = directory / CONFIG_FILENAME
    if path.exists() and not force:
        fail(f"{path} exists already; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(render_default_config(obj.database or DEFAULT_DATABASE), encoding="utf-8")
    # Migrate the database the file names, not an override from the environment.
    environ = {k: v for k, v in os.environ.items() if k not in ("CRMKIT_DATABASE_URL", "CRMKIT_CONFIG")}
    with crmkit.open(load_config(path, environ=environ), plugins=obj.extra_plugins, migrate=True) as crm:
        state = {"config": str(path.resolve()), **schema_state(crm)}
    emit(as_json, state, lambda: say(f"Wrote {path}; database {describe_state(state)}"))


def db_group() -> click.Group:
    @click.group("db")
    def db() -> None:
        """The database schema: upgrade, current."""

    @db.command("upgrade")
    @json_option
    @database_options
    @click.pass_obj
    def upgrade(obj: CliContext, as_json: bool) -> None:
        """Apply pending migrations (the core's and every plugin's)."""
        state = schema_state(obj.crm(migrate=True))
        emit(as_json, state, lambda: say(f"Migrated {describe_state(state)}"))

    @db.command("current")
    @click.option("--check", is_flag=True, help="Exit with status 1 when the schema is behind the code.")
    @json_option
    @database_options
    @click.pass_obj
    def current(obj: CliContext, check: bool, as_json: bool) -> None:
        """Show the schema revision of the database and the one the code wants."""
        state = schema_state(obj.crm(check_schema=False))
        emit(as_json, state, lambda: say(describe_state(state), style="green" if state["up_to_date"] else "yellow"))
        if check and not state["up_to_date"]:
            click.get_current_context().exit(1)

    return db
