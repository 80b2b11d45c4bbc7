"""Automation rules: the entity, and turning a definition (a dict from TOML, JSON or the CLI)
into one — checking *everything* when the rule is saved and naming each problem's place.

A definition::

    name = "Call new web leads"
    trigger = { type = "contact.created", source = "webform" }     # or just "contact.created"
    conditions = { all = [ { field = "contact.lifecycle_stage", op = "eq", value = "lead" } ] }
    [[actions]]
    type = "create_task"
    title = "Call {{ contact.first_name }}"
    due_in_days = 1
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.automation import conditions, facts, templates
from crmkit.automation.registry import ActionType, CheckContext, TriggerType
from crmkit.domain import fields as f
from crmkit.domain.values import IssueCollector, new_id, utcnow
from crmkit.errors import FieldIssue, ValidationFailed
from crmkit.plugins import Registry
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM

DEFINITION_KEYS = ("name", "description", "enabled", "trigger", "conditions", "actions")
MAX_ACTIONS = 20


@attrs.define(kw_only=True)
class Rule:
    id: str = attrs.field(factory=new_id)
    name: str
    description: str | None = None
    trigger: str
    trigger_params: dict[str, Any] = attrs.field(factory=dict)
    conditions: dict[str, Any] | None = None
    actions: list[dict[str, Any]] = attrs.field(factory=list)
    enabled: bool = True
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)
    version: int = 1

    def condition(self) -> conditions.Condition:
        # Checked against the schema when saved; a stored rule is only re-parsed.
        return conditions.parse(self.conditions)

    def definition(self) -> dict[str, Any]:
        """The rule as a definition file holds it (what :func:`parse_definition` reads)."""
        result: dict[str, Any] = {"name": self.name}
        if self.description:
            result["description"] = self.description
        result["enabled"] = self.enabled
        result["trigger"] = {"type": self.trigger, **self.trigger_params}
        if self.conditions:
            result["conditions"] = self.conditions
        result["actions"] = self.actions
        return result


@attrs.frozen
class Catalog:
    """The trigger and action types one CRM's plugins offer."""

    triggers: Registry[TriggerType]
    actions: Registry[ActionType]


def _closest_hint(name: str, known: list[str]) -> str:
    hint = conditions.closest(name, known) if isinstance(name, str) else None
    return f" (did you mean {hint!r}?)" if hint else f" (known: {', '.join(sorted(known)) or 'none'})"


def _typed(entry: Any, where: str, kind: str, collector: IssueCollector) -> tuple[str | None, dict[str, Any]]:
    """Split ``{"type": …, **params}`` (or a bare type name) into the type and its params."""
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, Mapping):
        collector.add(where, "invalid_type", f"must be an object with a \"type\" (the {kind} type) and its parameters")
        return None, {}
    name = entry.get("type")
    if not isinstance(name, str) or not name.strip():
        collector.add(f"{where}.type", "required", f"give the {kind} type")
        return None, {}
    return name.strip(), {k: v for k, v in entry.items() if k != "type"}


def _params(specs: tuple[f.FieldSpec, ...], raw: dict[str, Any], where: str, collector: IssueCollector) -> dict[str, Any] | None:
    clean = collector.run(f.parse_input, raw, specs, prefix=f"{where}.")
    return None if clean is None else {k: v for k, v in to_jsonable(clean).items() if v is not None}


def parse_definition(data: Any, catalog: Catalog, crm: CRM) -> Rule:
    """A :class:`Rule` from a definition, or :class:`ValidationFailed` listing every problem."""
    if not isinstance(data, Mapping):
        raise ValidationFailed.single("rule", "invalid_type", "a rule is an object with name, trigger, conditions and actions")
    collector = IssueCollector()
    for key in data:
        if key not in DEFINITION_KEYS:
            collector.add(str(key), "unknown_field", f"is not part of a rule (a rule has {', '.join(DEFINITION_KEYS)})")
    name = collector.run(f.text(120), data.get("name"), "name")
    if name is None and not any(i.field == "name" for i in collector.issues):
        collector.add("name", "required", "give the rule a name")
    description = collector.run(f.text(2000), data.get("description"), "description")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        collector.add("enabled", "invalid_type", "must be true or false")

    trigger_name, raw_params = _typed(data.get("trigger"), "trigger", "trigger", collector)
    trigger: TriggerType | None = None
    trigger_params: dict[str, Any] = {}
    if "trigger" not in data:
        collector.issues.append(FieldIssue("trigger", "required", "say what starts the rule, e.g. {\"type\": \"contact.created\"}"))
    elif trigger_name is not None:
        trigger = catalog.triggers.get(trigger_name)
        if trigger is None:
            collector.add("trigger.type", "unknown_trigger", f"no trigger named {trigger_name!r}{_closest_hint(trigger_name, list(catalog.triggers))}")
        else:
            trigger_params = _params(trigger.params, raw_params, "trigger", collector) or {}
            if trigger.check is not None and not any(i.field.startswith("trigger.") for i in collector.issues):
                collector.issues.extend(trigger.check(trigger_params, CheckContext(crm=crm, facts=trigger.facts, where="trigger")))
    available = trigger.facts if trigger is not None else facts.ALL_ROOTS - {"event"}

    condition = collector.run(conditions.parse, data.get("conditions"), schema=facts.schema(available), where="conditions")

    actions = _parse_actions(data.get("actions"), catalog, crm, trigger, available, collector)
    collector.raise_if_any()
    return Rule(name=name, description=description, trigger=trigger_name or "", trigger_params=trigger_params,
                conditions=None if condition in (None, conditions.ALWAYS) else condition.as_data(), actions=actions, enabled=enabled)


def _parse_actions(raw: Any, catalog: Catalog, crm: CRM, trigger: TriggerType | None, available: frozenset[str],
                   collector: IssueCollector) -> list[dict[str, Any]]:
    if not isinstance(raw, list | tuple) or not raw:
        collector.add("actions", "required", "give at least one action, e.g. [{\"type\": \"create_task\", \"title\": \"Call\"}]")
        return []
    if len(raw) > MAX_ACTIONS:
        collector.add("actions", "too_many", f"at most {MAX_ACTIONS} actions per rule")
    sample = facts.sample(available)
    result = []
    for index, entry in enumerate(raw):
        where = f"actions[{index}]"
        action_name, raw_params = _typed(entry, where, "action", collector)
        if action_name is None:
            continue
        action = catalog.actions.get(action_name)
        if action is None:
            collector.add(f"{where}.type", "unknown_action", f"no action named {action_name!r}{_closest_hint(action_name, list(catalog.actions))}")
            continue
        before = len(collector.issues)
        params = _params(action.params, raw_params, where, collector)
        missing = sorted(action.needs - available)
        if missing and trigger is not None:
            collector.add(f"{where}.type", "not_available",
                          f"{action_name} needs a {', '.join(missing)}, and trigger {trigger.name} offers none (it offers: {', '.join(sorted(available))})")
        for param in action.templates:
            # Checked even when other parameters failed, so one answer lists every problem.
            if isinstance(raw_params.get(param), str) and not any(i.field == f"{where}.{param}" for i in collector.issues[before:]):
                problem = templates.check(raw_params[param], f"{where}.{param}", available | {"event"}, sample)
                if problem:
                    collector.issues.append(problem)
        if params is not None and action.check is not None and len(collector.issues) == before:
            collector.issues.extend(action.check(params, CheckContext(crm=crm, facts=available, where=where)))
        result.append({"type": action_name, **(params or {})})
    return result
