"""Running the CRM: ``users``, ``teams``, ``custom-fields``, ``events``, ``privacy``,
``plugins`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from crmkit.cli import CliContext, database_options, pass_crm
from crmkit.cli.output import console, emit, json_option, json_text, print_json, print_table, yes_option
from crmkit.cli.records import FieldOption, add_create_command, add_list_command, report
from crmkit.domain import Role
from crmkit.domain.custom_fields import ENTITIES, FieldType

USER_FIELDS = (
    FieldOption("--email", "email", "E-mail address (required, unique)."),
    FieldOption("--name", "name", "Full name."),
    FieldOption("--role", "role", f"One of: {', '.join(r.value for r in Role)} (default: agent)."),
    FieldOption("--team", "team_id", "Team id."),
)


def users_group() -> click.Group:
    @click.group("users")
    def users() -> None:
        """People who use the CRM: add, list."""

    add_create_command(users, service="users", fields=USER_FIELDS, help="Add a user.",
                       summary=lambda u: f"User added: {u.id} {u.email} ({u.role.value})")
    add_list_command(users, title="Users", service="users", columns=(
        ("id", lambda u: u.id), ("email", lambda u: u.email), ("name", lambda u: u.name),
        ("role", lambda u: u.role.value), ("team", lambda u: u.team_id), ("active", lambda u: u.active),
    ), filters=(FieldOption("--team", "team_id", "Only members of this team."),))

    return users


def teams_group() -> click.Group:
    @click.group("teams")
    def teams() -> None:
        """Teams of users: add, list."""

    @teams.command("add")
    @click.argument("name")
    @json_option
    @pass_crm
    def add(crm: Any, name: str, as_json: bool) -> None:
        """Add the team NAME."""
        team = crm.teams.create({"name": name})
        report(as_json, team, f"Team added: {team.id} {team.name}")

    add_list_command(teams, title="Teams", service="teams", columns=(("id", lambda t: t.id), ("name", lambda t: t.name)))

    return teams


def custom_fields_group() -> click.Group:
    @click.group("custom-fields")
    def custom_fields() -> None:
        """Typed extra fields on contacts, organizations and deals: define, list."""

    @custom_fields.command("define")
    @click.argument("entity", type=click.Choice(ENTITIES))
    @click.argument("name")
    @click.argument("field_type", metavar="TYPE", type=click.Choice([t.value for t in FieldType]))
    @click.option("--label", default=None, help="Label shown to people.")
    @click.option("--required", is_flag=True, help="Every record must have a value.")
    @click.option("--choice", "choices", multiple=True, help="An allowed value of a choice field (repeat).")
    @json_option
    @pass_crm
    def define(crm: Any, entity: str, name: str, field_type: str, label: str | None, required: bool,
               choices: tuple[str, ...], as_json: bool) -> None:
        """Define the custom field NAME of TYPE on ENTITY, e.g. `define contact budget number`."""
        definition = crm.custom_fields.define(entity, name, field_type, label=label, required=required, choices=list(choices))
        report(as_json, definition, f"Custom field defined: {definition.entity}.{definition.name} ({definition.type.value})")

    @custom_fields.command("list")
    @click.option("--entity", type=click.Choice(ENTITIES), default=None, help="Only this entity's fields.")
    @json_option
    @pass_crm
    def list_(crm: Any, entity: str | None, as_json: bool) -> None:
        """List custom field definitions."""
        rows = crm.custom_fields.list(entity)
        emit(as_json, rows, lambda: print_table("Custom fields", rows, (
            ("entity", lambda d: d.entity), ("name", lambda d: d.name), ("type", lambda d: d.type.value),
            ("required", lambda d: d.required), ("choices", lambda d: d.choices), ("label", lambda d: d.label))))

    return custom_fields


def events_group() -> click.Group:
    @click.group("events")
    def events() -> None:
        """The event outbox: status, failures, drain."""

    @events.command("status")
    @json_option
    @pass_crm
    def status(crm: Any, as_json: bool) -> None:
        """How many events there are, and how many still wait for dispatch."""
        counts = crm.events.counts()
        emit(as_json, counts, lambda: print_table("Events", [counts], [(k, lambda c, k=k: c[k]) for k in counts]))

    @events.command("failures")
    @json_option
    @pass_crm
    def failures(crm: Any, as_json: bool) -> None:
        """Deliveries that failed and will be retried, or gave up (dead)."""
        rows = crm.events.failures()
        emit(as_json, rows, lambda: print_table("Failed deliveries", rows, (
            ("event", lambda r: r["event_id"]), ("type", lambda r: r["type"]), ("subscriber", lambda r: r["subscriber"]),
            ("status", lambda r: r["status"]), ("attempts", lambda r: r["attempts"]), ("next attempt", lambda r: r["next_attempt_at"]),
            ("error", lambda r: r["last_error"]))))

    @events.command("drain")
    @click.option("--limit", type=click.IntRange(1), default=None, help="Dispatch at most this many events.")
    @json_option
    @pass_crm
    def drain(crm: Any, limit: int | None, as_json: bool) -> None:
        """Dispatch every event that is due (new ones and retries whose time has come)."""
        done = crm.events.drain(limit=limit)
        report(as_json, done, f"Dispatched {done.dispatched}, failed {done.failed} (will retry), dead {done.dead}")

    return events


def privacy_group() -> click.Group:
    @click.group("privacy")
    def privacy() -> None:
        """Personal-data rights: export, erase."""

    @privacy.command("export")
    @click.argument("contact_id")
    @click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
                  help="Write the JSON to this file instead of stdout.")
    @json_option
    @pass_crm
    def export(crm: Any, contact_id: str, out: Path | None, as_json: bool) -> None:
        """Everything held about CONTACT_ID, as JSON (the output is JSON with or without --json)."""
        data = crm.privacy.export(contact_id)
        if out is None:
            print_json(data)
            return
        out.write_text(json_text(data) + "\n", encoding="utf-8")
        click.echo(f"Wrote {out}", err=True)

    @privacy.command("erase")
    @click.argument("contact_id")
    @yes_option
    @json_option
    @pass_crm
    def erase(crm: Any, contact_id: str, yes: bool, as_json: bool) -> None:
        """Erase CONTACT_ID's personal data everywhere (asks first unless --yes)."""
        contact = crm.contacts.get(contact_id)
        if not yes:
            click.confirm(f"Erase all personal data of contact {contact.id} ({contact.display_name})? This cannot be undone", abort=True)
        crm.privacy.erase(contact.id)
        report(as_json, {"erased": contact.id}, f"Erased contact {contact.id}")

    return privacy


@click.command("plugins")
@json_option
@database_options
@click.pass_obj
def plugins_command(obj: CliContext, as_json: bool) -> None:
    """The plugins this configuration loads and the hooks each implements.

    Needs no database: it is how you find out why a CRM does not open.
    """
    from crmkit.plugins import make_plugin_manager

    config = obj.load_config()
    rows = make_plugin_manager(enabled=config.enabled_plugins, disabled=config.disabled_plugins, extra_plugins=obj.extra_plugins).info()
    emit(as_json, rows, lambda: print_table("Plugins", rows, (
        ("name", lambda p: p.name), ("distribution", lambda p: p.distribution), ("version", lambda p: p.version),
        ("builtin", lambda p: p.builtin), ("hooks", lambda p: p.hooks))))


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to create the demo CRM (default: a temporary directory).")
def demo_command(directory: Path | None) -> None:
    """Create a CRM full of generated data and show its sales funnel."""
    from crmkit.demo import run_demo

    run_demo(directory, console())
