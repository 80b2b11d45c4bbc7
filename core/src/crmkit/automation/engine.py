"""Running rules: from an event (the ``crmkit_handle_event`` subscriber, after the triggering
write committed) or from ``tick(now)`` for scheduled triggers.

For each rule whose trigger matches, the run is recorded once per (rule, event) in
``automation_runs`` (:mod:`crmkit.automation.runs`), its conditions are evaluated, and its
actions run in order. A transactional action (tasks, fields, deals) writes through a unit of
work that also advances the run's step, so it happens exactly once however often the event is
delivered. A failing action is recorded on the run and never touches the triggering write:

* a permanent failure (invalid input, a missing record, a template error) ends the run as
  ``failed``;
* anything else (a webhook that timed out, a conflict) leaves it ``retrying``: the subscriber
  then raises so the dispatcher retries the event with backoff, and the run resumes at the
  action that failed (for scheduled triggers, the next ``tick`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import jinja2

from crmkit.automation.facts import Facts
from crmkit.automation.registry import ActionContext, ActionFailed
from crmkit.automation.runs import LostRace, Run, RunStore
from crmkit.domain import Event
from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, NotFound, ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.automation.rules import Catalog, Rule
    from crmkit.automation.settings import AutomationSettings
    from crmkit.storage.uow import UnitOfWork

log = logging.getLogger(__name__)
ACTOR_PREFIX = "automation"
MAX_ERROR = 2000
#: A run left "running" this long was abandoned (its runner died): another may take it up.
RUN_LEASE = timedelta(minutes=5)


class RunsPending(Exception):
    """Raised by the event subscriber when runs will be retried, so the dispatcher retries it."""


def actor_for(rule: Rule, depth: int) -> str:
    """The actor of the events a rule's writes cause (the audit log shows it; the loop guard
    reads it)."""
    return f"{ACTOR_PREFIX}:{depth}:{rule.id}"


def attribute(uow: UnitOfWork, actor: str) -> None:
    """Mark the events of ``uow`` as caused by ``actor`` before they are written.

    Only the events: ``uow.actor`` is a user id (rows record it as ``created_by`` /
    ``changed_by``, foreign keys to users), which a rule is not.
    """
    uow.events[:] = [attrs.evolve(event, actor=actor) for event in uow.events]


def caused_by(actor: str | None) -> tuple[int, str] | None:
    """``(chain depth, rule id)`` when an event was caused by a rule, else None."""
    parts = (actor or "").split(":")
    if len(parts) == 3 and parts[0] == ACTOR_PREFIX and parts[1].isdigit():
        return int(parts[1]), parts[2]
    return None


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying an action that raised ``exc`` cannot help."""
    if isinstance(exc, ActionFailed):
        return exc.permanent
    if isinstance(exc, ConflictError):
        return False  # someone changed the record meanwhile: the next attempt reads it afresh
    return isinstance(exc, ValidationFailed | NotFound | jinja2.TemplateError)


@attrs.define
class TickReport:
    found: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0

    def count(self, run: Run | None) -> None:
        if run is None:
            self.skipped += 1
        elif run.status in ("ok", "skipped", "failed", "retrying"):
            setattr(self, run.status, getattr(self, run.status) + 1)


class Engine:
    def __init__(self, crm: CRM, catalog: Catalog, settings: AutomationSettings, runs: RunStore):
        self.crm = crm
        self.catalog = catalog
        self.settings = settings
        self.runs = runs

    # --- events -------------------------------------------------------------------------

    def handle(self, event: Event, rules: Iterable[Rule]) -> list[Run]:
        """Run the rules this event triggers; raise :class:`RunsPending` when some will be retried."""
        cause = caused_by(event.actor)
        depth = 0 if cause is None else cause[0] + 1
        facts = Facts(self.crm, event)
        done: list[Run] = []
        for rule in rules:
            trigger = self.catalog.triggers.get(rule.trigger)
            if trigger is None:
                log.warning("automation rule %r: trigger %r is not installed; rule skipped", rule.name, rule.trigger)
                continue
            if not trigger.listens(event.type) or trigger.scheduled:
                continue
            if cause is not None and (cause[1] == rule.id or depth > self.settings.max_chain_depth):
                log.info("automation rule %r: not run on event %s caused by %s (chain depth %d)", rule.name, event.id, event.actor, depth)
                continue
            if trigger.matches is not None and not trigger.matches(event, rule.trigger_params, facts):
                continue
            run = self.run(rule, event, facts, depth=depth, record_skip=True)
            if run is not None:
                done.append(run)
        # "running": another runner has it (or crashed holding it): make sure it gets finished.
        pending = [run for run in done if run.status in ("retrying", "running")]
        if pending:
            raise RunsPending("; ".join(f"rule {run.rule_name!r}: {run.error or 'still running in another worker'}" for run in pending))
        return done

    # --- scheduled triggers -------------------------------------------------------------

    def tick(self, rules: Iterable[Rule], now: datetime | None = None) -> TickReport:
        at = now or utcnow()
        report = TickReport()
        for rule in rules:
            trigger = self.catalog.triggers.get(rule.trigger)
            if trigger is None or trigger.scan is None:
                continue
            for event in trigger.scan(self.crm, rule, at, self.settings.tick_limit):
                report.found += 1
                # A skip is not recorded: the occurrence is looked at again next tick, when the
                # conditions may hold.
                report.count(self.run(rule, event, Facts(self.crm, event), depth=0, record_skip=False, now=at))
        return report

    # --- one run ------------------------------------------------------------------------

    def run(self, rule: Rule, event: Event, facts: Facts, *, depth: int, record_skip: bool, now: datetime | None = None) -> Run | None:
        """Run ``rule`` for ``event`` unless it already ran; the run, or None when skipped unrecorded."""
        trigger = self.catalog.triggers[rule.trigger]
        existing = self.runs.find(rule.id, event.id)
        if existing is not None and (existing.final or existing.status == "running" and existing.updated_at > utcnow() - RUN_LEASE):
            return existing  # done, or in another runner's hands (taken up again once its lease is over)
        context = facts.as_dict(trigger.facts)
        contact_id = (context.get("contact") or {}).get("id")
        try:
            if existing is None:
                reasons = rule.condition().failures(context)
                if reasons:
                    if not record_skip:
                        return None
                    return self.runs.start(rule, event, contact_id, status="skipped", error=_clip("conditions not met: " + "; ".join(reasons)))
                run = self.runs.start(rule, event, contact_id)
            else:
                run = self.runs.resume(existing)
        except LostRace:
            return self.runs.find(rule.id, event.id)
        return self._execute(rule, event, run, context, depth, now or utcnow())

    def _execute(self, rule: Rule, event: Event, run: Run, facts: dict[str, Any], depth: int, now: datetime) -> Run:
        actor = actor_for(rule, depth)
        while run.step < len(rule.actions):
            index = run.step
            spec = rule.actions[index]
            done = index == len(rule.actions) - 1
            try:
                action = self.catalog.actions.get(spec.get("type", ""))
                if action is None:
                    raise ActionFailed(f"action {spec.get('type')!r} is not installed", permanent=False)
                context = ActionContext(crm=self.crm, rule=rule, event=event, facts=facts, now=now,
                                        params={k: v for k, v in spec.items() if k != "type"},
                                        idempotency_key=f"automation:{rule.id}:{event.id}:{index}")
                if action.transactional:
                    with self.crm.uow() as uow:
                        context.uow = uow
                        result = action.run(context)
                        attribute(uow, actor)
                        assert uow.connection is not None
                        self.runs.advance(uow.connection, run, _jsonable(result), done=done)
                else:
                    result = action.run(context)
                    self.runs.advance_alone(run, _jsonable(result), done=done)
            except LostRace:
                return self.runs.find(rule.id, event.id) or run
            except Exception as exc:
                permanent = is_permanent(exc) or run.attempts >= self.settings.max_attempts
                status = "failed" if permanent else "retrying"
                error = _clip(f"actions[{index}] {spec.get('type')}: {type(exc).__name__}: {exc}")
                log.warning("automation rule %r, event %s: %s (%s)", rule.name, event.id, error, status)
                self.runs.finish(run, status, error)
                return run
        return run


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _jsonable(result: Any) -> Any:
    from crmkit.serialize import to_jsonable

    return None if result is None else to_jsonable(dict(result))
