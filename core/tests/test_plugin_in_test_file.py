"""Acceptance: a plugin written in a test file, with no change to crmkit, adds a table, a CLI
command and an event handler, and all three work together. A plugin with a misspelled hook is
refused, naming it."""

from __future__ import annotations

import json
from typing import Any

import click
import crmkit
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from crmkit.cli import build_cli, pass_crm


class LoyaltyPlugin:
    """One point per 100 of a won deal's amount, kept in the plugin's own table."""

    crmkit_plugin_name = "loyalty"

    @crmkit.hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table(
            "loyalty_points", metadata,
            sa.Column("deal_id", sa.String(32), sa.ForeignKey("deals.id"), primary_key=True),  # one award per deal, even if an event repeats
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id"), nullable=False, index=True),
            sa.Column("points", sa.Integer, nullable=False),
        ))

    @crmkit.hookimpl
    def crmkit_handle_event(self, event: crmkit.Event, crm: crmkit.CRM) -> None:
        if event.type != "deal.won":
            return
        deal = crm.deals.get(event.subject_id)
        if deal.contact_id is None:
            return
        with crm.uow() as uow:
            table = uow.table("loyalty_points")
            if uow.connection.execute(sa.select(table.c.deal_id).where(table.c.deal_id == deal.id)).first() is None:
                uow.connection.execute(sa.insert(table).values(deal_id=deal.id, contact_id=deal.contact_id, points=int(deal.amount // 100)))

    @crmkit.hookimpl
    def crmkit_register_commands(self, register: Any) -> None:
        @click.group("loyalty")
        def loyalty() -> None:
            """Loyalty points."""

        @loyalty.command("show")
        @click.argument("contact_id")
        @click.option("--json", "as_json", is_flag=True)
        @pass_crm
        def show(crm: crmkit.CRM, contact_id: str, as_json: bool) -> None:
            """Show a contact's points."""
            contact = crm.contacts.get(contact_id)
            with crm.read() as uow:
                table = uow.table("loyalty_points")
                points = uow.connection.execute(sa.select(sa.func.coalesce(sa.func.sum(table.c.points), 0)).where(table.c.contact_id == contact.id)).scalar_one()
            if as_json:
                click.echo(json.dumps({"contact_id": contact.id, "points": int(points)}))
            else:
                click.echo(f"{contact.display_name}: {points} points")

        register(loyalty)


def test_plugin_table_event_handler_and_command_work_together(crm_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CLI must not pick up a stray crmkit.toml
    plugin = LoyaltyPlugin()
    crm = crm_factory(plugins=[plugin])  # migrated: creates loyalty_points from its definition
    url = crm.config.database_url

    ada = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")])
    for title, amount in (("Licence", "1250"), ("Support", "480")):
        deal = crm.deals.create({"title": title, "pipeline": "Sales", "contact_id": ada.id, "amount": amount})
        crm.deals.move(deal.id, "Won")
    lost = crm.deals.create({"title": "Training", "pipeline": "Sales", "contact_id": ada.id, "amount": "900"})
    crm.deals.move(lost.id, "Lost")

    # The event handler wrote to the plugin's table.
    with crm.read() as uow:
        table = uow.table("loyalty_points")
        assert sorted(uow.connection.execute(sa.select(table.c.points)).scalars()) == [4, 12]

    # The command reads it through the CLI, against the same database.
    runner = CliRunner()
    cli = build_cli(plugins=[plugin])
    result = runner.invoke(cli, ["--database", url, "loyalty", "show", ada.id, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"contact_id": ada.id, "points": 16}

    result = runner.invoke(cli, ["--database", url, "loyalty", "show", ada.id], catch_exceptions=False)
    assert result.stdout.strip() == "Ada: 16 points"

    result = runner.invoke(cli, ["--database", url, "loyalty", "show", "nobody"], catch_exceptions=False)
    assert result.exit_code == 1 and "contact 'nobody' not found" in result.stderr

    # Without the plugin the command does not exist.
    result = runner.invoke(build_cli(), ["--database", url, "loyalty", "show", ada.id])
    assert result.exit_code == 2 and "No such command 'loyalty'" in result.stderr


class TypoPlugin:
    crmkit_plugin_name = "typo"

    @crmkit.hookimpl
    def crmkit_handle_evnt(self, event: crmkit.Event) -> None:
        pass


def test_plugin_with_a_misspelled_hook_is_refused_by_name(crm_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(crmkit.PluginError) as excinfo:
        crm_factory(plugins=[TypoPlugin()])
    assert excinfo.value.plugin == "typo"
    assert "unknown hook 'crmkit_handle_evnt'; did you mean 'crmkit_handle_event'?" in str(excinfo.value)

    with pytest.raises(crmkit.PluginError, match="plugin 'typo'"):
        build_cli(plugins=[TypoPlugin()])
    # The console script prints that and exits 1 (an installed plugin: test_plugins.py).
