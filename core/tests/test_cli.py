"""The ``crmkit`` command line: setup (init, db), the console script, and contacts/organizations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import crmkit
import pytest
from click.testing import CliRunner as ClickRunner
from crmkit.cli import build_cli
from crmkit.testing import CliRunner

NO_ENV = {"CRMKIT_DATABASE_URL": None, "CRMKIT_CONFIG": None}


def run(*args: str, input: str | None = None):
    """The CLI without the fixture's --database (for init and unmigrated databases)."""
    return ClickRunner().invoke(build_cli(), list(args), input=input, env=NO_ENV, catch_exceptions=False)


def outbox_total(crm) -> int:
    return crm.events.counts()["total"]


# --- the program itself ------------------------------------------------------------------


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert crmkit.__version__ in result.output


def test_console_script_and_python_m_run_for_real(crm):
    script = Path(sys.executable).with_name("crmkit")
    assert script.exists(), f"console script missing next to {sys.executable}"
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env_free, timeout=120)
    assert version.returncode == 0, version.stderr
    assert crmkit.__version__ in version.stdout

    url = crm.config.database_url
    added = subprocess.run([sys.executable, "-m", "crmkit", "--database", url, "contacts", "add", "--email", "ada@example.com", "--json"],
                           capture_output=True, text=True, env=env_free, timeout=120)
    assert added.returncode == 0, added.stderr
    contact = json.loads(added.stdout)
    assert crm.contacts.get(contact["id"]).email == "ada@example.com"

    rejected = subprocess.run([str(script), "contacts", "add", "--email", "nope", "--database", url],
                              capture_output=True, text=True, env=env_free, timeout=120)
    assert rejected.returncode == 1
    assert "email" in rejected.stderr
    assert crm.contacts.count() == 1


def test_every_documented_command_has_help(cli):
    commands = [
        "init", "db upgrade", "db current", "plugins", "demo",
        "contacts add", "contacts list", "contacts show", "contacts update", "contacts delete",
        "organizations add", "organizations list", "organizations show", "organizations update", "organizations delete",
        "pipelines add", "pipelines list", "pipelines show",
        "deals add", "deals list", "deals show", "deals move", "deals history", "deals update", "deals delete",
        "activities add", "activities list", "tasks add", "tasks list", "tasks done",
        "campaigns add", "campaigns list", "consents record", "consents list", "users add", "users list",
        "teams add", "teams list", "custom-fields define", "custom-fields list",
        "events status", "events failures", "events drain", "privacy export", "privacy erase",
    ]
    for command in commands:
        result = cli(*command.split(), "--help")
        assert result.exit_code == 0, f"crmkit {command} --help: {result.output}"


def test_commands_are_registered_through_the_hook_by_the_core_plugin():
    from crmkit.plugins import Registry, make_plugin_manager

    commands = make_plugin_manager(load_entry_points=False).collect("crmkit_register_commands", Registry("command", key=lambda c: c.name))
    assert {"contacts", "deals", "db", "init"} <= set(commands)
    assert commands.owners["contacts"] == "crmkit.cli.core_commands"


# --- init and db -------------------------------------------------------------------------


def test_init_writes_config_creates_and_migrates_sqlite(tmp_path):
    target = tmp_path / "shop"
    result = run("init", str(target), "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert state["up_to_date"] is True and state["current"]

    config = (target / "crmkit.toml").read_text()
    assert 'database = "sqlite:///crm.db"' in config
    assert (target / "crm.db").is_file()

    # The written configuration is usable as is: the database it names is migrated.
    current = run("--config", str(target / "crmkit.toml"), "db", "current", "--json")
    assert json.loads(current.stdout)["database"].endswith(str(target / "crm.db"))
    added = run("--config", str(target / "crmkit.toml"), "contacts", "add", "--email", "ada@example.com", "--json")
    assert added.exit_code == 0, added.output


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    assert run("init", str(tmp_path)).exit_code == 0
    (tmp_path / "crmkit.toml").write_text("# mine\n")

    again = run("init", str(tmp_path))
    assert again.exit_code == 1
    assert "exists" in again.output and "--force" in again.output
    assert (tmp_path / "crmkit.toml").read_text() == "# mine\n"

    forced = run("init", str(tmp_path), "--force")
    assert forced.exit_code == 0, forced.output
    assert "sqlite:///crm.db" in (tmp_path / "crmkit.toml").read_text()


def test_init_with_database_writes_that_database(cli, tmp_path, crm):
    result = cli("init", str(tmp_path / "proj"))
    assert result.exit_code == 0, result.output
    assert crm.config.database_url in (tmp_path / "proj" / "crmkit.toml").read_text()


def test_unmigrated_database_is_refused_until_db_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    refused = run("--database", url, "contacts", "list")
    assert refused.exit_code == 1
    assert "not migrated" in refused.output and "crmkit db upgrade" in refused.output

    before = run("db", "current", "--json", "--database", url)
    assert before.exit_code == 0, before.output
    state = json.loads(before.stdout)
    assert (state["current"], state["up_to_date"]) == ([], False) and state["heads"]
    assert run("--database", url, "db", "current", "--check").exit_code == 1

    upgraded = run("--database", url, "db", "upgrade", "--json")
    assert upgraded.exit_code == 0, upgraded.output
    state = json.loads(upgraded.stdout)
    assert state["up_to_date"] is True and state["current"] == state["heads"]
    assert run("--database", url, "db", "current", "--check").exit_code == 0
    assert json.loads(run("--database", url, "contacts", "list", "--json").stdout) == []


def test_database_option_works_before_and_after_the_command(cli, crm, tmp_path):
    other = crmkit.open(f"sqlite:///{tmp_path / 'other.db'}", migrate=True)
    try:
        other.intake.submit({"email": "other@example.com"})
        after = CliRunner("sqlite:///nowhere-this-is-overridden.db")("contacts", "list", "--json", "--database", other.config.database_url)
        assert [c["email"] for c in json.loads(after.stdout)] == ["other@example.com"]
    finally:
        other.close()
    assert cli.json("contacts", "list") == []


# --- contacts ----------------------------------------------------------------------------


def test_contacts_add_exact_form_prints_the_contact_as_json(cli, crm):
    contact = cli.json("contacts", "add", "--email", "Ada@Example.com", "--first-name", "Ada", "--last-name", "Lovelace",
                       "--phone", "+44 20 7946 0018")
    stored = crm.contacts.get(contact["id"])
    assert (stored.email, stored.first_name, stored.last_name, stored.phone) == ("ada@example.com", "Ada", "Lovelace", "+442079460018")
    assert contact["email"] == "ada@example.com" and contact["version"] == 1


def test_contacts_add_with_every_option(cli, crm):
    owner = crm.users.create({"email": "owner@example.com"})
    org = crm.organizations.create({"name": "Analytical Engines"})
    crm.custom_fields.define("contact", "budget", "number")
    contact = cli.json("contacts", "add", "--email", "ada@example.com", "--job-title", "Mathematician", "--organization", org.id,
                       "--tag", "VIP", "--tag", "math", "--custom", "budget=1200", "--lifecycle-stage", "customer",
                       "--owner", owner.id, "--set", "address.city=London")
    stored = crm.contacts.get(contact["id"])
    assert stored.job_title == "Mathematician" and stored.organization_id == org.id and stored.owner_id == owner.id
    assert stored.tags == ["vip", "math"] and stored.custom == {"budget": 1200}
    assert stored.lifecycle_stage.value == "customer" and stored.address.city == "London"


def test_contacts_add_goes_through_intake_and_reports_the_outcome(cli, crm):
    first = cli("contacts", "add", "--email", "ada@example.com", "--first-name", "Ada")
    assert first.exit_code == 0 and "created" in first.output
    second = cli("contacts", "add", "--email", "ada@example.com", "--job-title", "Countess")
    assert second.exit_code == 0 and "updated" in second.output
    assert crm.contacts.count() == 1
    assert crm.contacts.find_by_email("ada@example.com").job_title == "Countess"

    skipped = cli("contacts", "add", "--email", "ada@example.com", "--job-title", "Ignored", "--on-duplicate", "skip")
    assert skipped.exit_code == 0 and "skipped" in skipped.output
    assert crm.contacts.find_by_email("ada@example.com").job_title == "Countess"
    assert cli("contacts", "add", "--email", "ada@example.com", "--on-duplicate", "create").exit_code == 0
    assert crm.contacts.count() == 2
    assert cli("contacts", "add", "--email", "x@example.com", "--on-duplicate", "merge").exit_code == 2


def test_contacts_add_invalid_email_names_the_field_and_writes_nothing(cli, crm):
    events_before = outbox_total(crm)
    result = cli("contacts", "add", "--email", "not-an-email", "--first-name", "Ada")
    assert result.exit_code == 1
    assert "email" in result.stderr and "[invalid_email]" in result.stderr
    assert crm.contacts.count() == 0
    assert outbox_total(crm) == events_before


def test_contacts_add_reports_every_bad_field_at_once(cli, crm):
    result = cli("contacts", "add", "--email", "ada@example.com", "--phone", "12", "--set", "shoe_size=42",
                 "--owner", "no-such-user", "--lifecycle-stage", "royalty")
    assert result.exit_code == 1
    for field in ("phone", "shoe_size", "lifecycle_stage"):
        assert f"Error: {field}:" in result.stderr
    assert crm.contacts.count() == 0


@pytest.mark.parametrize("args", [["--set", "no-equals-sign"], ["--custom", "=1"], ["--bogus-option", "x"]])
def test_contacts_add_malformed_options_are_usage_errors(cli, crm, args):
    result = cli("contacts", "add", "--email", "ada@example.com", *args)
    assert result.exit_code == 2
    assert crm.contacts.count() == 0


def test_contacts_list_json_paging_and_filters(cli, crm):
    ids = [crm.intake.submit({"email": f"c{i}@example.com", "lifecycle_stage": "customer" if i % 2 else "lead"}).contact.id
           for i in range(5)]
    assert [c["id"] for c in cli.json("contacts", "list")] == ids
    first = cli.json("contacts", "list", "--limit", "2")
    assert [c["id"] for c in first] == ids[:2]
    rest = cli.json("contacts", "list", "--limit", "2", "--after", first[-1]["id"])
    assert [c["id"] for c in rest] == ids[2:4]
    assert [c["id"] for c in cli.json("contacts", "list", "--lifecycle-stage", "Customer")] == [ids[1], ids[3]]
    assert [c["id"] for c in cli.json("contacts", "list", "--email", "C3@example.com")] == [ids[3]]
    assert cli.json("contacts", "list", "--email", "nobody@example.com") == []

    human = cli("contacts", "list", "--limit", "2")
    assert "c0@example.com" in human.output and f"--after {ids[1]}" in human.output
    assert cli("contacts", "list", "--after", "missing").exit_code == 1
    assert cli("contacts", "list", "--limit", "0").exit_code == 2


def test_contacts_show_by_id_or_email(cli, crm):
    contact = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada", "address": {"city": "London"}}).contact
    assert cli.json("contacts", "show", contact.id)["id"] == contact.id
    assert cli.json("contacts", "show", "ADA@example.com")["id"] == contact.id
    human = cli("contacts", "show", contact.id)
    assert "address.city" in human.output and "London" in human.output
    missing = cli("contacts", "show", "nobody@example.com")
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_contacts_update_with_options_set_and_expected_version(cli, crm):
    contact = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact
    updated = cli.json("contacts", "update", contact.id, "--last-name", "Lovelace", "--set", "address.city=London", "--set", "job_title=")
    assert updated["version"] == 2
    stored = crm.contacts.get(contact.id)
    assert (stored.first_name, stored.last_name, stored.address.city, stored.job_title) == ("Ada", "Lovelace", "London", None)

    stale = cli("contacts", "update", contact.id, "--first-name", "Augusta", "--expected-version", "1")
    assert stale.exit_code == 1 and "changed by someone else" in stale.stderr
    assert crm.contacts.get(contact.id).first_name == "Ada"
    assert cli("contacts", "update", contact.id, "--first-name", "Augusta", "--expected-version", "2").exit_code == 0
    assert crm.contacts.get(contact.id).first_name == "Augusta"

    bad = cli("contacts", "update", contact.id, "--email", "broken", "--first-name", "Bad")
    assert bad.exit_code == 1 and "email" in bad.stderr
    assert crm.contacts.get(contact.id).first_name == "Augusta"
    assert cli("contacts", "update", contact.id, "--set", "id=x").exit_code == 1
    nothing = cli("contacts", "update", contact.id)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output


def test_contacts_delete_asks_unless_yes(cli, crm):
    contact = crm.intake.submit({"email": "ada@example.com"}).contact
    declined = cli("contacts", "delete", contact.id, input="n\n")
    assert declined.exit_code == 1
    assert crm.contacts.find(contact.id) is not None
    no_terminal = cli("contacts", "delete", contact.id)
    assert no_terminal.exit_code == 1
    assert crm.contacts.find(contact.id) is not None

    assert cli("contacts", "delete", contact.id, input="y\n").exit_code == 0
    assert crm.contacts.find(contact.id) is None
    other = crm.intake.submit({"email": "grace@example.com"}).contact
    assert cli.json("contacts", "delete", other.id, "--yes") == {"deleted": other.id, "kind": "contact"}
    assert crm.contacts.count() == 0
    assert cli("contacts", "delete", other.id, "--yes").exit_code == 1


# --- organizations -----------------------------------------------------------------------


def test_organizations_add_list_show_update_delete(cli, crm):
    org = cli.json("organizations", "add", "--name", "Acme", "--domain", "acme.com", "--tag", "b2b", "--industry", "Tools")
    assert crm.organizations.get(org["id"]).domain == "acme.com"
    assert [o["name"] for o in cli.json("organizations", "list")] == ["Acme"]
    assert [o["id"] for o in cli.json("organizations", "list", "--domain", "acme.com")] == [org["id"]]
    assert cli.json("organizations", "show", org["id"])["tags"] == ["b2b"]
    assert cli.json("organizations", "update", org["id"], "--size", "11-50")["size"] == "11-50"
    assert "Acme" in cli("organizations", "list").output

    assert cli("organizations", "delete", org["id"], "--yes").exit_code == 0
    assert crm.organizations.count() == 0


def test_organizations_add_without_name_writes_nothing(cli, crm):
    result = cli("organizations", "add", "--domain", "acme.com")
    assert result.exit_code == 1 and "name" in result.stderr
    assert crm.organizations.count() == 0


def test_contacts_on_every_database(database_url, crm_factory):
    """The commands run unchanged on SQLite, PostgreSQL and MariaDB (paging compares row
    values in SQL, which every backend must support)."""
    crm = crm_factory(database_url)
    cli = CliRunner(database_url)
    ids = {cli.json("contacts", "add", "--email", f"p{i}@example.com")["id"] for i in range(3)}
    listed = [c["id"] for c in cli.json("contacts", "list")]
    assert set(listed) == ids
    assert [c["id"] for c in cli.json("contacts", "list", "--limit", "1")] == listed[:1]
    assert [c["id"] for c in cli.json("contacts", "list", "--after", listed[0])] == listed[1:]
    assert cli("contacts", "add", "--email", "bad").exit_code == 1
    assert crm.contacts.count() == 3
