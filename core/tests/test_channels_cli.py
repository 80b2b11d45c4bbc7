"""``crmkit messages``: list with filters, show, the dead-letter list, retry and drain, each
with ``--json`` — against messages put in every state through the real send path."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from crmkit.cli import build_cli

from .test_channels import ChannelPlugin, _only_the_recording_channel, person  # noqa: F401 - autouse: no installed 'email' channel


@pytest.fixture
def plugin() -> ChannelPlugin:
    return ChannelPlugin()


@pytest.fixture
def crm(crm_factory, plugin):
    return crm_factory(plugins=[plugin])


@pytest.fixture
def run(crm, plugin):
    """``run(*args)``: crmkit with the recording channel installed, on the test's database."""
    def invoke(*args: str):
        return CliRunner().invoke(build_cli(plugins=[plugin]), ["--database", crm.config.database_url, "messages", *args])
    return invoke


@pytest.fixture
def messages(crm, plugin):
    """One message in each interesting state: sent, dead, ambiguous (retrying), vetoed."""
    plugin.channel.script.extend(["sent", "permanent", "unknown"])
    ada, bob, cy, dee = (person(crm) for _ in range(4))
    return {
        "sent": crm.messages.send(ada.id, "email", body="Hi", purpose="marketing"),
        "dead": crm.messages.send(bob.id, "email", body="Hi", purpose="marketing"),
        "ambiguous": crm.messages.send(cy.id, "email", body="Hi", purpose="marketing"),
        "vetoed": crm.messages.send(dee.id, "email", body="Hi", purpose="newsletter"),  # consent is for marketing only
    }


def ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return sorted(m["id"] for m in json.loads(result.stdout))


def test_list_filters_by_status_channel_contact_and_ambiguity(run, messages):
    assert [m["status"] for m in messages.values()] == ["sent", "dead", "retrying", "vetoed"]
    assert ids(run("list", "--json")) == sorted(m["id"] for m in messages.values())
    assert ids(run("list", "--status", "dead", "--json")) == [messages["dead"]["id"]]
    assert ids(run("list", "--ambiguous", "--json")) == [messages["ambiguous"]["id"]]
    assert ids(run("list", "--contact", messages["vetoed"]["contact_id"], "--json")) == [messages["vetoed"]["id"]]
    assert ids(run("list", "--channel", "sms", "--json")) == []
    assert ids(run("list", "--limit", "1", "--json")) == [messages["vetoed"]["id"]]  # newest first
    table = run("list", "--status", "vetoed")
    assert table.exit_code == 0 and messages["vetoed"]["id"] in table.output and "consent" in table.output
    assert run("list", "--status", "lost").exit_code == 2  # not a state: a usage error naming the choices


def test_show_one_as_json_and_as_a_record(run, messages):
    ambiguous = messages["ambiguous"]
    shown = json.loads(run("show", ambiguous["id"], "--json").stdout)
    assert (shown["id"], shown["status"], shown["ambiguous"], shown["attempts"]) == (ambiguous["id"], "retrying", 1, 1)
    assert "connection lost" in shown["last_error"]
    record = run("show", ambiguous["id"])
    assert record.exit_code == 0 and "ambiguous" in record.output and "connection lost" in record.output
    missing = run("show", "no-such-message")
    assert missing.exit_code == 1 and "no-such-message" in missing.output


def test_the_dead_letter_list_and_retrying_a_dead_letter(run, messages, plugin):
    dead = messages["dead"]
    assert ids(run("dead", "--json")) == [dead["id"]]
    retried = run("retry", dead["id"], "--json")
    assert retried.exit_code == 0 and [m["status"] for m in json.loads(retried.stdout)] == ["queued"]
    assert ids(run("dead", "--json")) == []
    refused = run("retry", messages["sent"]["id"])
    assert refused.exit_code == 1 and "not a dead letter" in refused.output
    drained = run("drain", "--json")
    assert drained.exit_code == 0 and json.loads(drained.stdout)["sent"] == 1  # the retried one; the ambiguous one is not due yet
    assert json.loads(run("show", dead["id"], "--json").stdout)["status"] == "sent"
    assert [m.id for m in plugin.channel.sent].count(dead["id"]) == 1
