"""``crm.automations``: saving, listing and removing rules, their runs, and running them.

Rules are checked in full when saved (:func:`crmkit.automation.rules.parse_definition`); a file
of several rules is saved all together or not at all. Saving, replacing and removing a rule
emit ``automation_rule.*`` events, so the audit log and webhooks see rule changes too.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.automation.engine import Engine, TickReport
from crmkit.automation.registry import ActionType, TriggerType
from crmkit.automation.rules import Catalog, Rule, parse_definition
from crmkit.automation.runs import Run, RunStore
from crmkit.automation.settings import SECTION, AutomationSettings
from crmkit.automation.tables import RULES
from crmkit.domain import Event
from crmkit.domain.values import utcnow
from crmkit.errors import FieldIssue, NotFound, ValidationFailed
from crmkit.plugins import Registry
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM

EVENT_TYPES = {
    "automation_rule.created": "an automation rule was saved",
    "automation_rule.updated": "an automation rule was replaced, or switched on or off",
    "automation_rule.deleted": "an automation rule was removed (with its runs)",
}


def collect_catalog(crm: CRM) -> Catalog:
    triggers: Registry[TriggerType] = Registry("automation trigger", key=lambda t: t.name)
    actions: Registry[ActionType] = Registry("automation action", key=lambda a: a.name)
    return Catalog(crm.plugins.collect("crmkit_register_automation_triggers", triggers),
                   crm.plugins.collect("crmkit_register_automation_actions", actions))


class Automations:
    def __init__(self, crm: CRM):
        self.crm = crm
        self.settings: AutomationSettings = crm.settings_for(SECTION)
        self.catalog = collect_catalog(crm)
        self.runs = RunStore(crm)
        self.engine = Engine(crm, self.catalog, self.settings, self.runs)

    @property
    def table(self) -> sa.Table:
        return self.crm.backend.metadata.tables[RULES]

    # --- rules --------------------------------------------------------------------------

    def validate(self, definition: Any) -> Rule:
        """Check a definition without saving it; the rule it describes."""
        return parse_definition(definition, self.catalog, self.crm)

    def add(self, definition: Any, *, replace: bool = False, actor: str | None = None) -> Rule:
        """Save a rule. A rule of the same name is an error, or with ``replace`` is replaced
        (keeping its id, so its runs still count: events it ran for do not run again)."""
        return self.add_many([definition], replace=replace, actor=actor)[0]

    def validate_many(self, definitions: Iterable[Any]) -> list[Rule]:
        """Check several definitions; every issue is named by the rule's place when there are
        several (``rules[2].actions[0].title``)."""
        items = list(definitions)
        rules, issues = [], []
        for index, definition in enumerate(items):
            try:
                rules.append(self.validate(definition))
            except ValidationFailed as exc:
                prefix = f"rules[{index}]." if len(items) > 1 else ""
                issues.extend(FieldIssue(prefix + i.field, i.code, i.message) for i in exc.issues)
        names = [r.name for r in rules]
        for name in sorted({n for n in names if names.count(n) > 1}):
            issues.append(FieldIssue("name", "duplicate", f"two rules are named {name!r}"))
        if issues:
            raise ValidationFailed(issues)
        return rules

    def add_many(self, definitions: Iterable[Any], *, replace: bool = False, actor: str | None = None) -> list[Rule]:
        """Save several rules: all of them, or — when any is invalid — none."""
        rules = self.validate_many(definitions)
        t = self.table
        saved = []
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            for index, rule in enumerate(rules):
                existing = conn.execute(sa.select(t).where(t.c.name == rule.name)).first()
                if existing is None:
                    conn.execute(sa.insert(t).values(**self._row(rule)))
                    uow.emit("automation_rule.created", rule.id, to_jsonable(rule))
                elif not replace:
                    where = f"rules[{index}].name" if len(rules) > 1 else "name"
                    raise ValidationFailed.single(where, "duplicate", f"a rule named {rule.name!r} exists already (replace it to change it)")
                else:
                    rule = attrs.evolve(rule, id=existing.id, created_at=existing.created_at, version=existing.version + 1)
                    self._update(conn, rule, existing.version)
                    uow.emit("automation_rule.updated", rule.id, to_jsonable(rule))
                saved.append(rule)
        return saved

    def _row(self, rule: Rule) -> dict[str, Any]:
        return attrs.asdict(rule, recurse=False)

    def _update(self, conn: sa.Connection, rule: Rule, version: int) -> None:
        from crmkit.errors import ConflictError

        t = self.table
        values = {k: v for k, v in self._row(rule).items() if k not in ("id", "created_at")}
        values["updated_at"] = utcnow()
        if conn.execute(sa.update(t).where(t.c.id == rule.id, t.c.version == version).values(**values)).rowcount != 1:
            raise ConflictError("automation rule", rule.name, version)

    def _rules(self, rows: Iterable[Any]) -> list[Rule]:
        return [Rule(**{f.name: getattr(row, f.name) for f in attrs.fields(Rule)}) for row in rows]

    def get(self, name_or_id: str) -> Rule:
        t = self.table
        with self.crm.read() as uow:
            assert uow.connection is not None
            found = self._rules(uow.connection.execute(sa.select(t).where(sa.or_(t.c.id == name_or_id, t.c.name == name_or_id))))
        if not found:
            raise NotFound("automation rule", name_or_id)
        return found[0]

    def list(self, *, enabled: bool | None = None) -> list[Rule]:
        t = self.table
        stmt = sa.select(t).order_by(t.c.name)
        if enabled is not None:
            stmt = stmt.where(t.c.enabled == enabled)
        with self.crm.read() as uow:
            assert uow.connection is not None
            return self._rules(uow.connection.execute(stmt))

    def remove(self, name_or_id: str, *, actor: str | None = None) -> Rule:
        """Delete a rule and its runs."""
        rule = self.get(name_or_id)
        with self.crm.uow(actor) as uow:
            assert uow.connection is not None
            runs = self.runs.table
            # Runs first: MySQL/MariaDB enforce the cascade, SQLite only with foreign keys on.
            uow.connection.execute(sa.delete(runs).where(runs.c.rule_id == rule.id))
            if uow.connection.execute(sa.delete(self.table).where(self.table.c.id == rule.id)).rowcount != 1:
                raise NotFound("automation rule", name_or_id)
            uow.emit("automation_rule.deleted", rule.id, {"name": rule.name})
        return rule

    def set_enabled(self, name_or_id: str, enabled: bool, *, actor: str | None = None) -> Rule:
        rule = self.get(name_or_id)
        changed = attrs.evolve(rule, enabled=enabled, version=rule.version + 1)
        with self.crm.uow(actor) as uow:
            assert uow.connection is not None
            self._update(uow.connection, changed, rule.version)
            uow.emit("automation_rule.updated", rule.id, {"name": rule.name, "enabled": enabled})
        return changed

    # --- running ------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Run]:
        """Run the rules ``event`` triggers (the ``crmkit_handle_event`` subscriber calls this)."""
        if not self.settings.enabled:
            return []
        return self.engine.handle(event, self.list(enabled=True))

    def tick(self, now: datetime | None = None) -> TickReport:
        """Run scheduled triggers (``contact.inactive`` …) as of ``now``: call it periodically
        (``crmkit automations tick`` from cron). Each occurrence runs its rule once."""
        if not self.settings.enabled:
            return TickReport()
        return self.engine.tick(self.list(enabled=True), now)

    def run_log(self, *, rule: str | None = None, status: str | None = None, contact_id: str | None = None,
                limit: int | None = 100) -> list[Run]:
        """Recorded runs, newest first."""
        rule_id = self.get(rule).id if rule else None
        return self.runs.list(rule_id=rule_id, status=status, contact_id=contact_id, limit=limit)


def automations(crm: CRM) -> Automations:
    """``crm.automations`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "automations", None)
    return existing if isinstance(existing, Automations) else Automations(crm)


def load_definitions(path: str | Path) -> list[Any]:
    """Rule definitions from a TOML or JSON file: one rule, or several (``[[rules]]`` in TOML,
    ``{"rules": [...]}`` or a list in JSON)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed.single("file", "unreadable", f"{file}: {exc.strerror or exc}") from None
    try:
        data: Any = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValidationFailed.single("file", "invalid_syntax", f"{file}: {exc}") from None
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping) and set(data) == {"rules"}:
        rules = data["rules"]
        if not isinstance(rules, list):
            raise ValidationFailed.single("rules", "invalid_type", f"{file}: rules must be a list of rules")
        return rules
    return [data]
