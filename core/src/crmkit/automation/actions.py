"""The built-in action types (registered by :mod:`crmkit.builtin.automation_plugin`).

Transactional actions write through the run's unit of work with the services' ``*_in``
methods, so the same validation applies as everywhere else and the write commits with the
run's progress. ``call_webhook`` and ``send_message`` reach outside and pass the run's
idempotency key on instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx

from crmkit.automation.registry import ActionContext, ActionFailed, ActionType, CheckContext
from crmkit.automation.triggers import check_stage
from crmkit.domain import fields as f
from crmkit.domain.values import LifecycleStage
from crmkit.errors import FieldIssue, ValidationFailed
from crmkit.serialize import to_jsonable

SETTABLE = ("contact", "deal")
READ_ONLY = ("id", "version", "created_at", "updated_at", "score")


def _anything(value: Any, field: str) -> Any:
    return value


def _choice(*choices: str) -> f.Parser:
    def parse(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if value not in choices:
            raise ValidationFailed.single(field, "invalid_choice", f"{value!r}: choose one of {', '.join(choices)}")
        return str(value)

    return parse


def _with_read(context: CheckContext, fn: Any) -> list[FieldIssue]:
    """Run a service's validation in a read-only unit of work; its issues, re-placed under the action."""
    try:
        with context.crm.read() as uow:
            fn(uow)
    except ValidationFailed as exc:
        return [FieldIssue(f"{context.where}.{issue.field}", issue.code, issue.message) for issue in exc.issues]
    return []


# --- create_task --------------------------------------------------------------------------


def _find_user(crm: Any, reference: str) -> str | None:
    with crm.read() as uow:
        user = uow.users.find(reference) or uow.users.first(uow.users.where(email=reference.strip().lower()))
    return None if user is None else user.id


def _check_task(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    assignee = params.get("assignee")
    if assignee is None or assignee == "owner" or _find_user(context.crm, assignee) is not None:
        return []
    return [context.issue("assignee", "not_found", f"no user with id or e-mail {assignee!r} (or use \"owner\": the record's owner)")]


def _create_task(ctx: ActionContext) -> dict[str, Any]:
    assert ctx.uow is not None
    contact, deal = ctx.facts.get("contact"), ctx.facts.get("deal")
    title = (ctx.render("title") or "").strip()
    if not title:
        raise ActionFailed("the task title rendered empty")
    assignee = ctx.params.get("assignee")
    if assignee == "owner":
        assignee = (deal or {}).get("owner_id") or (contact or {}).get("owner_id")
    elif assignee is not None:
        assignee = _find_user(ctx.crm, assignee)
        if assignee is None:
            raise ActionFailed(f"no user with id or e-mail {ctx.params['assignee']!r}")
    data: dict[str, Any] = {"title": title[:254] + "…" if len(title) > 255 else title, "notes": ctx.render("notes"),
                            "assignee_id": assignee, "contact_id": (contact or {}).get("id"), "deal_id": (deal or {}).get("id")}
    if "due_in_days" in ctx.params:
        data["due_at"] = ctx.now + timedelta(days=float(ctx.params["due_in_days"]))
    task = ctx.crm.tasks.create_in(ctx.uow, {k: v for k, v in data.items() if v is not None})
    return {"task_id": task.id}


CREATE_TASK = ActionType(
    name="create_task",
    description="create a task: `title` and `notes` are templates; `assignee` a user id, e-mail or \"owner\"; `due_in_days`",
    run=_create_task,
    params=(f.FieldSpec("title", f.text(2000), required=True), f.FieldSpec("notes", f.text(10_000)),
            f.FieldSpec("assignee", f.text(255)), f.FieldSpec("due_in_days", f.number(0, 3650))),
    templates=("title", "notes"),
    check=_check_task,
)


# --- set_field / set_lifecycle / add_tag --------------------------------------------------


def _changes(field: str, value: Any) -> dict[str, Any]:
    """``custom.budget`` -> ``{"custom": {"budget": …}}`` (an update names only what it changes)."""
    if field.startswith("custom."):
        return {"custom": {field.split(".", 1)[1]: value}}
    return {field: value}


def _service(crm: Any, entity: str) -> Any:
    return crm.contacts if entity == "contact" else crm.deals


def _check_set_field(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    entity, field = params.get("entity", "contact"), params["field"]
    if entity not in context.facts:
        return [context.issue("entity", "not_available", f"this rule's trigger offers no {entity}")]
    if field.split(".")[0] in READ_ONLY or field == "stage_id" or field == "pipeline_id":
        hint = " (use move_deal to change a deal's stage)" if field in ("stage_id", "pipeline_id") else ""
        return [context.issue("field", "read_only", f"{entity}.{field} cannot be set by a rule{hint}")]
    issues = _with_read(context, lambda uow: _service(context.crm, entity).parse(uow, _changes(field, params.get("value")), partial=True))
    # The service names the entity's field ("lifecycle_stage"); say which parameter it came from.
    return [FieldIssue(f"{context.where}.value" if i.code != "unknown_field" else f"{context.where}.field", i.code,
                       f"{entity}.{field}: {i.message}") for i in issues]


def _set_field(ctx: ActionContext) -> dict[str, Any]:
    assert ctx.uow is not None
    entity = ctx.params.get("entity", "contact")
    record = ctx.record(entity)
    updated = _service(ctx.crm, entity).update_in(ctx.uow, record["id"], _changes(ctx.params["field"], ctx.params.get("value")))
    return {f"{entity}_id": updated.id, "field": ctx.params["field"], "value": to_jsonable(ctx.params.get("value"))}


SET_FIELD = ActionType(
    name="set_field",
    description="set a field of the contact (or, with entity = \"deal\", the deal): `field` (custom.x for custom fields), `value`",
    run=_set_field,
    params=(f.FieldSpec("entity", _choice(*SETTABLE)), f.FieldSpec("field", f.text(120), required=True),
            f.FieldSpec("value", _anything)),
    check=_check_set_field,
)


def _set_lifecycle(ctx: ActionContext) -> dict[str, Any]:
    assert ctx.uow is not None
    contact = ctx.crm.contacts.update_in(ctx.uow, ctx.record("contact")["id"], {"lifecycle_stage": ctx.params["stage"]})
    return {"contact_id": contact.id, "lifecycle_stage": ctx.params["stage"]}


SET_LIFECYCLE = ActionType(
    name="set_lifecycle",
    description="set the contact's lifecycle stage: `stage` (lead, mql, sql, customer …)",
    run=_set_lifecycle,
    params=(f.FieldSpec("stage", f.enum_of(LifecycleStage), required=True),),
    needs=frozenset({"contact"}),
)


def _add_tag(ctx: ActionContext) -> dict[str, Any]:
    assert ctx.uow is not None
    contact_id = ctx.record("contact")["id"]
    current = ctx.uow.contacts.get(contact_id)
    tag = ctx.params["tag"]
    if tag in current.tags:
        return {"contact_id": contact_id, "tag": tag, "added": False}
    ctx.crm.contacts.update_in(ctx.uow, contact_id, {"tags": [*current.tags, tag]})
    return {"contact_id": contact_id, "tag": tag, "added": True}


def _one_tag(value: Any, field: str) -> str | None:
    found = f.tags([value] if isinstance(value, str) else value, field)
    if len(found) != 1:
        raise ValidationFailed.single(field, "invalid_tag", "give one tag")
    return found[0]


ADD_TAG = ActionType(
    name="add_tag",
    description="add `tag` to the contact's tags",
    run=_add_tag,
    params=(f.FieldSpec("tag", _one_tag, required=True),),
    needs=frozenset({"contact"}),
)


# --- move_deal ----------------------------------------------------------------------------


def _move_deal(ctx: ActionContext) -> dict[str, Any]:
    assert ctx.uow is not None
    deal_id = ctx.record("deal")["id"]
    pipeline = ctx.params.get("pipeline")
    current = ctx.uow.deals.get(deal_id)
    try:
        deal, change = ctx.crm.deals.move_in(ctx.uow, deal_id, ctx.params["stage"], pipeline=pipeline,
                                             allow_pipeline_change=pipeline is not None)
    except ValidationFailed as exc:
        if any(issue.code == "same_stage" for issue in exc.issues):
            return {"deal_id": deal_id, "moved": False, "stage_id": current.stage_id}
        raise
    return {"deal_id": deal.id, "moved": True, "stage_id": change.to_stage_id}


MOVE_DEAL = ActionType(
    name="move_deal",
    description="move the deal to `stage` (of `pipeline`, when given: it may then change pipeline)",
    run=_move_deal,
    params=(f.FieldSpec("stage", f.text(255), required=True), f.FieldSpec("pipeline", f.text(255))),
    needs=frozenset({"deal"}),
    check=check_stage,
)


# --- call_webhook -------------------------------------------------------------------------


def _url(value: Any, field: str) -> str | None:
    text = f.text(2000)(value, field)
    if text is None:
        return None
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValidationFailed.single(field, "invalid_url", f"{text!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationFailed.single(field, "invalid_url", f"{text!r}: give an http:// or https:// URL")
    return text


def _headers(value: Any, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed.single(field, "invalid_type", "headers are an object of text values, e.g. {\"Authorization\": \"Bearer …\"}")
    return dict(value)


def _call_webhook(ctx: ActionContext) -> dict[str, Any]:
    from crmkit.automation.service import automations

    body = {"rule": {"id": ctx.rule.id, "name": ctx.rule.name}, **ctx.facts}
    headers = {**ctx.params.get("headers", {}), "Idempotency-Key": ctx.idempotency_key, "User-Agent": "crmkit-automation"}
    timeout = automations(ctx.crm).settings.webhook_timeout_seconds
    try:
        response = httpx.post(ctx.params["url"], json=to_jsonable(body), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ActionFailed(f"POST {ctx.params['url']} failed: {type(exc).__name__}: {exc}", permanent=False) from exc
    if response.is_success:
        return {"status_code": response.status_code}
    # A refusal (4xx) will not change on retry, except timeouts and rate limits.
    permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
    raise ActionFailed(f"POST {ctx.params['url']} answered {response.status_code}: {response.text[:200]}", permanent=permanent)


CALL_WEBHOOK = ActionType(
    name="call_webhook",
    description="POST the rule, the event and its records as JSON to `url` (with `headers`); an Idempotency-Key header identifies the run",
    run=_call_webhook,
    params=(f.FieldSpec("url", _url, required=True), f.FieldSpec("headers", _headers)),
    transactional=False,
)


# --- send_message -------------------------------------------------------------------------


def _check_message(params: Mapping[str, Any], context: CheckContext) -> list[FieldIssue]:
    messages = getattr(context.crm, "messages", None)
    if messages is None:
        return [context.issue("type", "unavailable", "sending needs the channel layer (crm.messages), which is not installed")]
    issues = []
    if params["channel"] not in messages.channels:
        known = ", ".join(sorted(messages.channels)) or "none installed"
        issues.append(context.issue("channel", "unknown_channel", f"no channel named {params['channel']!r} (known: {known})"))
    if ("template" in params) == ("body" in params):
        issues.append(context.issue("template", "template_or_body", "give either a template name or a body"))
    elif "template" in params:
        try:
            messages.template(params["template"])
        except Exception as exc:  # NotFound, or the channel tables are missing
            issues.append(context.issue("template", "not_found", str(exc)))
    return issues


def _send_message(ctx: ActionContext) -> dict[str, Any]:
    contact = ctx.record("contact")
    message = ctx.crm.messages.send(
        contact["id"], ctx.params["channel"], template=ctx.params.get("template"), body=ctx.params.get("body"),
        subject=ctx.params.get("subject"), purpose=ctx.params["purpose"], idempotency_key=ctx.idempotency_key,
        deal_id=(ctx.facts.get("deal") or {}).get("id"),
    )
    return {"message_id": message["id"], "status": message["status"]}


SEND_MESSAGE = ActionType(
    name="send_message",
    description="send a message to the contact through crm.messages: `channel`, `template` (a saved one) or `body`, `purpose`, `subject`",
    run=_send_message,
    params=(f.FieldSpec("channel", f.text(64), required=True), f.FieldSpec("template", f.text(100)),
            f.FieldSpec("body", f.text(10_000)), f.FieldSpec("subject", f.text(500)),
            f.FieldSpec("purpose", f.text(64), required=True)),
    needs=frozenset({"contact"}),
    transactional=False,
    check=_check_message,
)

BUILTIN_ACTIONS = (CREATE_TASK, SET_FIELD, SET_LIFECYCLE, ADD_TAG, MOVE_DEAL, CALL_WEBHOOK, SEND_MESSAGE)
