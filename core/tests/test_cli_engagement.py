"""``crmkit activities``, ``tasks``, ``campaigns`` and ``consents``."""

from __future__ import annotations

from datetime import datetime

import pytest


@pytest.fixture
def contact(crm):
    return crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact


def test_activities_add_with_every_option(cli, crm, contact):
    pipeline = crm.pipelines.create("Sales", [("Lead", 0.1, "open")])
    deal = crm.deals.create({"title": "T", "pipeline": pipeline.id})
    activity = cli.json("activities", "add", "--kind", "call", "--contact", contact.id, "--deal", deal.id, "--channel", "phone",
                        "--direction", "outbound", "--subject", "Intro", "--occurred-at", "2030-01-02T09:30:00+01:00",
                        "--payload", '{"minutes": 12, "notes": ["a"]}', "--external-id", "call-1")
    stored = crm.activities.get(activity["id"])
    assert (stored.kind, stored.contact_id, stored.deal_id, stored.channel, stored.direction.value, stored.subject) == (
        "call", contact.id, deal.id, "phone", "outbound", "Intro")
    assert stored.payload == {"minutes": 12, "notes": ["a"]}
    assert stored.occurred_at == datetime.fromisoformat("2030-01-02T08:30:00+00:00")

    again = cli.json("activities", "add", "--kind", "call", "--channel", "phone", "--external-id", "call-1", "--subject", "Dup")
    assert again["id"] == activity["id"]
    assert crm.activities.count() == 1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--kind", "call", "--payload", "{not json"], 2, "not valid JSON"),
    (["--kind", "call", "--payload", "[1, 2]"], 2, "must be a JSON object"),
    (["--kind", "Phone Call"], 1, "kind"),
    (["--subject", "no kind"], 1, "kind"),
    (["--kind", "call", "--direction", "sideways"], 1, "direction"),
    (["--kind", "call", "--contact", "missing"], 1, "contact_id"),
    (["--kind", "call", "--occurred-at", "yesterday"], 1, "occurred_at"),
])
def test_activities_add_rejected_writes_nothing(cli, crm, args, code, message):
    result = cli("activities", "add", *args)
    assert result.exit_code == code
    assert message in result.output
    assert crm.activities.count() == 0


def test_activities_list_filters(cli, crm, contact):
    other = crm.intake.submit({"email": "grace@example.com"}).contact
    mine = crm.activities.log({"kind": "note", "contact_id": contact.id, "subject": "Hello"})
    crm.activities.log({"kind": "call", "contact_id": other.id})
    assert len(cli.json("activities", "list")) == 2
    assert [a["id"] for a in cli.json("activities", "list", "--contact", contact.id)] == [mine.id]
    assert [a["kind"] for a in cli.json("activities", "list", "--kind", "call")] == ["call"]
    assert "Hello" in cli("activities", "list").output


def test_tasks_add_list_done(cli, crm, contact):
    user = crm.users.create({"email": "agent@example.com"})
    task = cli.json("tasks", "add", "--title", "Call back", "--notes", "about pricing", "--due", "2030-01-01T10:00:00Z",
                    "--assignee", user.id, "--contact", contact.id)
    stored = crm.tasks.get(task["id"])
    assert (stored.title, stored.assignee_id, stored.contact_id, stored.due_at.year) == ("Call back", user.id, contact.id, 2030)
    other = cli.json("tasks", "add", "--title", "Unassigned")

    assert [t["id"] for t in cli.json("tasks", "list")] == [task["id"], other["id"]]
    assert [t["id"] for t in cli.json("tasks", "list", "--assignee", user.id)] == [task["id"]]
    done = cli.json("tasks", "done", task["id"])
    assert done["done_at"] is not None and crm.tasks.get(task["id"]).done_at is not None
    assert [t["id"] for t in cli.json("tasks", "list")] == [other["id"]]
    assert {t["id"] for t in cli.json("tasks", "list", "--all")} == {task["id"], other["id"]}
    assert "Unassigned" in cli("tasks", "list").output

    twice = cli("tasks", "done", task["id"])
    assert twice.exit_code == 1 and "done_at" in twice.stderr
    assert cli("tasks", "done", "missing").exit_code == 1


def test_tasks_add_rejected_writes_nothing(cli, crm):
    for args, field in ((["--notes", "no title"], "title"), (["--title", "T", "--due", "someday"], "due_at"),
                        (["--title", "T", "--assignee", "nobody"], "assignee_id")):
        result = cli("tasks", "add", *args)
        assert result.exit_code == 1 and f"Error: {field}:" in result.stderr
    assert crm.tasks.count() == 0


def test_campaigns_add_list(cli, crm):
    campaign = cli.json("campaigns", "add", "--name", "Spring", "--channel", "email", "--spend", "1500.25", "--currency", "usd",
                        "--starts-on", "2030-03-01", "--ends-on", "2030-03-31")
    stored = crm.campaigns.get(campaign["id"])
    assert (stored.name, stored.channel, str(stored.spend), stored.currency) == ("Spring", "email", "1500.25", "USD")
    assert [c["name"] for c in cli.json("campaigns", "list")] == ["Spring"]
    assert "Spring" in cli("campaigns", "list").output

    backwards = cli("campaigns", "add", "--name", "Autumn", "--starts-on", "2030-10-01", "--ends-on", "2030-09-01")
    assert backwards.exit_code == 1 and "ends_on" in backwards.stderr
    assert crm.campaigns.count() == 1


def test_consents_record_and_list(cli, crm, contact):
    granted = cli.json("consents", "record", "--contact", contact.id, "--channel", "email", "--purpose", "marketing",
                       "--status", "granted", "--source", "webform", "--evidence", '{"form": "signup"}')
    assert granted["status"] == "granted" and granted["evidence"] == {"form": "signup"}
    cli.json("consents", "record", "--contact", contact.id, "--channel", "email", "--purpose", "marketing", "--status", "withdrawn")
    assert crm.consents.current(contact.id, "email", "marketing").value == "withdrawn"

    history = cli.json("consents", "list", contact.id)
    assert [c["status"] for c in history] == ["granted", "withdrawn"]
    assert "withdrawn" in cli("consents", "list", contact.id).output

    for args, field in ((["--status", "maybe"], "status"), (["--status", "granted", "--contact", "missing"], "contact_id")):
        base = {"--contact": contact.id, "--channel": "sms", "--purpose": "marketing"}
        flat = [item for key, value in base.items() if key not in args for item in (key, value)]
        result = cli("consents", "record", *flat, *args)
        assert result.exit_code == 1 and f"Error: {field}:" in result.stderr
    assert len(crm.consents.history(contact.id)) == 2
