"""The built-in trigger types (registered by :mod:`crmkit.builtin.automation_plugin`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit.automation.facts import ALL_ROOTS, Facts
from crmkit.automation.registry import CheckContext, TriggerType
from crmkit.domain import Event
from crmkit.domain import fields as f
from crmkit.domain.engagement import kind_name
from crmkit.errors import FieldIssue, ValidationFailed
from crmkit.storage.sql.types import UTCDateTime

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.automation.rules import Rule

DEAL_FACTS = frozenset({"deal", "contact", "stage", "pipeline"})
ACTIVITY_FACTS = frozenset({"activity", "contact", "deal"})


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.casefold() == b.casefold()


# --- contact.created ----------------------------------------------------------------------


def _contact_created(event: Event, params: Mapping[str, Any], facts: Facts) -> bool:
    return "source" not in params or _same(event.data.get("intake_source"), params["source"])


CONTACT_CREATED = TriggerType(
    name="contact.created",
    description="a contact was created; `source` (optional) limits it to one intake source (webform, import, api …)",
    events=frozenset({"contact.created"}),
    params=(f.FieldSpec("source", f.text(64)),),
    matches=_contact_created,
)


# --- activities ---------------------------------------------------------------------------


def _activity_logged(event: Event, params: Mapping[str, Any], facts: Facts) -> bool:
    return "kind" not in params or event.data.get("kind") == params["kind"]


def _form_submitted(event: Event, params: Mapping[str, Any], facts: Facts) -> bool:
    if event.data.get("kind") != "form.submitted":
        return False
    if "form" not in params:
        return True
    payload = event.data.get("payload") or {}
    return _same(payload.get("form"), params["form"]) or _same(event.data.get("subject"), params["form"])


ACTIVITY_LOGGED = TriggerType(
    name="activity.logged",
    description="an activity was logged; `kind` (optional) limits it to one kind (call, email.opened …)",
    events=frozenset({"activity.logged"}),
    params=(f.FieldSpec("kind", kind_name),),
    facts=ACTIVITY_FACTS,
    matches=_activity_logged,
)

FORM_SUBMITTED = TriggerType(
    name="form.submitted",
    description="a form.submitted activity was logged; `form` (optional) matches its payload's form or its subject",
    events=frozenset({"activity.logged"}),
    params=(f.FieldSpec("form", f.text(255)),),
    facts=ACTIVITY_FACTS,
    matches=_form_submitted,
)


# --- deals --------------------------------------------------------------------------------


def _entered_stage(event: Event, params: Mapping[str, Any], facts: Facts) -> bool:
    stage = facts.stage
    if stage is None:
        return False
    if "stage" in params and not _same(stage.get("name"), params["stage"]) and stage.get("id") != params["stage"]:
        return False
    if "pipeline" in params:
        pipeline = facts.pipeline or {}
        return _same(pipeline.get("name"), params["pipeline"]) or pipeline.get("id") == params["pipeline"]
    return True


def check_stage(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    if "stage" not in params and "pipeline" not in params:
        return []
    pipelines = context.crm.pipelines.list()
    if "pipeline" in params:
        chosen = [p for p in pipelines if _same(p.name, params["pipeline"]) or p.id == params["pipeline"]]
        if not chosen:
            names = ", ".join(p.name for p in pipelines) or "none yet"
            return [context.issue("pipeline", "not_found", f"no pipeline named {params['pipeline']!r} (pipelines: {names})")]
        pipelines = chosen
    if "stage" in params and not any(_same(s.name, params["stage"]) or s.id == params["stage"] for p in pipelines for s in p.stages):
        names = ", ".join(sorted({s.name for p in pipelines for s in p.stages})) or "none yet"
        where = f"pipeline {pipelines[0].name!r}" if "pipeline" in params else "any pipeline"
        return [context.issue("stage", "unknown_stage", f"{where} has no stage {params['stage']!r} (stages: {names})")]
    return []


DEAL_ENTERED_STAGE = TriggerType(
    name="deal.entered_stage",
    description="a deal was moved to (or created in) a stage; `stage` and `pipeline` (optional, name or id) narrow it",
    events=frozenset({"deal.stage_changed", "deal.created"}),
    params=(f.FieldSpec("stage", f.text(255)), f.FieldSpec("pipeline", f.text(255))),
    facts=DEAL_FACTS,
    matches=_entered_stage,
    check=check_stage,
)


# --- scores -------------------------------------------------------------------------------


def _direction(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if value not in ("up", "down"):
        raise ValidationFailed.single(field, "invalid_choice", f"{value!r}: choose up or down")
    return str(value)


def _score_crossed(event: Event, params: Mapping[str, Any], facts: Facts) -> bool:
    try:
        before, after, threshold = float(event.data["from"]), float(event.data["to"]), float(params["threshold"])
    except (KeyError, TypeError, ValueError):
        return False
    if params.get("direction", "up") == "down":
        return before >= threshold > after
    return before < threshold <= after


SCORE_CROSSED = TriggerType(
    name="score.crossed",
    description="a contact's lead score went up past `threshold` (or down past it, with direction = \"down\")",
    events=frozenset({"contact.score_changed"}),
    params=(f.FieldSpec("threshold", f.number(-1e9, 1e9), required=True), f.FieldSpec("direction", _direction)),
    matches=_score_crossed,
)


# --- any event ----------------------------------------------------------------------------


def _check_event_type(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    wanted = params["event_type"]
    if wanted in context.crm.event_types:
        return []
    from crmkit.automation.conditions import closest

    hint = closest(wanted, list(context.crm.event_types))
    return [context.issue("event_type", "unknown_event_type", f"no event type {wanted!r} is registered" + (f" (did you mean {hint!r}?)" if hint else ""))]


ANY_EVENT = TriggerType(
    name="event",
    description="any event of the type given as `event_type` (a plugin's own events too)",
    events=frozenset({"*"}),
    params=(f.FieldSpec("event_type", f.text(128), required=True),),
    facts=ALL_ROOTS - {"event"},
    matches=lambda event, params, facts: event.type == params["event_type"],
    check=_check_event_type,
)


# --- no activity for N days (scheduled) ---------------------------------------------------


def _scan_inactive(crm: CRM, rule: Rule, now: datetime, limit: int) -> Iterable[Event]:
    """Contacts whose last activity (or creation, without any) is at least ``days`` old.

    The occurrence key is the contact and the moment its silence began, so a rule fires once
    per quiet spell: a new activity starts a new spell (and a new run after ``days`` more).
    Spells this rule already finished a run for are left out in the query (a run to retry is
    not finished), so ``limit`` bounds each tick's work however many contacts stay quiet.
    """
    from crmkit.automation.runs import FINAL
    from crmkit.automation.tables import RUNS

    tables = crm.backend.metadata.tables
    contacts, activities, runs = tables["contacts"], tables["activities"], tables[RUNS]
    days = rule.trigger_params["days"]
    latest = (sa.select(activities.c.contact_id, sa.func.max(activities.c.occurred_at).label("at"))
              .where(activities.c.contact_id.is_not(None)).group_by(activities.c.contact_id).subquery())
    last = sa.func.coalesce(latest.c.at, contacts.c.created_at)
    handled = (sa.select(runs.c.id)
               .where(runs.c.rule_id == rule.id, runs.c.contact_id == contacts.c.id, runs.c.status.in_(sorted(FINAL)),
                      runs.c.created_at >= last)
               .exists())
    stmt = (sa.select(contacts.c.id, last.label("last_at"))
            .select_from(contacts.outerjoin(latest, latest.c.contact_id == contacts.c.id))
            .where(last <= sa.bindparam("cutoff", now - timedelta(days=float(days)), type_=UTCDateTime()), ~handled)
            .order_by(last, contacts.c.id)
            .limit(limit))
    with crm.read() as uow:
        assert uow.connection is not None
        found = [(row.id, _utc(row.last_at)) for row in uow.connection.execute(stmt)]
    for contact_id, last_at in found:
        yield Event(type="contact.inactive", subject_id=contact_id, id=f"contact.inactive:{contact_id}:{last_at.isoformat()}",
                    data={"days": days, "last_activity_at": last_at.isoformat()}, occurred_at=now)


def _utc(value: Any) -> datetime:
    from crmkit.domain.values import parse_datetime

    return value if isinstance(value, datetime) and value.tzinfo else parse_datetime(value, "last_at")


CONTACT_INACTIVE = TriggerType(
    name="contact.inactive",
    description="scheduled (crm.automations.tick): a contact has had no activity for `days` days; once per quiet spell",
    params=(f.FieldSpec("days", f.number(1, 36500), required=True),),
    scan=_scan_inactive,
)

BUILTIN_TRIGGERS = (CONTACT_CREATED, ACTIVITY_LOGGED, FORM_SUBMITTED, DEAL_ENTERED_STAGE, SCORE_CROSSED, ANY_EVENT, CONTACT_INACTIVE)
