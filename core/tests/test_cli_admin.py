"""``crmkit users``, ``teams``, ``custom-fields``, ``events``, ``privacy``, ``plugins`` and ``demo``."""

from __future__ import annotations

import json

from click.testing import CliRunner as ClickRunner
from crmkit.cli import build_cli
from crmkit.plugins import hookimpl
from crmkit.testing import CliRunner


class FailingSubscriber:
    crmkit_plugin_name = "failing-subscriber"

    @hookimpl
    def crmkit_handle_event(self, event):
        raise RuntimeError("mail server down")


def test_users_and_teams(cli, crm):
    team = cli.json("teams", "add", "Sales")
    assert crm.teams.get(team["id"]).name == "Sales"
    user = cli.json("users", "add", "--email", "Bob@Example.com", "--name", "Bob", "--role", "manager", "--team", team["id"])
    stored = crm.users.get(user["id"])
    assert (stored.email, stored.name, stored.role.value, stored.team_id) == ("bob@example.com", "Bob", "manager", team["id"])
    cli.json("users", "add", "--email", "eve@example.com")

    assert [u["email"] for u in cli.json("users", "list")] == ["bob@example.com", "eve@example.com"]
    assert [u["email"] for u in cli.json("users", "list", "--team", team["id"])] == ["bob@example.com"]
    assert [t["name"] for t in cli.json("teams", "list")] == ["Sales"]
    assert "bob@example.com" in cli("users", "list").output and "Sales" in cli("teams", "list").output

    for args, field in ((["--email", "bob@example.com"], "email"), (["--email", "x@example.com", "--role", "king"], "role"),
                        (["--email", "y@example.com", "--team", "missing"], "team_id"), (["--name", "No Mail"], "email")):
        result = cli("users", "add", *args)
        assert result.exit_code == 1 and f"Error: {field}:" in result.stderr
    assert crm.users.count() == 2
    assert cli("teams", "add", "").exit_code == 1
    assert crm.teams.count() == 1


def test_custom_fields_define_list_and_use(cli, crm):
    definition = cli.json("custom-fields", "define", "contact", "budget", "number", "--label", "Budget")
    assert (definition["entity"], definition["name"], definition["type"]) == ("contact", "budget", "number")
    cli.json("custom-fields", "define", "deal", "source", "choice", "--choice", "web", "--choice", "partner", "--required")
    assert [(d["entity"], d["name"]) for d in cli.json("custom-fields", "list")] == [("contact", "budget"), ("deal", "source")]
    assert [d["name"] for d in cli.json("custom-fields", "list", "--entity", "deal")] == ["source"]
    assert "budget" in cli("custom-fields", "list").output

    assert cli("custom-fields", "define", "contact", "x", "colour").exit_code == 2
    assert cli("custom-fields", "define", "ticket", "x", "text").exit_code == 2
    no_choices = cli("custom-fields", "define", "contact", "tier", "choice")
    assert no_choices.exit_code == 1 and "choices" in no_choices.stderr
    bad_name = cli("custom-fields", "define", "contact", "Bad Name", "text")
    assert bad_name.exit_code == 1 and "name" in bad_name.stderr
    assert cli("custom-fields", "define", "contact", "budget", "text").exit_code == 1
    assert len(crm.custom_fields.list()) == 2

    contact = cli.json("contacts", "add", "--email", "ada@example.com", "--custom", "budget=12.5")
    assert crm.contacts.get(contact["id"]).custom == {"budget": 12.5}
    rejected = cli("contacts", "add", "--email", "grace@example.com", "--custom", "budget=lots", "--custom", "colour=red")
    assert rejected.exit_code == 1
    assert "custom.budget" in rejected.stderr and "custom.colour" in rejected.stderr
    assert crm.contacts.count() == 1


def test_events_status_drain_and_failures(crm_factory):
    crm = crm_factory(dispatch_inline=False)
    cli = CliRunner(crm.config.database_url)
    crm.intake.submit({"email": "ada@example.com"})
    status = cli.json("events", "status")
    assert status["pending"] >= 1 and status["total"] == status["pending"] + status["dispatched"]

    drained = cli.json("events", "drain")
    assert drained["dispatched"] == status["pending"] and drained["failed"] == 0
    assert cli.json("events", "status")["pending"] == 0
    assert "Dispatched 0" in cli("events", "drain").output
    assert cli.json("events", "failures") == []

    failing = crm_factory(crm.config.database_url, plugins=[FailingSubscriber()], dispatch_inline=False)
    failing.intake.submit({"email": "grace@example.com"})
    failing.events.drain()
    failures = cli.json("events", "failures")
    assert failures and {f["subscriber"] for f in failures} == {"failing-subscriber"}
    assert all(f["status"] == "failed" and "mail server down" in f["last_error"] and f["next_attempt_at"] for f in failures)
    assert "failing-subscriber" in cli("events", "failures").output


def test_privacy_export_and_erase(cli, crm, tmp_path):
    contact = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada", "phone": "+14155550001"}).contact
    crm.activities.log({"kind": "note", "contact_id": contact.id, "subject": "private"})

    exported = cli("privacy", "export", contact.id)
    assert exported.exit_code == 0
    data = json.loads(exported.stdout)
    assert data["contact_id"] == contact.id and data["contact"]["email"] == "ada@example.com"
    assert [a["subject"] for a in data["activities"]] == ["private"]

    out = tmp_path / "ada.json"
    assert cli("privacy", "export", contact.id, "--out", str(out)).exit_code == 0
    assert json.loads(out.read_text())["contact"]["id"] == contact.id
    assert cli("privacy", "export", "missing").exit_code == 1

    declined = cli("privacy", "erase", contact.id, input="n\n")
    assert declined.exit_code == 1
    assert crm.contacts.get(contact.id).email == "ada@example.com"

    assert cli.json("privacy", "erase", contact.id, "--yes") == {"erased": contact.id}
    erased = crm.contacts.get(contact.id)
    assert (erased.email, erased.first_name, erased.phone) == (None, None, None)
    assert cli("privacy", "erase", "missing", "--yes").exit_code == 1


def test_plugins_lists_builtins_without_opening_a_database(tmp_path):
    runner = ClickRunner()
    env = {"CRMKIT_DATABASE_URL": None, "CRMKIT_CONFIG": None}
    result = runner.invoke(build_cli(), ["--database", f"sqlite:///{tmp_path / 'never' / 'created.db'}", "plugins", "--json"], env=env)
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    core = plugins["crmkit.cli.core_commands"]
    assert core["builtin"] is True and core["distribution"] == "crmkit" and core["version"]
    assert "crmkit_register_commands" in core["hooks"]
    assert not (tmp_path / "never").exists()

    config = tmp_path / "crmkit.toml"
    config.write_text('[plugins]\ndisabled = ["privacy_core"]\n')
    trimmed = runner.invoke(build_cli(), ["plugins", "--json", "--config", str(config)], env=env)
    assert "crmkit.builtin.privacy_core" not in {p["name"] for p in json.loads(trimmed.stdout)}
    human = runner.invoke(build_cli(), ["plugins"], env=env)
    assert "crmkit.cli.core_commands" in human.output


def test_demo_is_wired_to_run_demo_and_refuses_an_existing_crm(tmp_path):
    (tmp_path / "crmkit.toml").write_text("# an existing CRM\n")
    result = ClickRunner().invoke(build_cli(), ["demo", "--dir", str(tmp_path)], env={"CRMKIT_DATABASE_URL": None, "CRMKIT_CONFIG": None})
    assert result.exit_code == 1
    assert "Error:" in result.output and str(tmp_path) in result.output
    assert (tmp_path / "crmkit.toml").read_text() == "# an existing CRM\n"
