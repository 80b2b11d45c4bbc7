"""Automation rules against real databases: tasks from intake and from deals entering a stage,
once per event however often it is delivered, rules checked in full when saved, failures
recorded (retried when they may pass) without touching the triggering write, scheduled
triggers, plugin-defined triggers and actions, webhooks to a real HTTP server, the CLI."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.automation import ActionFailed, ActionType, TriggerType
from crmkit.automation.conditions import parse
from crmkit.automation.engine import RunsPending
from crmkit.builtin import automation_plugin
from crmkit.channels import Capabilities, SendResult
from crmkit.config import Config
from crmkit.domain import Event
from crmkit.domain import fields as f
from crmkit.domain.values import utcnow
from crmkit.errors import ValidationFailed

STAGES = [("New", 0.1), ("Demo", 0.4), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]

WEB_LEADS = {
    "name": "Call new web leads",
    "trigger": {"type": "contact.created", "source": "webform"},
    "conditions": {"all": [{"field": "contact.lifecycle_stage", "op": "eq", "value": "lead"},
                           {"field": "contact.email", "op": "exists"}]},
    "actions": [{"type": "create_task", "title": "Call {{ contact.first_name }} ({{ contact.email }})", "due_in_days": 2,
                 "assignee": "owner"}],
}
DEMO_PREP = {
    "name": "Prepare demos",
    "trigger": {"type": "deal.entered_stage", "stage": "demo", "pipeline": "Sales"},
    "actions": [{"type": "create_task", "title": "Prepare the demo for {{ deal.title }} ({{ stage.name }}, {{ pipeline.name }})"},
                {"type": "add_tag", "tag": "demo"}],
}


def tasks(crm: Any) -> list[Any]:
    return crm.tasks.list(limit=None)


def force_redelivery(crm: Any, event_id: str) -> None:
    """Make the dispatcher deliver an event again, to every subscriber, as after a crash."""
    tables = crm.backend.metadata.tables
    outbox, deliveries = tables["outbox_events"], tables["event_deliveries"]
    with crm.backend.engine.begin() as conn:
        conn.execute(sa.delete(deliveries).where(deliveries.c.event_id == event_id))
        conn.execute(sa.update(outbox).where(outbox.c.id == event_id).values(dispatched_at=None, next_attempt_at=None))
    assert crm.events.drain().dispatched >= 1


def the_event(events: Any, type_: str, subject_id: str) -> Any:
    [event] = [e for e in events.events if e.type == type_ and e.subject_id == subject_id]
    return event


# --- the acceptance cases ---------------------------------------------------------------------


def test_a_rule_creates_a_task_for_a_contact_from_intake_once_however_often_the_event_comes(any_crm, events):
    crm = any_crm
    owner = crm.users.create({"name": "Olga", "email": "olga@example.com"})
    crm.automations.add(WEB_LEADS)

    web = crm.intake.submit({"first_name": "Ada", "email": "ada@example.com", "owner_id": owner.id}, source="webform").contact
    crm.intake.submit({"first_name": "Bob", "email": "bob@example.com"}, source="import")  # another source: no task

    [task] = tasks(crm)
    assert (task.title, task.contact_id, task.assignee_id) == ("Call Ada (ada@example.com)", web.id, owner.id)
    assert task.due_at is not None and timedelta(days=1, hours=23) < task.due_at - task.created_at <= timedelta(days=2)

    created = the_event(events, "contact.created", web.id)
    automation_plugin.crmkit_handle_event(event=created, crm=crm)  # the subscriber called again
    force_redelivery(crm, created.id)  # the dispatcher delivering it again
    assert [t.id for t in tasks(crm)] == [task.id]

    [run] = crm.automations.run_log()
    assert (run.rule_name, run.event_id, run.status, run.attempts, run.contact_id) == ("Call new web leads", created.id, "ok", 1, web.id)
    assert run.results == [{"task_id": task.id}]
    # The task's write is attributed to the rule (the audit log and loop guard read this).
    assert the_event(events, "task.created", task.id).actor == f"automation:0:{run.rule_id}"


def test_a_rule_creates_a_task_when_a_deal_enters_a_stage_once_per_move(any_crm, events):
    crm = any_crm
    crm.pipelines.create("Sales", STAGES)
    crm.automations.add(DEMO_PREP)
    contact = crm.contacts.create({"first_name": "Ada"})
    deal = crm.deals.create({"title": "Licence", "pipeline": "Sales", "contact_id": contact.id})
    assert tasks(crm) == []  # created in "New"

    crm.deals.move(deal.id, "Demo")
    [task] = tasks(crm)
    assert (task.title, task.deal_id, task.contact_id) == ("Prepare the demo for Licence (Demo, Sales)", deal.id, contact.id)
    assert crm.contacts.get(contact.id).tags == ["demo"]

    moved = the_event(events, "deal.stage_changed", deal.id)
    automation_plugin.crmkit_handle_event(event=moved, crm=crm)
    force_redelivery(crm, moved.id)
    crm.deals.move(deal.id, "Won")  # another stage: nothing
    assert [t.id for t in tasks(crm)] == [task.id]

    # Entering the stage again is another event: another run.
    crm.deals.move(deal.id, "Demo")
    assert len(tasks(crm)) == 2
    assert [r.status for r in crm.automations.run_log(rule="Prepare demos")] == ["ok", "ok"]


def test_an_invalid_rule_is_refused_naming_every_problem_and_nothing_is_saved(crm):
    crm.pipelines.create("Sales", STAGES)
    bad = {
        "name": "Broken",
        "trigger": {"type": "deal.entered_stage", "stage": "Dmeo"},
        "conditions": {"all": [{"field": "contact.frist_name", "op": "eq", "value": "Ada"},
                               {"any": [{"field": "deal.amount", "op": "greater", "value": 5}]},
                               {"field": "deal.amount", "op": "gt", "value": "lots"},
                               {"field": "deal.stage", "op": "eq", "value": "x"}]},
        "actions": [{"type": "create_task", "title": "Call {{ contact.frist_name }}"},
                    {"type": "create_task", "title": "{% if %}"},
                    {"type": "create_task", "title": "Hi {{ person.name }}", "due_in_days": -1},
                    {"type": "set_field", "field": "lifecycle_stage", "value": "superstar"},
                    {"type": "send_emial"}],
        "colour": "red",
    }
    with pytest.raises(ValidationFailed) as caught:
        crm.automations.add(bad)
    issues = {i.field: i for i in caught.value.issues}
    assert "Demo" in issues["trigger.stage"].message
    assert "did you mean 'first_name'" in issues["conditions.all[0].field"].message
    assert issues["conditions.all[1].any[0].op"].code == "unknown_op"
    assert issues["conditions.all[2].value"].code == "invalid_value"
    assert issues["conditions.all[3].field"].code == "unknown_field"  # deals have stage_id, not stage
    assert "frist_name" in issues["actions[0].title"].message
    assert issues["actions[1].title"].code == "invalid_template"
    assert issues["actions[2].title"].code == "unknown_variable"
    assert issues["actions[2].due_in_days"].code == "out_of_range"
    assert "superstar" in issues["actions[3].value"].message
    assert "send_message" in issues["actions[4].type"].message
    assert issues["colour"].code == "unknown_field"

    with pytest.raises(ValidationFailed) as caught:
        crm.automations.add({"name": "x", "trigger": "contact.created", "actions": [{"type": "move_deal", "stage": "Won"}]})
    assert [(i.field, i.code) for i in caught.value.issues] == [("actions[0].type", "not_available")]
    with pytest.raises(ValidationFailed) as caught:
        crm.automations.add({"name": "", "trigger": {"type": "score.crossed"}, "actions": []})
    assert {i.field for i in caught.value.issues} == {"name", "trigger.threshold", "actions"}

    # Several rules: all or none.
    with pytest.raises(ValidationFailed) as caught:
        crm.automations.add_many([WEB_LEADS, {**DEMO_PREP, "trigger": {"type": "deal.entered_stage", "stage": "Nope"}}])
    assert [i.field for i in caught.value.issues] == ["rules[1].trigger.stage"]
    assert crm.automations.list() == []


def test_a_plugin_defined_trigger_and_action_run(crm_factory):
    plugin = LoyaltyAutomation()
    crm = crm_factory(plugins=[plugin])
    assert crm.automations.catalog.actions.owners["award_points"] == "loyalty-automation"
    crm.pipelines.create("Sales", STAGES)
    crm.automations.add({"name": "Points for big deals", "trigger": {"type": "deal.big", "at_least": 1000},
                         "actions": [{"type": "award_points", "points": 50}]})
    with pytest.raises(ValidationFailed, match="points"):
        crm.automations.add({"name": "y", "trigger": {"type": "deal.big", "at_least": 1}, "actions": [{"type": "award_points"}]})

    contact = crm.contacts.create({"first_name": "Ada"})
    crm.deals.create({"title": "Small", "pipeline": "Sales", "contact_id": contact.id, "amount": "10"})
    big = crm.deals.create({"title": "Big", "pipeline": "Sales", "contact_id": contact.id, "amount": "5000"})

    [activity] = crm.activities.for_contact(contact.id)
    assert (activity.kind, activity.deal_id, activity.payload) == ("loyalty.points", big.id, {"points": 50})


# --- failures -----------------------------------------------------------------------------------


def test_a_failing_action_is_recorded_retried_and_never_undoes_the_trigger(crm_factory):
    plugin = LoyaltyAutomation()
    crm = crm_factory(plugins=[plugin])
    crm.automations.add({"name": "Welcome", "trigger": "contact.created",
                         "actions": [{"type": "create_task", "title": "Welcome {{ contact.first_name }}"},
                                     {"type": "flaky"}]})
    crm.automations.add({"name": "Doomed", "trigger": "contact.created",
                         "actions": [{"type": "flaky", "permanent": True}, {"type": "create_task", "title": "never"}]})
    plugin.failures.extend(["transient", "transient"])

    contact = crm.contacts.create({"first_name": "Ada"})

    assert crm.contacts.get(contact.id).first_name == "Ada"  # the triggering write stands
    runs = {r.rule_name: r for r in crm.automations.run_log()}
    assert (runs["Welcome"].status, runs["Welcome"].step) == ("retrying", 1)
    assert "flaky: ConnectionError: the loyalty service is down" in runs["Welcome"].error
    assert (runs["Doomed"].status, runs["Doomed"].step) == ("failed", 0)
    [failure] = crm.events.failures()
    assert failure["subscriber"] == "crmkit.builtin.automation_plugin"

    crm.events.drain(now=utcnow() + timedelta(minutes=1))  # the dispatcher's retry: fails again
    crm.events.drain(now=utcnow() + timedelta(hours=1))  # and now it passes
    welcome = {r.rule_name: r for r in crm.automations.run_log()}["Welcome"]
    assert (welcome.status, welcome.attempts, welcome.error) == ("ok", 3, None)
    assert [t.title for t in tasks(crm)] == ["Welcome Ada"]  # step 1 was not repeated
    assert plugin.calls == 4  # 3 for Welcome, once for Doomed (a permanent failure is not retried)
    assert crm.events.failures() == []


def test_a_run_abandoned_midway_is_taken_up_once_its_lease_is_over(crm):
    rule = crm.automations.add({"name": "Welcome", "trigger": "contact.created", "actions": [{"type": "create_task", "title": "Hi"}]})
    contact = crm.contacts.create({"first_name": "Ada"})  # the rule runs: one task
    event = Event(type="contact.created", subject_id=contact.id, data={})
    crm.automations.runs.start(rule, event, contact.id)  # a runner took this event and died

    with pytest.raises(RunsPending):  # still within its lease: left alone, but the dispatcher will retry
        crm.automations.handle(event)
    assert len(tasks(crm)) == 1
    runs = crm.automations.runs.table
    with crm.backend.engine.begin() as conn:
        conn.execute(sa.update(runs).where(runs.c.event_id == event.id).values(updated_at=utcnow() - timedelta(minutes=6)))
    [run] = crm.automations.handle(event)
    assert (run.status, run.attempts) == ("ok", 2) and len(tasks(crm)) == 2


def test_a_scheduled_run_that_failed_transiently_resumes_at_the_next_tick(crm_factory):
    plugin = LoyaltyAutomation()
    crm = crm_factory(plugins=[plugin])
    crm.automations.add({"name": "Nudge", "trigger": {"type": "contact.inactive", "days": 7},
                         "actions": [{"type": "create_task", "title": "Nudge"}, {"type": "flaky"}]})
    crm.contacts.create({"first_name": "Ada"})
    plugin.failures.append("transient")
    later = utcnow() + timedelta(days=8)

    assert crm.automations.tick(later).retrying == 1
    assert crm.automations.tick(later).ok == 1
    assert crm.automations.tick(later).found == 0
    assert [t.title for t in tasks(crm)] == ["Nudge"]


def test_workers_racing_on_one_event_run_the_rule_once(database_url, crm_factory):
    crm = crm_factory(database_url, dispatch_inline=False)
    crm.automations.add({"name": "Welcome", "trigger": "contact.created",
                         "actions": [{"type": "create_task", "title": "Hi {{ contact.first_name }}"}, {"type": "add_tag", "tag": "greeted"}]})
    contact = crm.contacts.create({"first_name": "Ada"})
    event = Event(type="contact.created", subject_id=contact.id, data={}, id="e-race")
    workers = [crm_factory(database_url, dispatch_inline=False, migrate=False) for _ in range(4)]
    barrier = threading.Barrier(len(workers))

    def work(worker: Any) -> str:
        barrier.wait()
        try:
            worker.automations.handle(event)
        except RunsPending:
            return "pending"  # another worker holds the run: the dispatcher would retry later
        return "done"

    with ThreadPoolExecutor(len(workers)) as pool:
        outcomes = list(pool.map(work, workers))
    assert "done" in outcomes
    crm.automations.handle(event)  # whatever was left: finished now, or already done
    assert [t.title for t in tasks(crm)] == ["Hi Ada"]
    assert crm.contacts.get(contact.id).tags == ["greeted"]
    [run] = crm.automations.run_log()
    assert (run.status, run.step) == ("ok", 2)


def test_a_webhook_action_posts_json_with_an_idempotency_key(crm, receiver):
    crm.pipelines.create("Sales", STAGES)
    crm.automations.add({"name": "Tell the ERP", "trigger": {"type": "deal.entered_stage", "stage": "Won"},
                         "actions": [{"type": "call_webhook", "url": receiver.url, "headers": {"X-Token": "t0k"}}]})
    deal = crm.deals.create({"title": "Licence", "pipeline": "Sales", "amount": "1200.50"})
    receiver.codes.extend([503, 200])

    crm.deals.move(deal.id, "Won")
    [run] = crm.automations.run_log()
    assert run.status == "retrying" and "answered 503" in run.error
    crm.events.drain(now=utcnow() + timedelta(hours=1))

    first, second = receiver.requests
    assert first == second  # the same request, with the same key
    assert first["headers"]["X-Token"] == "t0k"
    assert first["headers"]["Idempotency-Key"] == f"automation:{run.rule_id}:{run.event_id}:0"
    body = first["body"]
    assert (body["rule"]["name"], body["event"]["type"], body["deal"]["amount"], body["stage"]["name"]) == (
        "Tell the ERP", "deal.stage_changed", "1200.5", "Won")
    [run] = crm.automations.run_log()
    assert (run.status, run.results) == ("ok", [{"status_code": 200}])

    receiver.codes.append(404)  # a refusal that retrying cannot fix
    crm.deals.move(deal.id, "New")
    crm.deals.move(deal.id, "Won")
    assert crm.automations.run_log()[0].status == "failed"


def test_a_send_message_action_sends_once_through_the_channel_layer(crm_factory, events):
    channel = OutboxChannel()
    crm = crm_factory(plugins=[channel])
    crm.messages.save_template("welcome", "Welcome aboard, {{ contact.first_name }}!", channel="inapp")
    with pytest.raises(ValidationFailed) as caught:
        crm.automations.add({"name": "x", "trigger": "contact.created",
                             "actions": [{"type": "send_message", "channel": "pigeon", "template": "welcome", "purpose": "transactional"}]})
    assert [(i.field, i.code) for i in caught.value.issues] == [("actions[0].channel", "unknown_channel")]
    with pytest.raises(ValidationFailed, match="template"):
        crm.automations.add({"name": "x", "trigger": "contact.created",
                             "actions": [{"type": "send_message", "channel": "inapp", "template": "welcom", "purpose": "transactional"}]})
    crm.automations.add({"name": "Welcome mail", "trigger": "contact.created",
                         "actions": [{"type": "send_message", "channel": "inapp", "template": "welcome", "purpose": "transactional"}]})

    contact = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com"})
    created = the_event(events, "contact.created", contact.id)
    force_redelivery(crm, created.id)

    assert [(m.to, m.body) for m in channel.sent] == [("ada@example.com", "Welcome aboard, Ada!")]
    [run] = crm.automations.run_log()
    assert run.status == "ok" and run.results[0]["status"] == "sent"


# --- scheduled triggers, chains, conditions -----------------------------------------------------


def test_no_activity_for_n_days_runs_once_per_quiet_spell(any_crm):
    crm = any_crm
    crm.automations.add({"name": "Re-engage", "trigger": {"type": "contact.inactive", "days": 14},
                         "conditions": {"field": "contact.lifecycle_stage", "op": "ne", "value": "customer"},
                         "actions": [{"type": "create_task", "title": "Re-engage {{ contact.first_name }} (quiet since {{ event.data.last_activity_at[:10] }})"}]})
    now = utcnow()
    quiet = crm.contacts.create({"first_name": "Ada"})
    busy = crm.contacts.create({"first_name": "Bob"})
    customer = crm.contacts.create({"first_name": "Cid", "lifecycle_stage": "customer"})
    crm.activities.log({"kind": "call", "contact_id": busy.id, "occurred_at": (now + timedelta(days=10)).isoformat()})

    assert crm.automations.tick(now + timedelta(days=13)).found == 0
    report = crm.automations.tick(now + timedelta(days=15))
    assert (report.found, report.ok, report.skipped) == (2, 1, 1)  # Ada; Cid does not meet the conditions
    assert [t.contact_id for t in tasks(crm)] == [quiet.id]
    assert crm.automations.tick(now + timedelta(days=20)).ok == 0  # the same spell: nothing new

    crm.activities.log({"kind": "email.received", "contact_id": quiet.id, "occurred_at": (now + timedelta(days=21)).isoformat()})
    report = crm.automations.tick(now + timedelta(days=40))
    assert report.ok == 2  # Ada's new spell, and Bob's (quiet since day 10)
    assert sorted(t.contact_id for t in tasks(crm)) == sorted([quiet.id, quiet.id, busy.id])
    assert customer.id not in {t.contact_id for t in tasks(crm)}


def test_rules_cannot_trigger_each_other_forever(crm):
    crm.automations.add({"name": "Echo", "trigger": {"type": "event", "event_type": "task.created"},
                         "actions": [{"type": "create_task", "title": "echo of {{ task.title }}"}]})
    crm.automations.add({"name": "Mirror", "trigger": {"type": "event", "event_type": "task.created"},
                         "actions": [{"type": "create_task", "title": "mirror of {{ task.title }}"}]})
    crm.tasks.create({"title": "root"})
    # Each rule ignores events it caused itself, and chains stop at max_chain_depth (3).
    titles = sorted(t.title for t in tasks(crm))
    assert "root" in titles and "echo of mirror of echo of root" in titles
    assert all(title.count(" of ") <= 4 for title in titles)
    assert len(titles) == 9


def test_score_crossing_and_field_actions(crm_factory, tmp_path):
    crm = crm_factory(Config(database_url=f"sqlite:///{tmp_path / 'scored.db'}", plugin_sections={"scoring": {"enabled": True}}))
    crm.automations.add({"name": "Hot lead", "trigger": {"type": "score.crossed", "threshold": 25},
                         "actions": [{"type": "set_field", "field": "industry", "value": "hot"},
                                     {"type": "set_lifecycle", "stage": "opportunity"}]})
    contact = crm.contacts.create({"first_name": "Ada"})
    crm.activities.log({"kind": "form.submitted", "contact_id": contact.id})
    assert crm.contacts.get(contact.id).industry is None  # 20 points: not yet
    crm.activities.log({"kind": "email.opened", "contact_id": contact.id})
    stored = crm.contacts.get(contact.id)
    assert (stored.industry, stored.lifecycle_stage, stored.score) == ("hot", "opportunity", 25.0)


@pytest.mark.parametrize(("condition", "expected"), [
    ({"field": "contact.job_title", "op": "contains", "value": "DIRECTOR"}, True),
    ({"field": "contact.job_title", "op": "eq", "value": "marketing director"}, True),
    ({"field": "contact.industry", "op": "in", "value": ["SaaS", "fintech"]}, True),
    ({"field": "contact.tags", "op": "in", "value": ["gold", "vip"]}, True),
    ({"field": "contact.tags", "op": "contains", "value": "vip"}, True),
    ({"field": "contact.score", "op": "gte", "value": 42}, True),
    ({"field": "deal.amount", "op": "gt", "value": 999.99}, True),  # amounts are text: "1000.00"
    ({"field": "deal.amount", "op": "eq", "value": 1000}, True),
    ({"field": "contact.custom.budget", "op": "lt", "value": 10}, False),
    ({"field": "contact.phone", "op": "exists"}, False),
    ({"field": "contact.phone", "op": "exists", "value": False}, True),
    ({"field": "contact.address.country", "op": "ne", "value": "DE"}, True),
    ({"not": {"any": [{"field": "contact.email", "op": "exists"}, {"field": "deal.title", "op": "eq", "value": "x"}]}}, False),
    ({"all": []}, True),
])
def test_condition_operators(condition, expected):
    facts = {"contact": {"job_title": "Marketing Director", "industry": "saas", "tags": ["vip"], "score": 42.0,
                         "email": "a@example.com", "phone": None, "custom": {"budget": "12"}, "address": {"country": "FR"}},
             "deal": {"amount": "1000.00", "title": "Licence"}}
    assert parse(condition).holds(facts) is expected


# --- personal data, the CLI -----------------------------------------------------------------------


def test_runs_are_exported_and_erased_with_the_person(crm):
    crm.automations.add(WEB_LEADS)
    contact = crm.intake.submit({"first_name": "Ada", "email": "ada@example.com"}, source="webform").contact
    [run] = crm.privacy.export(contact.id)["automation_runs"]
    assert run["rule_name"] == "Call new web leads"
    crm.privacy.erase(contact.id)
    assert crm.automations.run_log() == []


def test_cli_adds_lists_shows_and_removes_rules(crm, cli, tmp_path):
    crm.pipelines.create("Sales", STAGES)
    rules = tmp_path / "rules.toml"
    rules.write_text('''
[[rules]]
name = "Prepare demos"
trigger = { type = "deal.entered_stage", stage = "Demo" }
[[rules.actions]]
type = "create_task"
title = "Prepare {{ deal.title }}"

[[rules]]
name = "Won"
trigger = { type = "deal.entered_stage", stage = "Won" }
conditions = { field = "deal.amount", op = "gt", value = 100 }
actions = [{ type = "add_tag", tag = "customer" }]
''', encoding="utf-8")
    saved = cli.json("automations", "add", "--file", str(rules))
    assert [r["name"] for r in saved] == ["Prepare demos", "Won"]
    result = cli("automations", "add", "--file", str(rules))
    assert result.exit_code == 1 and "rules[0].name: a rule named 'Prepare demos' exists already" in result.stderr
    assert cli("automations", "add", "--file", str(rules), "--replace").exit_code == 0

    result = cli("automations", "add", "Lead task", "--trigger", "contact.created", "--param", "source=webform",
                 "--when", "contact.lifecycle_stage eq lead", "--when", "contact.email exists",
                 "--action", '{"type": "create_task", "title": "Call {{ contact.first_name }}", "due_in_days": 1}', "--json")
    assert result.exit_code == 0, result.output
    definition = json.loads(cli("automations", "show", "Lead task").stdout)
    assert definition["trigger"] == {"type": "contact.created", "source": "webform"}
    assert definition["conditions"]["all"][1] == {"field": "contact.email", "op": "exists", "value": True}

    result = cli("automations", "add", "Bad", "--trigger", "contact.created", "--when", "contact.emial exists",
                 "--action", '{"type": "create_task"}')
    assert result.exit_code == 1
    assert "conditions.all[0].field" in result.stderr and "did you mean 'email'" in result.stderr
    assert "actions[0].title: is required" in result.stderr

    assert [r["name"] for r in cli.json("automations", "list")] == ["Lead task", "Prepare demos", "Won"]
    assert cli("automations", "disable", "Won").exit_code == 0
    crm.intake.submit({"first_name": "Ada", "email": "ada@example.com"}, source="webform")
    [run] = cli.json("automations", "runs", "--rule", "Lead task")
    assert run["status"] == "ok"
    assert cli("automations", "list").exit_code == 0 and "Prepare demos" in cli("automations", "list").stdout
    assert {"trigger", "action"} == {row["kind"] for row in cli.json("automations", "types")}
    assert cli.json("automations", "tick")["found"] == 0
    assert cli.json("automations", "remove", "Lead task")["name"] == "Lead task"
    assert cli.json("automations", "runs") == []


# --- helpers: a plugin adding a trigger and actions, an HTTP receiver -----------------------------


class LoyaltyAutomation:
    """A plugin that adds a trigger (big deals) and two actions to automation."""

    crmkit_plugin_name = "loyalty-automation"

    def __init__(self) -> None:
        self.failures: deque[str] = deque()
        self.calls = 0

    @hookimpl
    def crmkit_register_automation_triggers(self, register: Any) -> None:
        def big(event: Any, params: Any, facts: Any) -> bool:
            return float(event.data.get("amount") or 0) >= params["at_least"]

        register(TriggerType(name="deal.big", description="a deal worth at least `at_least` was created",
                             events=frozenset({"deal.created"}), params=(f.FieldSpec("at_least", f.number(0), required=True),),
                             facts=frozenset({"deal", "contact"}), matches=big))

    @hookimpl
    def crmkit_register_automation_actions(self, register: Any) -> None:
        def award(ctx: Any) -> dict[str, Any]:
            deal = ctx.record("deal")
            activity = ctx.crm.activities.log_in(ctx.uow, {"kind": "loyalty.points", "contact_id": deal["contact_id"],
                                                           "deal_id": deal["id"], "payload": {"points": ctx.params["points"]}})
            return {"activity_id": activity.id}

        def flaky(ctx: Any) -> None:
            self.calls += 1
            if ctx.params.get("permanent"):
                raise ActionFailed("the loyalty account is closed")
            if self.failures and self.failures.popleft() == "transient":
                raise ConnectionError("the loyalty service is down")

        register(ActionType(name="award_points", description="log loyalty points for the deal's contact", run=award,
                            params=(f.FieldSpec("points", f.number(1, 1000), required=True),), needs=frozenset({"deal"})))
        register(ActionType(name="flaky", description="fails as scripted", run=flaky,
                            params=(f.FieldSpec("permanent", lambda v, _: v),), transactional=False))


class OutboxChannel:
    """A channel plugin that 'delivers' in-app messages by keeping them."""

    crmkit_plugin_name = "outbox-channel"
    name = "inapp"
    capabilities = Capabilities(subject=True)

    def __init__(self) -> None:
        self.sent: list[Any] = []

    @hookimpl
    def crmkit_register_channels(self, register: Any) -> None:
        register(self)

    def address_for(self, contact: Any) -> str | None:
        return contact.email

    def send(self, message: Any) -> SendResult:
        self.sent.append(message)
        return SendResult.sent(f"m-{len(self.sent)}")

    def parse_inbound(self, payload: dict[str, Any]) -> list[Any]:
        return []

    def parse_callback(self, payload: dict[str, Any]) -> list[Any]:
        return []


class Receiver:
    def __init__(self) -> None:
        self.codes: deque[int] = deque()
        self.requests: list[dict[str, Any]] = []
        self.url = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "headers": {k: v for k, v in self.headers.items()}, "body": body})
            code = state.codes.popleft() if state.codes else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok" if code < 400 else b"no")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/crm"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
