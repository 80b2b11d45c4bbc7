"""The audit log: every write made through a unit of work — services, intake, a plugin's own
writes — leaves one entry per event with its actor and changes, in the same transaction (a
rolled-back write leaves none); queries filter; personal data is exported and erased.

Also the ``crmkit_before_commit`` hook the audit log is built on: a plugin writing in the
transaction, vetoing a commit, and emitting events that are audited too.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit.builtin.audit.log import REDACTED
from crmkit.domain.values import utcnow
from crmkit.errors import ConflictError, PluginError
from crmkit.plugins import hookimpl


def audit_rows(crm: Any) -> int:
    with crm.backend.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(crm.backend.metadata.tables["audit_log"])).scalar_one()


class Tagger:
    """A plugin that writes on its own: tags every new contact, as actor ``tagger``."""

    crmkit_plugin_name = "tagger"

    @hookimpl
    def crmkit_handle_event(self, event: Any, crm: Any) -> None:
        if event.type == "contact.created":
            crm.contacts.update(event.subject_id, {"tags": ["new"]}, actor="tagger")


class Loyalty:
    """A plugin with its own event type and table, written through ``crm.uow``."""

    crmkit_plugin_name = "loyalty"

    @hookimpl
    def crmkit_register_event_types(self, register: Any) -> None:
        register("loyalty.points_awarded", "a contact earned loyalty points")

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table("loyalty_points", metadata, sa.Column("contact_id", sa.String(32), primary_key=True),
                          sa.Column("points", sa.Integer, nullable=False)))

    def award(self, crm: Any, contact_id: str, points: int) -> None:
        with crm.uow(actor="loyalty") as uow:
            uow.connection.execute(sa.insert(uow.table("loyalty_points")).values(contact_id=contact_id, points=points))
            uow.emit("loyalty.points_awarded", contact_id, {"contact_id": contact_id, "points": points})


def test_services_intake_and_plugin_writes_are_audited_with_actor_and_changes(crm_factory, database_url):
    loyalty = Loyalty()
    crm = crm_factory(database_url, plugins=[Tagger(), loyalty])
    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com"}, actor="alice")
    crm.contacts.update(ada.id, {"last_name": "Lovelace"}, actor="bob")
    crm.intake.submit({"email": "ada@example.com", "job_title": "Analyst"}, actor="web-form")
    loyalty.award(crm, ada.id, 10)

    trail = list(reversed(crm.audit.query(subject_id=ada.id)))
    assert [(e.type, e.actor) for e in trail] == [
        ("contact.created", "alice"),
        ("contact.updated", "tagger"),  # the plugin's own write, made while dispatching the creation
        ("contact.updated", "bob"),
        ("contact.updated", "web-form"),
        ("loyalty.points_awarded", "loyalty"),
    ]
    created, tagged, renamed, enriched, awarded = trail
    assert created.changes["first_name"] == "Ada" and created.changes["email"] == "ada@example.com"
    assert tagged.changes == {"tags": {"from": [], "to": ["new"]}}
    assert renamed.changes == {"last_name": {"from": None, "to": "Lovelace"}}
    assert enriched.changes == {"job_title": {"from": None, "to": "Analyst"}}
    assert awarded.changes == {"contact_id": ada.id, "points": 10}
    assert all(e.contact_id == ada.id for e in trail)
    assert created.occurred_at <= renamed.occurred_at <= awarded.occurred_at
    # The entry's id is the event's: audit and outbox tell the same story.
    with crm.backend.connect() as conn:
        outbox = crm.backend.metadata.tables["outbox_events"]
        assert {e.id for e in trail} <= set(conn.scalars(sa.select(outbox.c.id)))


def test_a_rolled_back_write_leaves_no_audit_entry(crm):
    before = audit_rows(crm)
    with pytest.raises(RuntimeError), crm.uow(actor="alice") as uow:
        crm.contacts.create_in(uow, {"first_name": "Ghost"})
        raise RuntimeError("changed my mind")
    ada = crm.contacts.create({"first_name": "Ada"})
    with pytest.raises(ConflictError):
        crm.contacts.update(ada.id, {"first_name": "Ada Lovelace"}, expected_version=ada.version + 5, actor="mallory")

    assert audit_rows(crm) == before + 1  # only Ada's creation
    assert crm.audit.query(actor="alice") == [] and crm.audit.query(actor="mallory") == []


# --- crmkit_before_commit ------------------------------------------------------------------------


class NoMallory:
    """House rule checked at commit time: nobody called Mallory gets in."""

    crmkit_plugin_name = "no-mallory"

    @hookimpl
    def crmkit_before_commit(self, uow: Any, events: list, crm: Any) -> None:
        if any(e.data.get("first_name") == "Mallory" for e in events):
            raise ValueError("Mallory is not welcome")


class Countersign:
    """Writes a row of its own in the committing transaction and emits an event about it."""

    crmkit_plugin_name = "countersign"

    def __init__(self) -> None:
        self.seen: list[tuple[list[str], str | None, bool]] = []

    @hookimpl
    def crmkit_register_event_types(self, register: Any) -> None:
        register("countersign.signed", "a commit with contact changes was countersigned")

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table("countersignatures", metadata, sa.Column("event_id", sa.String(32), primary_key=True)))

    @hookimpl
    def crmkit_before_commit(self, uow: Any, events: list, crm: Any) -> None:
        self.seen.append(([e.type for e in events], uow.actor, uow.connection.in_transaction()))
        contact_events = [e for e in events if e.type.startswith("contact.")]
        if contact_events:
            uow.connection.execute(sa.insert(uow.table("countersignatures")), [{"event_id": e.id} for e in contact_events])
            uow.emit("countersign.signed", None, {"count": len(contact_events)})


def test_before_commit_writes_in_the_transaction_and_its_events_are_audited(crm_factory):
    countersign = Countersign()
    crm = crm_factory(plugins=[countersign])
    ada = crm.contacts.create({"first_name": "Ada"}, actor="alice")

    assert (["contact.created"], "alice", True) in countersign.seen
    with crm.backend.connect() as conn:
        signed = list(conn.scalars(sa.select(crm.backend.metadata.tables["countersignatures"].c.event_id)))
    [created] = crm.audit.query(subject_id=ada.id)
    assert signed == [created.id]
    [countersigned] = crm.audit.query(type="countersign.signed")
    assert countersigned.actor == "alice" and countersigned.changes == {"count": 1}


def test_before_commit_failure_rolls_everything_back_and_names_the_plugin(crm_factory):
    crm = crm_factory(plugins=[NoMallory()])
    before = audit_rows(crm)
    with pytest.raises(PluginError, match="no-mallory.*Mallory is not welcome"):
        crm.contacts.create({"first_name": "Mallory"}, actor="mallory")
    assert crm.contacts.count() == 0 and audit_rows(crm) == before
    assert crm.events.counts()["total"] == 0
    crm.contacts.create({"first_name": "Ada"})
    assert crm.contacts.count() == 1


# --- queries -------------------------------------------------------------------------------------


def test_query_filters_and_cli(crm, cli):
    # Deals and stage moves record their actor as a user (a foreign key), so the actors are users.
    alice, bob = (crm.users.create({"email": f"{name}@example.com"}).id for name in ("alice", "bob"))
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")], actor="admin")
    ada = crm.contacts.create({"first_name": "Ada"}, actor=alice)
    grace = crm.contacts.create({"first_name": "Grace"}, actor=bob)
    deal = crm.deals.create({"title": "Engines", "pipeline": "Sales", "contact_id": ada.id}, actor=alice)
    crm.deals.move(deal.id, "Won", actor=bob)
    crm.contacts.update(grace.id, {"last_name": "Hopper"}, actor=bob)

    assert [e.type for e in crm.audit.query(actor=bob)] == ["contact.updated", "deal.won", "deal.stage_changed", "contact.created"]
    assert [e.subject_id for e in crm.audit.query(type="contact.created")] == [grace.id, ada.id]
    assert {e.type for e in crm.audit.query(type="deal.*")} == {"deal.created", "deal.stage_changed", "deal.won"}
    assert [e.type for e in crm.audit.query(subject_id=grace.id)] == ["contact.updated", "contact.created"]
    # Entries whose data names the person (a stage move names only the deal: ask by its subject).
    assert {e.type for e in crm.audit.query(contact_id=ada.id)} == {"contact.created", "deal.created"}
    assert {e.type for e in crm.audit.query(subject_id=deal.id)} == {"deal.created", "deal.stage_changed", "deal.won"}
    assert [e.type for e in crm.audit.query(actor=bob, type="contact.*")] == ["contact.updated", "contact.created"]
    assert len(crm.audit.query(limit=2)) == 2
    everything = crm.audit.query(limit=None)
    middle = sorted(e.occurred_at for e in everything)[3]
    assert {e.id for e in crm.audit.query(since=middle)} == {e.id for e in everything if e.occurred_at >= middle}
    assert {e.id for e in crm.audit.query(until=middle)} == {e.id for e in everything if e.occurred_at < middle}
    assert crm.audit.query(since=utcnow() + timedelta(minutes=1)) == []
    assert crm.audit.query(type="contact%") == []  # a LIKE wildcard is a plain character here

    listed = cli.json("audit", "list", "--subject", grace.id)
    assert [(e["type"], e["actor"]) for e in listed] == [("contact.updated", bob), ("contact.created", bob)]
    assert listed[0]["changes"] == {"last_name": {"from": None, "to": "Hopper"}}
    assert len(cli.json("audit", "list", "--actor", alice, "--type", "deal.created")) == 1
    assert len(cli.json("audit", "list", "--contact", ada.id, "--since", "1h")) == 2
    assert cli.json("audit", "list", "--since", (utcnow() + timedelta(days=1)).date().isoformat()) == []
    assert cli.json("audit", "list", "--since", "2000-01-01T00:00:00+02:00", "--limit", "1")[0]["type"] == "contact.updated"
    table = cli("audit", "list", "--type", "contact.updated")
    assert table.exit_code == 0 and "last_name" in table.output and bob in table.output
    bad = cli("audit", "list", "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since" in bad.output and "ISO 8601" in bad.output


# --- personal data -------------------------------------------------------------------------------


def test_export_has_the_trail_and_erasure_redacts_values_but_keeps_the_trail(crm):
    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com", "tags": ["vip"]}, actor="alice")
    crm.contacts.update(ada.id, {"phone": "+14155550001"}, actor="bob")
    crm.activities.log({"kind": "note", "contact_id": ada.id, "subject": "Ada's plans"})
    grace = crm.contacts.create({"first_name": "Grace", "email": "grace@example.com"}, actor="alice")

    trail = crm.privacy.export(ada.id)["audit_log"]
    assert [(e["type"], e["actor"]) for e in trail] == [("contact.created", "alice"), ("contact.updated", "bob"), ("activity.logged", None)]
    assert trail[1]["changes"] == {"phone": {"from": None, "to": "+14155550001"}}
    assert trail[2]["changes"]["subject"] == "Ada's plans"

    crm.privacy.erase(ada.id, actor="dpo")

    erased = {e.type: e for e in crm.audit.query(contact_id=ada.id)}
    created, updated, logged = erased["contact.created"], erased["contact.updated"], erased["activity.logged"]
    assert created.actor == "alice" and created.changes["id"] == ada.id and created.changes["version"] == 1
    assert created.changes["first_name"] == created.changes["email"] == created.changes["tags"] == REDACTED
    assert created.changes["last_name"] is None and created.changes["address"]["city"] is None
    assert updated.changes == {"phone": {"from": None, "to": REDACTED}}
    assert logged.changes["subject"] == REDACTED and logged.changes["contact_id"] == ada.id
    dumped = json.dumps([e.changes for e in crm.audit.query(contact_id=ada.id, limit=None)])
    assert "ada@example.com" not in dumped and "Ada" not in dumped and "+1415" not in dumped
    # Someone else's trail is untouched.
    assert crm.audit.query(subject_id=grace.id)[0].changes["email"] == "grace@example.com"


def test_a_failed_erasure_redacts_nothing(crm_factory):
    class Refuses:
        crmkit_plugin_name = "refuses"

        @hookimpl
        def crmkit_erase_personal_data(self, contact: Any, uow: Any) -> None:
            raise RuntimeError("legal hold")

    crm = crm_factory(plugins=[Refuses()])
    ada = crm.contacts.create({"first_name": "Ada"})
    with pytest.raises(PluginError, match="legal hold"):
        crm.privacy.erase(ada.id)
    assert crm.audit.query(subject_id=ada.id)[0].changes["first_name"] == "Ada"
