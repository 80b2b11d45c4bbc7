"""``crmkit automations``: save rules (from a TOML/JSON file or options), list, show, switch
on/off and remove them, inspect their runs, and run scheduled triggers (``tick``).

Registered by :mod:`crmkit.builtin.automation_plugin`; built per CLI (no commands at import).
"""

from __future__ import annotations

import json
from typing import Any

import click

from crmkit.automation.conditions import leaf_from_text
from crmkit.automation.runs import STATUSES
from crmkit.automation.service import load_definitions
from crmkit.cli import pass_crm
from crmkit.cli.output import JSON_OBJECT, KEY_VALUE, emit, json_option, print_json, print_table, say
from crmkit.domain.values import parse_datetime

RULE_COLUMNS = (
    ("name", lambda r: r.name), ("trigger", lambda r: r.definition()["trigger"]), ("conditions", lambda r: r.conditions),
    ("actions", lambda r: [a["type"] for a in r.actions]), ("enabled", lambda r: r.enabled), ("id", lambda r: r.id),
)
RUN_COLUMNS = (
    ("when", lambda r: r.created_at), ("rule", lambda r: r.rule_name), ("event", lambda r: r.event_type),
    ("event id", lambda r: r.event_id), ("status", lambda r: r.status), ("attempts", lambda r: r.attempts),
    ("results", lambda r: r.results), ("error", lambda r: r.error),
)


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (14, true, ["a"]), otherwise the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def definitions_from_options(name: str | None, trigger: str | None, params: tuple[tuple[str, str], ...], when: tuple[str, ...],
                             conditions: dict[str, Any] | None, actions: tuple[dict[str, Any], ...], description: str | None,
                             disabled: bool) -> dict[str, Any]:
    if conditions is not None and when:
        raise click.UsageError("give --conditions or --when, not both")
    definition: dict[str, Any] = {"name": name, "enabled": not disabled, "actions": list(actions)}
    if trigger is not None:
        definition["trigger"] = {"type": trigger, **{key: _value(text) for key, text in params}}
    if when:
        definition["conditions"] = {"all": [leaf_from_text(text, f"when[{i}]") for i, text in enumerate(when)]}
    elif conditions is not None:
        definition["conditions"] = conditions
    if description:
        definition["description"] = description
    return definition


def add_command() -> click.Command:
    @click.command("add")
    @click.argument("name", required=False)
    @click.option("--file", "file", type=click.Path(dir_okay=False), default=None,
                  help="A TOML or JSON file with one rule or several ([[rules]]); all are saved, or none.")
    @click.option("--trigger", default=None, metavar="TYPE", help="What starts the rule, e.g. contact.created, deal.entered_stage.")
    @click.option("--param", "params", type=KEY_VALUE, multiple=True, metavar="KEY=VALUE",
                  help="A trigger parameter, e.g. --param stage=Won (repeatable; values are read as JSON when they parse).")
    @click.option("--when", multiple=True, metavar="'FIELD OP VALUE'",
                  help="A condition, e.g. --when 'contact.lifecycle_stage eq mql' (repeatable: all must hold).")
    @click.option("--conditions", type=JSON_OBJECT, default=None, help='Conditions as JSON, e.g. {"any": [...]}.')
    @click.option("--action", "actions", type=JSON_OBJECT, multiple=True,
                  help='An action as JSON (repeatable, run in order), e.g. {"type": "create_task", "title": "Call {{ contact.first_name }}"}.')
    @click.option("--description", default=None)
    @click.option("--disabled", is_flag=True, help="Save the rule switched off.")
    @click.option("--replace", is_flag=True, help="Replace rules of the same name (they keep their run history).")
    @click.option("--check", "check_only", is_flag=True, help="Only check the rule(s); save nothing.")
    @json_option
    @pass_crm
    def add(crm: Any, name: str | None, file: str | None, trigger: str | None, params: tuple[tuple[str, str], ...], when: tuple[str, ...],
            conditions: dict[str, Any] | None, actions: tuple[dict[str, Any], ...], description: str | None, disabled: bool,
            replace: bool, check_only: bool, as_json: bool) -> None:
        """Save an automation rule NAME from options, or the rules in --file."""
        if file is not None:
            if name or trigger or params or when or conditions or actions or description or disabled:
                raise click.UsageError("--file holds whole rules; give no other rule options with it")
            definitions = load_definitions(file)
        else:
            definitions = [definitions_from_options(name, trigger, params, when, conditions, actions, description, disabled)]
        if check_only:
            rules = crm.automations.validate_many(definitions)
            emit(as_json, [r.definition() for r in rules], lambda: say(f"{len(rules)} rule(s) are valid; nothing saved"))
            return
        saved = crm.automations.add_many(definitions, replace=replace)
        emit(as_json, saved, lambda: say(f"Saved {len(saved)} rule(s): {', '.join(r.name for r in saved)}"))

    return add


def automations_group() -> click.Group:
    @click.group("automations")
    def automations() -> None:
        """Automation rules: when an event matches, create tasks, set fields, move deals, call webhooks …"""

    automations.add_command(add_command())

    @automations.command("list")
    @json_option
    @pass_crm
    def list_(crm: Any, as_json: bool) -> None:
        """The rules, by name."""
        rules = crm.automations.list()
        emit(as_json, rules, lambda: print_table("Automation rules", rules, RULE_COLUMNS))

    @automations.command("show")
    @click.argument("rule")
    @pass_crm
    def show(crm: Any, rule: str) -> None:
        """Print RULE (name or id) as a definition (JSON; save it to a file to edit and re-add with --replace)."""
        print_json(crm.automations.get(rule).definition())

    @automations.command("remove")
    @click.argument("rule")
    @json_option
    @pass_crm
    def remove(crm: Any, rule: str, as_json: bool) -> None:
        """Delete RULE (name or id) and its runs."""
        removed = crm.automations.remove(rule)
        emit(as_json, {"removed": removed.id, "name": removed.name}, lambda: say(f"Removed rule {removed.name!r}"))

    for verb, enabled in (("enable", True), ("disable", False)):
        @automations.command(verb)
        @click.argument("rule")
        @json_option
        @pass_crm
        def switch(crm: Any, rule: str, as_json: bool, _enabled: bool = enabled, _verb: str = verb) -> None:
            changed = crm.automations.set_enabled(rule, _enabled)
            emit(as_json, changed, lambda: say(f"Rule {changed.name!r} {_verb}d"))

        switch.help = f"Switch RULE (name or id) {'on' if enabled else 'off'}."

    @automations.command("runs")
    @click.option("--rule", default=None, help="Only this rule's runs (name or id).")
    @click.option("--status", type=click.Choice(STATUSES), default=None)
    @click.option("--contact", "contact_id", default=None, metavar="ID", help="Only runs about this contact.")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @json_option
    @pass_crm
    def runs(crm: Any, rule: str | None, status: str | None, contact_id: str | None, limit: int, as_json: bool) -> None:
        """Recorded rule runs, newest first: outcome, what the actions did, errors."""
        found = crm.automations.run_log(rule=rule, status=status, contact_id=contact_id, limit=limit)
        emit(as_json, found, lambda: print_table("Automation runs", found, RUN_COLUMNS))

    @automations.command("tick")
    @click.option("--now", default=None, metavar="DATETIME", help="Run as of this moment (ISO 8601; default: now).")
    @json_option
    @pass_crm
    def tick(crm: Any, now: str | None, as_json: bool) -> None:
        """Run scheduled triggers (no activity for N days …); call it periodically, e.g. from cron."""
        report = crm.automations.tick(None if now is None else parse_datetime(now, "now"))
        emit(as_json, report, lambda: say(f"Found {report.found}: ok {report.ok}, failed {report.failed}, "
                                           f"retrying {report.retrying}, conditions not met {report.skipped}"))

    @automations.command("types")
    @json_option
    @pass_crm
    def types(crm: Any, as_json: bool) -> None:
        """The trigger and action types installed plugins offer, with their parameters."""
        catalog = crm.automations.catalog
        rows = [{"kind": kind, "name": item.name, "params": [p.name + ("*" if p.required else "") for p in item.params],
                 "plugin": registry.owners[item.name], "description": item.description}
                for kind, registry in (("trigger", catalog.triggers), ("action", catalog.actions)) for _, item in registry.items()]
        emit(as_json, rows, lambda: print_table("Automation triggers and actions", rows, [
            ("kind", lambda r: r["kind"]), ("name", lambda r: r["name"]), ("params (* required)", lambda r: r["params"]),
            ("description", lambda r: r["description"]),
        ]))

    return automations
