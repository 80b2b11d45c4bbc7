"""``crmkit pipelines`` and ``crmkit deals``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

SALES = ["pipelines", "add", "Sales", "--stage", "Lead:0.1", "--stage", "Proposal:0.5", "--stage", "Won:1:won", "--stage", "Lost:0:lost"]


@pytest.fixture
def sales(cli):
    return cli.json(*SALES)


@pytest.fixture
def contact(crm):
    return crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact


def stage_id(pipeline: dict, name: str) -> str:
    return next(s["id"] for s in pipeline["stages"] if s["name"] == name)


# --- pipelines ---------------------------------------------------------------------------


def test_pipelines_add_exact_form_and_list(cli, crm):
    result = cli(*SALES)
    assert result.exit_code == 0, result.output
    assert "Lead (10%) → Proposal (50%) → Won (100%, won) → Lost (0%, lost)" in result.output
    stored = crm.pipelines.get("Sales")
    assert [(s.name, s.probability, s.outcome.value) for s in stored.stages] == [
        ("Lead", 0.1, "open"), ("Proposal", 0.5, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]

    listed = cli.json("pipelines", "list")
    assert [p["name"] for p in listed] == ["Sales"]
    assert [s["name"] for s in listed[0]["stages"]] == ["Lead", "Proposal", "Won", "Lost"]
    assert "Proposal (50%)" in cli("pipelines", "list").output
    assert cli.json("pipelines", "show", "Sales")["id"] == stored.id
    assert "Proposal" in cli("pipelines", "show", stored.id).output


@pytest.mark.parametrize(("stage", "problem"), [
    ("Lead", "expected NAME:PROBABILITY"),
    ("Lead:often", "'often' is not a probability"),
    (":0.5", "the stage name is empty"),
    ("Won:1:maybe", "'maybe' is not a probability"),
])
def test_pipelines_add_malformed_stage_is_a_usage_error(cli, crm, stage, problem):
    result = cli("pipelines", "add", "Sales", "--stage", "First:0.2", "--stage", stage)
    assert result.exit_code == 2
    assert "--stage" in result.output and problem in result.output
    assert crm.pipelines.list() == []


def test_pipelines_add_rejected_by_the_domain_writes_nothing(cli, crm):
    out_of_range = cli("pipelines", "add", "Sales", "--stage", "Lead:0.1", "--stage", "Sure:1.5")
    assert out_of_range.exit_code == 1 and "stages[1].probability" in out_of_range.stderr
    twice = cli("pipelines", "add", "Sales", "--stage", "Lead:0.1", "--stage", "lead:0.2")
    assert twice.exit_code == 1 and "stages[1].name" in twice.stderr
    assert cli("pipelines", "add", "Sales").exit_code == 2  # --stage is required
    assert crm.pipelines.list() == []

    assert cli("pipelines", "add", "Sales", "--stage", "Lead:0.1").exit_code == 0
    duplicate = cli("pipelines", "add", "Sales", "--stage", "Other:0.1")
    assert duplicate.exit_code == 1 and "name" in duplicate.stderr
    assert [p.name for p in crm.pipelines.list()] == ["Sales"]
    assert cli("pipelines", "show", "Nope").exit_code == 1


# --- deals -------------------------------------------------------------------------------


def test_deals_add_exact_form(cli, crm, sales, contact):
    deal = cli.json("deals", "add", "--title", "T", "--pipeline", "Sales", "--contact", contact.id, "--amount", "1000")
    stored = crm.deals.get(deal["id"])
    assert (stored.title, stored.contact_id, stored.amount, stored.currency) == ("T", contact.id, Decimal(1000), "USD")
    assert stored.stage_id == stage_id(sales, "Lead") and deal["status"] == "open"
    assert deal["amount"] == "1000"


def test_deals_add_with_every_option(cli, crm, sales, contact):
    owner = crm.users.create({"email": "owner@example.com"})
    org = crm.organizations.create({"name": "Acme"})
    deal = cli.json("deals", "add", "--title", "Big", "--pipeline", sales["id"], "--stage", "proposal", "--contact", contact.id,
                    "--organization", org.id, "--owner", owner.id, "--amount", "2500.50", "--currency", "eur",
                    "--expected-close", "2030-06-30")
    stored = crm.deals.get(deal["id"])
    assert stored.stage_id == stage_id(sales, "Proposal")
    assert (stored.organization_id, stored.owner_id, stored.amount, stored.currency) == (org.id, owner.id, Decimal("2500.50"), "EUR")
    assert stored.expected_close.isoformat() == "2030-06-30"
    human = cli("deals", "add", "--title", "Small", "--pipeline", "Sales")
    assert human.exit_code == 0 and "Sales / Lead" in human.output


@pytest.mark.parametrize(("args", "field"), [
    (["--title", "T", "--pipeline", "Nope"], "pipeline"),
    (["--title", "T"], "pipeline"),
    (["--pipeline", "Sales"], "title"),
    (["--title", "T", "--pipeline", "Sales", "--amount", "lots"], "amount"),
    (["--title", "T", "--pipeline", "Sales", "--amount", "-5"], "amount"),
    (["--title", "T", "--pipeline", "Sales", "--stage", "Closed"], "stage"),
    (["--title", "T", "--pipeline", "Sales", "--contact", "missing"], "contact_id"),
    (["--title", "T", "--pipeline", "Sales", "--expected-close", "soon"], "expected_close"),
])
def test_deals_add_rejected_names_the_field_and_writes_nothing(cli, crm, sales, args, field):
    events_before = crm.events.counts()["total"]
    result = cli("deals", "add", *args)
    assert result.exit_code == 1
    assert f"Error: {field}:" in result.stderr
    assert crm.deals.count() == 0
    assert crm.events.counts()["total"] == events_before


def test_deals_move_exact_form_and_history(cli, crm, sales, contact):
    deal = cli.json("deals", "add", "--title", "T", "--pipeline", "Sales", "--contact", contact.id, "--amount", "1000")
    moved = cli("deals", "move", deal["id"], "Proposal")
    assert moved.exit_code == 0, moved.output
    assert "Lead → Proposal" in moved.output
    won = cli.json("deals", "move", deal["id"], "won")
    assert won["status"] == "won" and won["closed_at"] is not None

    history = cli.json("deals", "history", deal["id"])
    assert [(h["from"], h["to"]) for h in history] == [(None, "Lead"), ("Lead", "Proposal"), ("Proposal", "Won")]
    assert [(h["from_stage_id"], h["to_stage_id"]) for h in history] == [
        (None, stage_id(sales, "Lead")), (stage_id(sales, "Lead"), stage_id(sales, "Proposal")),
        (stage_id(sales, "Proposal"), stage_id(sales, "Won"))]
    times = [datetime.fromisoformat(h["changed_at"]) for h in history]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    assert len(crm.deals.history(deal["id"])) == 3
    assert "Proposal" in cli("deals", "history", deal["id"]).output
    assert cli("deals", "history", "missing").exit_code == 1


def test_deals_move_to_lost_with_reason_and_refusals(cli, crm, sales):
    deal = cli.json("deals", "add", "--title", "T", "--pipeline", "Sales")
    same = cli("deals", "move", deal["id"], "Lead")
    assert same.exit_code == 1 and "stage" in same.stderr
    unknown = cli("deals", "move", deal["id"], "Heaven")
    assert unknown.exit_code == 1 and "Heaven" in unknown.stderr
    stale = cli("deals", "move", deal["id"], "Proposal", "--expected-version", "7")
    assert stale.exit_code == 1
    assert crm.deals.get(deal["id"]).stage_id == stage_id(sales, "Lead")
    assert len(crm.deals.history(deal["id"])) == 1

    lost = cli.json("deals", "move", deal["id"], "Lost", "--lost-reason", "price", "--expected-version", "1")
    assert (lost["status"], lost["lost_reason"]) == ("lost", "price")


def test_deals_move_to_another_pipeline_must_be_allowed(cli, crm, sales):
    other = cli.json("pipelines", "add", "Renewals", "--stage", "Due:0.5", "--stage", "Renewed:1:won")
    deal = cli.json("deals", "add", "--title", "T", "--pipeline", "Sales")
    refused = cli("deals", "move", deal["id"], "Due", "--pipeline", "Renewals")
    assert refused.exit_code == 1 and "stage" in refused.stderr
    assert crm.deals.get(deal["id"]).pipeline_id == sales["id"]

    moved = cli.json("deals", "move", deal["id"], "Due", "--pipeline", "Renewals", "--allow-pipeline-change")
    assert (moved["pipeline_id"], moved["stage_id"]) == (other["id"], stage_id(other, "Due"))
    assert [h["to"] for h in cli.json("deals", "history", deal["id"])] == ["Lead", "Due"]


def test_deals_list_show_update_delete(cli, crm, sales, contact):
    first = cli.json("deals", "add", "--title", "One", "--pipeline", "Sales", "--contact", contact.id)
    second = cli.json("deals", "add", "--title", "Two", "--pipeline", "Sales", "--stage", "Won")
    assert [d["id"] for d in cli.json("deals", "list")] == [first["id"], second["id"]]
    assert [d["id"] for d in cli.json("deals", "list", "--status", "won")] == [second["id"]]
    assert [d["id"] for d in cli.json("deals", "list", "--pipeline", "Sales", "--contact", contact.id)] == [first["id"]]
    assert [d["id"] for d in cli.json("deals", "list", "--after", first["id"])] == [second["id"]]
    assert cli("deals", "list", "--pipeline", "Nope").exit_code == 1
    listing = cli("deals", "list")
    assert "One" in listing.output and "Won" in listing.output

    assert cli.json("deals", "show", first["id"])["title"] == "One"
    shown = cli("deals", "show", first["id"])
    assert "Sales" in shown.output and "Lead" in shown.output

    updated = cli.json("deals", "update", first["id"], "--amount", "99", "--set", "lost_reason=n/a", "--expected-version", "1")
    assert (updated["amount"], updated["version"]) == ("99", 2)
    bad = cli("deals", "update", first["id"], "--amount", "-1")
    assert bad.exit_code == 1 and "amount" in bad.stderr
    assert crm.deals.get(first["id"]).amount == Decimal(99)

    assert cli("deals", "delete", second["id"], "--yes").exit_code == 0
    assert [d.id for d in crm.deals.list()] == [first["id"]]
