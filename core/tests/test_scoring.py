"""Lead scoring against real databases: points per activity kind and profile field, decay by
half-life, scores kept current from events (once, however often an event is delivered),
lifecycle promotion at the thresholds and never a demotion, settings from crmkit.toml checked
when the CRM opens, and the explanation ``crmkit scores show`` prints. Scoring is off by
default; these tests switch it on (``[plugins.scoring] enabled = true``)."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from crmkit.builtin import scoring_plugin
from crmkit.cli import build_cli
from crmkit.config import Config
from crmkit.domain.values import utcnow
from crmkit.errors import CRMError


@pytest.fixture
def scored(crm_factory: Any, tmp_path: Path) -> Any:
    """``scored(url=None, **settings)`` opens a CRM with scoring switched on."""
    def open_(url: str | None = None, plugins: Any = (), **settings: Any) -> Any:
        config = Config(database_url=url or f"sqlite:///{tmp_path / 'scored.db'}", plugin_sections={"scoring": {"enabled": True, **settings}})
        return crm_factory(config, plugins=plugins)

    return open_


def log(crm: Any, contact_id: str, kind: str, at: Any = None) -> Any:
    data = {"kind": kind, "contact_id": contact_id}
    if at is not None:
        data["occurred_at"] = at.isoformat()
    return crm.activities.log(data)


def changes_of(events: Any, contact_id: str) -> list[tuple[float, float, str, str]]:
    return [(e.data["from"], e.data["to"], e.data["lifecycle_from"], e.data["lifecycle_to"])
            for e in events.events if e.type == "contact.score_changed" and e.subject_id == contact_id]


def test_points_decay_by_half_life_and_each_rule_is_explained(scored):
    crm = scored()
    now = utcnow()
    contact = crm.contacts.create({"first_name": "Ada", "job_title": "VP and DIRECTOR of Sales"})
    log(crm, contact.id, "meeting", now - timedelta(days=30))  # 30 points, one half-life old: 15
    log(crm, contact.id, "form.submitted", now - timedelta(days=60))  # 20 points, two: 5
    log(crm, contact.id, "email.opened", now)  # 5
    log(crm, contact.id, "email.opened", now - timedelta(days=60))  # 5 -> 1.25
    log(crm, contact.id, "note", now)  # no points
    log(crm, contact.id, "meeting", now - timedelta(days=400))  # beyond the horizon: ignored

    card = crm.scores.explain(contact.id, now)
    assert card.score == 10 + 15 + 5 + 6.25
    rows = [(c.rule, c.source, c.count, c.points, c.score, round(c.kept, 4)) for c in card.contributions]
    assert rows == [
        ("activity email.opened (+5 each)", "activity", 2, 10.0, 6.25, 0.625),
        ("activity form.submitted (+20 each)", "activity", 1, 20.0, 5.0, 0.25),
        ("activity meeting (+30 each)", "activity", 1, 30.0, 15.0, 0.5),
        ("job_title contains 'director'", "field", 1, 10.0, 10.0, 1.0),
    ]
    # The stored score was kept current by the events (computed at their own moments).
    assert crm.contacts.get(contact.id).score == pytest.approx(card.score, abs=0.01)
    # Later, the same activities are worth less.
    assert crm.scores.explain(contact.id, now + timedelta(days=30)).score == pytest.approx(10 + 7.5 + 2.5 + 3.125, abs=0.01)


def test_scores_follow_events_promote_at_thresholds_and_count_each_event_once(scored, database_url, events):
    crm = scored(database_url)
    contact = crm.intake.submit({"first_name": "Ada", "email": "ada@example.com"}, source="webform").contact
    assert crm.contacts.get(contact.id).score == 0

    form = log(crm, contact.id, "form.submitted")
    assert crm.contacts.get(contact.id).score == 20
    log(crm, contact.id, "meeting")
    stored = crm.contacts.get(contact.id)
    assert (stored.score, stored.lifecycle_stage) == (50, "mql")

    # Redelivery of an event — to the subscriber, or by the dispatcher after a forced retry —
    # recomputes the same score: nothing is counted twice, no change is announced twice.
    logged = next(e for e in events.events if e.type == "activity.logged" and e.subject_id == form.id)
    scoring_plugin.crmkit_handle_event(event=logged, crm=crm)
    tables = crm.backend.metadata.tables
    with crm.backend.engine.begin() as conn:
        conn.execute(sa.update(tables["outbox_events"]).where(tables["outbox_events"].c.id == logged.id).values(dispatched_at=None))
    assert crm.events.drain().dispatched == 1
    assert crm.contacts.get(contact.id).score == 50
    assert changes_of(events, contact.id) == [(0.0, 20.0, "lead", "lead"), (20.0, 50.0, "lead", "mql")]

    # The score is written through contacts.update: contact.updated fires, naming the changes.
    updates = [e.data["changes"] for e in events.events if e.type == "contact.updated" and e.subject_id == contact.id]
    assert updates[-1] == {"score": {"from": 20.0, "to": 50.0}, "lifecycle_stage": {"from": "lead", "to": "mql"}}
    assert {e.actor for e in events.events if e.type == "contact.score_changed"} == {"scoring"}

    log(crm, contact.id, "meeting")
    log(crm, contact.id, "meeting")
    assert crm.contacts.get(contact.id).lifecycle_stage == "sql"

    # Decay lowers the score; the stage stays (never demoted).
    crm.scores.refresh(contact.id, utcnow() + timedelta(days=365))
    stored = crm.contacts.get(contact.id)
    assert stored.score < 1 and stored.lifecycle_stage == "sql"

    # Stages past SQL are not scoring's business.
    customer = crm.contacts.create({"first_name": "Cid", "lifecycle_stage": "customer"})
    for _ in range(4):
        log(crm, customer.id, "meeting")
    assert crm.contacts.get(customer.id).lifecycle_stage == "customer"
    assert crm.contacts.get(customer.id).score == 120


def write_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "crmkit.toml"
    path.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "crm.db"}"\n' + textwrap.dedent(body), encoding="utf-8")
    return str(path)


SETTINGS = """
    [plugins.scoring]
    enabled = true
    half_life_days = 0
    mql_threshold = 20
    sql_threshold = 40

    [plugins.scoring.activity_points]
    call = 7

    [[plugins.scoring.field_rules]]
    field = "industry"
    op = "in"
    value = ["saas", "fintech"]
    points = 15

    [[plugins.scoring.field_rules]]
    field = "custom.budget"
    op = "gte"
    value = 10000
    points = 25
    label = "budget of 10k or more"

    [[plugins.scoring.field_rules]]
    field = "job_title"
    op = "contains"
    value = "director"
    points = 10
"""


def test_profile_rules_from_crmkit_toml_rescore_when_their_fields_change(tmp_path, crm_factory):
    config = write_config(tmp_path, SETTINGS)
    crm = crm_factory(config)
    crm.custom_fields.define("contact", "budget", "number")

    contact = crm.contacts.create({"first_name": "Ada", "industry": "SaaS"})
    assert crm.contacts.get(contact.id).score == 15
    crm.contacts.update(contact.id, {"job_title": "Director of IT"})
    assert (crm.contacts.get(contact.id).score, crm.contacts.get(contact.id).lifecycle_stage) == (25, "mql")
    crm.contacts.update(contact.id, {"custom": {"budget": 12000}})
    log(crm, contact.id, "call", utcnow() - timedelta(days=3000))  # no decay here, but past the horizon
    log(crm, contact.id, "call", utcnow() - timedelta(days=300))
    log(crm, contact.id, "meeting")  # no points for meetings in this file
    card = crm.scores.explain(contact.id)
    assert card.score == 15 + 10 + 25 + 7
    assert crm.contacts.get(contact.id).lifecycle_stage == "sql"
    assert [c.rule for c in card.contributions] == [
        "activity call (+7 each)", "industry in ['saas', 'fintech']", "budget of 10k or more", "job_title contains 'director'"]

    result = CliRunner().invoke(build_cli(), ["--config", config, "scores", "rules", "--json"], catch_exceptions=False)
    rules = json.loads(result.stdout)
    assert (rules["activity_points"], rules["half_life_days"], rules["field_rules"][1]["label"]) == ({"call": 7.0}, 0.0, "budget of 10k or more")


@pytest.mark.parametrize(("body", "message"), [
    ('[[plugins.scoring.field_rules]]\nfield = "job_tittle"\nop = "contains"\nvalue = "x"\npoints = 1\n',
     r"\[plugins.scoring\] field_rules\[0\].field: 'contact.job_tittle': contact has no field 'job_tittle' \(did you mean 'job_title'\?\)"),
    ('[[plugins.scoring.field_rules]]\nfield = "industry"\nop = "in"\nvalue = "saas"\npoints = 1\n',
     r"field_rules\[0\].value: in needs a non-empty list"),
    ("[plugins.scoring]\nmql_threshold = 80\nsql_threshold = 60\n", r"sql_threshold \(60.0\) must not be below mql_threshold \(80.0\)"),
    ('[plugins.scoring.activity_points]\n"Email Opened" = 3\n', r"activity_points.Email Opened: 'Email Opened' is not a lower-case dotted name"),
    ("[plugins.scoring]\nhalf_life_days = -3\n", r"half_life_days cannot be negative"),
    ('[plugins.scoring]\nhalf_life_days = "a month"\n', r"expected float, got str 'a month' @ \[plugins.scoring\].half_life_days"),
])
def test_bad_scoring_settings_fail_the_open_naming_the_key(tmp_path, crm_factory, body, message):
    with pytest.raises(CRMError, match=message):
        crm_factory(write_config(tmp_path, body))


def test_cli_shows_a_score_rule_by_rule(tmp_path, crm_factory):
    config = write_config(tmp_path, "[plugins.scoring]\nenabled = true\n")
    crm = crm_factory(config)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(build_cli(), ["--config", config, *args], catch_exceptions=False)

    contact = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com", "job_title": "Director"})
    log(crm, contact.id, "meeting", utcnow() - timedelta(days=30))
    log(crm, contact.id, "meeting", utcnow() - timedelta(days=30))

    shown = json.loads(cli("scores", "show", "ada@example.com", "--json").stdout)
    assert shown["contact_id"] == contact.id and shown["score"] == pytest.approx(40, abs=0.01)
    assert [(c["rule"], c["count"], c["points"], c["kept"]) for c in shown["contributions"]] == [
        ("activity meeting (+30 each)", 2, 60.0, pytest.approx(0.5, abs=0.001)), ("job_title contains 'director'", 1, 10.0, 1.0)]

    text = cli("scores", "show", contact.id).stdout
    assert "activity meeting (+30 each)" in text and "kept after decay" in text and "50%" in text
    assert "email.opened" in cli("scores", "rules").stdout
    assert json.loads(cli("scores", "refresh", "--all", "--json").stdout) == {"changed": 0}  # current: seconds of decay round away
    assert json.loads(cli("scores", "refresh", "ada@example.com", "--json").stdout)["stored_score"] == pytest.approx(40, abs=0.01)
    assert cli("scores", "refresh").exit_code == 2
    result = cli("scores", "show", "nobody@example.com")
    assert result.exit_code == 1 and "not found" in result.stderr


def test_scoring_is_off_until_switched_on_and_leaves_given_scores_alone(crm_factory, scored):
    off = crm_factory()
    contact = off.contacts.create({"first_name": "Ada", "job_title": "Director"})
    log(off, contact.id, "meeting")
    assert off.contacts.get(contact.id).score == 0
    assert off.scores.explain(contact.id).score == pytest.approx(40, abs=0.01)  # explained all the same

    crm = scored()
    imported = crm.contacts.create({"first_name": "Bob", "score": 77})  # a score from another system
    assert crm.contacts.get(imported.id).score == 77
    log(crm, imported.id, "call")  # scoring's own from the next scored event on
    assert crm.contacts.get(imported.id).score == 10
