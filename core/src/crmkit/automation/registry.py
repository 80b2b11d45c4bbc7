"""What plugins register to extend automation: trigger types and action types.

A :class:`TriggerType` says which events start a rule (or, for a scheduled trigger, what
``crm.automations.tick(now)`` finds), which parameters it takes and which facts its rules may
use. An :class:`ActionType` says what a rule does, with its parameters checked when the rule is
saved. Both arrive through ``crmkit_register_automation_triggers`` /
``crmkit_register_automation_actions`` (the built-in ones too, from
:mod:`crmkit.builtin.automation_plugin`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.automation import templates
from crmkit.automation.facts import Facts
from crmkit.domain import Event
from crmkit.domain.fields import FieldSpec
from crmkit.errors import CRMError, FieldIssue

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.automation.rules import Rule
    from crmkit.storage.uow import UnitOfWork


class ActionFailed(CRMError):
    """An action could not do its work. ``permanent`` (the default): retrying cannot help (a
    record it needs is missing), so the run is recorded as failed; otherwise it is retried."""

    def __init__(self, message: str, *, permanent: bool = True):
        self.permanent = permanent
        super().__init__(message)


@attrs.frozen(kw_only=True)
class CheckContext:
    """What a save-time check may use.

    :ivar facts: the roots the rule's trigger offers (``contact``, ``deal`` …), besides ``event``.
    :ivar where: the place of the checked thing in the rule (``actions[0]``), to prefix issues.
    """

    crm: CRM
    facts: frozenset[str]
    where: str

    def issue(self, param: str, code: str, message: str) -> FieldIssue:
        return FieldIssue(f"{self.where}.{param}", code, message)


@attrs.frozen(kw_only=True)
class TriggerType:
    """What starts a rule.

    :ivar events: the event types it listens to; ``"*"`` for every event. Empty for a
        scheduled trigger.
    :ivar params: the parameters a rule gives it (``stage``, ``days`` …), parsed like entity
        fields: every problem is reported with its name.
    :ivar facts: the records its rules may use in conditions and templates (``event`` always).
    :ivar matches: ``matches(event, params, facts)``: whether this event starts the rule;
        None matches every listened event.
    :ivar check: ``check(params, context)``: save-time checks that need the CRM (a stage
        that exists), returning issues.
    :ivar scan: for a scheduled trigger, ``scan(crm, rule, now, limit)`` returns at most
        ``limit`` events due at ``now`` for ``rule`` (its params are ``rule.trigger_params``);
        each needs an id that is stable for the occurrence it stands for, so a rule runs once
        per occurrence however often ``tick`` runs. Leave out occurrences the rule already
        ran for (``crm.automations.runs``), or they use up the limit.
    """

    name: str
    description: str
    events: frozenset[str] = frozenset()
    params: tuple[FieldSpec, ...] = ()
    facts: frozenset[str] = frozenset({"contact"})
    matches: Callable[[Event, Mapping[str, Any], Facts], bool] | None = None
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[FieldIssue]] | None = None
    scan: Callable[[CRM, Rule, datetime, int], Iterable[Event]] | None = None

    def listens(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events

    @property
    def scheduled(self) -> bool:
        return self.scan is not None


@attrs.define(kw_only=True)
class ActionContext:
    """What an action is handed when it runs.

    :ivar uow: the unit of work to write through for a transactional action (its writes and
        the run's progress commit together, so a redelivered event cannot repeat them); None
        for a non-transactional one (a webhook), which should pass ``idempotency_key`` on.
    :ivar facts: the facts as plain data (``facts["contact"]`` …), as when the rule matched.
    :ivar idempotency_key: stable per rule, event and action.
    """

    crm: CRM
    rule: Rule
    event: Event
    params: dict[str, Any]
    facts: dict[str, Any]
    now: datetime
    idempotency_key: str
    uow: UnitOfWork | None = None

    def render(self, param: str) -> str | None:
        source = self.params.get(param)
        return None if source is None else templates.render(source, {**self.facts, "rule": {"id": self.rule.id, "name": self.rule.name},
                                                                      "now": self.now.isoformat()})

    def record(self, root: str) -> dict[str, Any]:
        """The record an action needs (``contact``, ``deal``); a run without it fails permanently."""
        found = self.facts.get(root)
        if not found:
            raise ActionFailed(f"this event concerns no {root} (event {self.event.type} {self.event.id})")
        return found  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class ActionType:
    """What a rule does.

    :ivar run: ``run(context)`` does the work and returns a JSON-safe summary for the run
        record (``{"task_id": …}``) or None. Raise :class:`ActionFailed` (or any exception:
        retried) to fail.
    :ivar params: its parameters, parsed like entity fields.
    :ivar templates: parameters that are Jinja2 templates, checked when the rule is saved.
    :ivar needs: records it cannot work without (``deal`` for moving a deal): a rule whose
        trigger offers none is refused when saved.
    :ivar transactional: True: ``run`` gets a unit of work and its writes commit with the
        run's progress (exactly once). False (outside calls): ``run`` gets none and may be
        repeated after a crash, with the same ``idempotency_key``.
    :ivar check: ``check(params, context)``: save-time checks that need the CRM.
    """

    name: str
    description: str
    run: Callable[[ActionContext], Mapping[str, Any] | None]
    params: tuple[FieldSpec, ...] = ()
    templates: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    transactional: bool = True
    check: Callable[[Mapping[str, Any], CheckContext], Iterable[FieldIssue]] | None = None
