"""The demo builds a real CRM through the public services and prints what the reports say."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from collections import Counter

import pytest
import sqlalchemy as sa
from crmkit import reports
from crmkit.demo import DEFAULT_CONTACTS, PIPELINE, open_demo_crm, run_demo, send_welcomes, welcome_table
from crmkit.errors import ConfigError
from rich.console import Console


def table_rows(text: str, title: str) -> dict[str, list[str]]:
    """The body rows of the rich table titled ``title`` in recorded console text, by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def shown(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.1%}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    console = Console(record=True, width=120)
    run_demo(directory, console)
    crm = open_demo_crm(directory)
    yield crm, console.export_text()
    crm.close()


def test_printed_funnel_is_the_funnel_report_of_the_database(demo):
    crm, text = demo
    report = reports.funnel(crm, PIPELINE)
    printed = table_rows(text, f"{PIPELINE} funnel")
    expected = {s.stage.name: [str(s.reached), shown(s.from_previous), shown(s.from_first), str(s.drop_off)] for s in report.stages}
    expected |= {o.stage.name: [str(o.entered), "", shown(o.from_first), ""] for o in report.outcomes}
    assert printed == expected
    assert list(printed) == ["Lead", "Qualified", "Proposal", "Negotiation", "Won", "Lost"]


def test_printed_weighted_pipeline_matches_the_report(demo):
    crm, text = demo
    report = reports.weighted_pipeline(crm, PIPELINE)
    printed = table_rows(text, f"{PIPELINE} pipeline")
    assert printed["Total"][1] == str(report.deals)
    for currency, value in report.weighted.items():
        assert f"{currency} {value:,.2f}" in printed["Total"][3]
    assert {name: cells[1] for name, cells in printed.items() if name != "Total"} == {s.stage.name: str(s.deals) for s in report.stages}


def test_demo_data_are_sane(demo):
    crm, text = demo
    report = reports.funnel(crm, PIPELINE)
    deals = crm.deals.count()
    assert crm.contacts.count() == DEFAULT_CONTACTS
    assert DEFAULT_CONTACTS * 0.3 < deals < DEFAULT_CONTACTS * 0.7
    # Every deal starts in Lead, so the funnel opens with all of them and only narrows.
    reached = [s.reached for s in report.stages]
    assert reached[0] == deals == report.deals
    assert reached == sorted(reached, reverse=True) and reached[-1] > 0
    won, lost, open_ = (crm.deals.count(status=status) for status in ("won", "lost", "open"))
    assert (report.won, report.lost) == (won, lost) and won > 0 and lost > 0 and open_ > 0
    assert won + lost + open_ == deals
    with crm.read() as uow:
        d = uow.table("deals")
        assert uow.connection.execute(sa.select(sa.func.count()).where(d.c.status == "lost", d.c.lost_reason.is_(None))).scalar_one() == 0
    assert crm.activities.count() > DEFAULT_CONTACTS
    assert re.search(rf"Contacts\s+{DEFAULT_CONTACTS} \(intake: {DEFAULT_CONTACTS} created, \d+ updated\)", text)
    # Backdated: the history spans the simulated weeks, not the few seconds the demo ran.
    with crm.read() as uow:
        changes = uow.table("stage_changes")
        first, last = uow.connection.execute(sa.select(sa.func.min(changes.c.changed_at), sa.func.max(changes.c.changed_at))).one()
    assert (last - first).days > 30


@pytest.mark.skipif(importlib.util.find_spec("crmkit_email") is None, reason="the welcome e-mails need crmkit-email installed")
def test_welcome_emails_went_through_the_veto_chain_to_the_local_sink_and_the_counts_are_the_databases(demo):
    crm, text = demo
    printed = {name: cells[0] for name, cells in table_rows(text, "Welcome e-mails").items()}
    messages = crm.messages.list(limit=None)
    statuses = Counter(m["status"] for m in messages)
    assert set(statuses) == {"sent", "vetoed"} and len(messages) == DEFAULT_CONTACTS  # one per contact, none left queued or failed
    assert printed["Queued"] == printed["Sent"] == printed["Delivered to sink"] == str(statuses["sent"])
    assert printed["Vetoed"] == str(statuses["vetoed"]) and printed["Failed"] == "0"
    reasons = Counter(m["veto_reason"].split(" for ")[0].split(" (")[0] for m in messages if m["status"] == "vetoed")
    assert {name: printed[name] for name in reasons} == {name: str(n) for name, n in reasons.items()}
    assert {"consent: no granted consent", "consent: withdrawn", "suppressed: hard_bounce"} <= set(reasons)
    # The veto chain, not the demo, decided: sent exactly to the contacts whose latest newsletter
    # consent is a grant and whose address is not suppressed.
    with crm.read() as uow:
        c = uow.table("consents")
        ledger = uow.connection.execute(sa.select(c.c.contact_id, c.c.status).order_by(c.c.recorded_at, c.c.id)).all()
    latest = dict((row.contact_id, row.status) for row in ledger)
    suppressed = {s["address"] for s in crm.messages.suppressions("email")}
    allowed = {m["contact_id"] for m in messages if latest.get(m["contact_id"]) == "granted" and m["address"] not in suppressed}
    assert {m["contact_id"] for m in messages if m["status"] == "sent"} == allowed
    sent = next(m for m in messages if m["status"] == "sent")
    contact = crm.contacts.get(sent["contact_id"])
    assert sent["subject"] == f"Welcome, {contact.first_name}!" and sent["html"] is True and sent["ambiguous"] == 0


def test_without_an_email_channel_offering_a_sink_the_welcome_step_says_it_was_skipped(crm_factory, monkeypatch):
    monkeypatch.setenv("CRMKIT_DISABLE_PLUGINS", "email")
    crm = crm_factory()
    assert send_welcomes(crm) is None
    console = Console(record=True, width=200)
    console.print(welcome_table(None))
    assert "skipped, no e-mail channel with a local SMTP sink is installed" in console.export_text()
    assert crm.messages.list() == []


def test_same_seed_tells_the_same_story(tmp_path):
    funnels = []
    for name in ("one", "two"):
        run_demo(tmp_path / name, Console(quiet=True), seed=7, contacts=40)
        with open_demo_crm(tmp_path / name) as crm:
            report = reports.funnel(crm, PIPELINE)
        funnels.append(([s.reached for s in report.stages], report.won, report.lost))
    assert funnels[0] == funnels[1]


def test_without_a_directory_the_demo_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    console = Console(record=True, width=120)
    run_demo(None, console, contacts=20)
    assert "Lead" in console.export_text()
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_directory_that_already_holds_a_crm(tmp_path):
    (tmp_path / "crmkit.toml").write_text("[crmkit]\n")
    with pytest.raises(ConfigError, match="crmkit.toml exists already"):
        run_demo(tmp_path, Console(record=True))
