"""Merging duplicate contacts: survivorship rules, consent safety, audit trail and undo.

The merge → undo round trip runs on every backend (``any_crm``) and compares every row that
touches either contact before the merge and after the undo; the rest runs on SQLite.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from crmkit.domain import Address, Attribution, Contact, LifecycleStage
from crmkit.errors import NotFound, ValidationFailed
from crmkit.merge import MergedAway, MergeError
from crmkit.merge import service as merge_service
from crmkit.merge.consents import conflicts, current_states
from crmkit.merge.survivorship import DEFAULT_RULES, Side, choose_survivor, parse_rules, resolve
from crmkit.plugins import hookimpl

T0 = datetime(2024, 1, 1, tzinfo=UTC)
#: Tables whose rows belong to a contact, with the column that says which.
LINKED = {"activities": "contact_id", "deals": "contact_id", "tasks": "contact_id", "consents": "contact_id", "external_ids": "contact_id"}


def rows_touching(crm, *contact_ids):
    """Every row of every table that belongs to one of ``contact_ids``, in a stable order."""
    result = {}
    with crm.backend.connect() as conn:
        tables = crm.backend.metadata.tables
        for name, column in {"contacts": "id", **LINKED}.items():
            table = tables[name]
            rows = conn.execute(sa.select(table).where(table.c[column].in_(contact_ids))).mappings().all()
            result[name] = sorted((dict(r) for r in rows), key=lambda r: [str(r[c.name]) for c in table.primary_key.columns])
    return result


def build_pair(crm):
    """Two records of one person, each with its own activities, deal, task, consents and
    external id; returns (older, newer)."""
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    crm.custom_fields.define("contact", "shoe", "text")
    crm.custom_fields.define("contact", "team", "text")
    older = crm.intake.submit(
        {"email": "ada@example.com", "first_name": "Ada", "tags": ["newsletter"], "source": {"channel": "web"}, "custom": {"shoe": "38"}},
        external_ids={"shop": "C-1"},
    ).contact
    newer = crm.intake.submit(
        {"email": "ada.lovelace@example.com", "first_name": "Adelaide", "last_name": "Lovelace", "phone": "+14155550001",
         "lifecycle_stage": "customer", "score": 40, "tags": ["vip"], "source": {"channel": "import"}, "custom": {"shoe": "39", "team": "red"}},
        external_ids={"crm-old": "77"},
    ).contact
    for contact in (older, newer):
        crm.activities.log({"kind": "note", "contact_id": contact.id, "subject": f"about {contact.id}"})
        crm.deals.create({"title": f"deal of {contact.id}", "pipeline": "Sales", "amount": "100", "contact_id": contact.id})
        crm.tasks.create({"title": f"call {contact.id}", "contact_id": contact.id})
    crm.consents.record({"contact_id": older.id, "channel": "email", "purpose": "marketing", "status": "granted", "source": "webform"})
    crm.consents.record({"contact_id": newer.id, "channel": "email", "purpose": "marketing", "status": "withdrawn", "source": "unsubscribe"})
    crm.consents.record({"contact_id": newer.id, "channel": "sms", "purpose": "marketing", "status": "granted"})
    crm.consents.record({"contact_id": older.id, "channel": "email", "purpose": "news", "status": "granted"})
    crm.consents.record({"contact_id": newer.id, "channel": "email", "purpose": "news", "status": "granted"})
    return older, newer


# --- the round trip, on every backend ------------------------------------------------------


def test_merge_then_undo_restores_both_records_links_and_consents_exactly(any_crm, events):
    crm = any_crm
    older, newer = build_pair(crm)
    before = rows_touching(crm, older.id, newer.id)

    result = crm.merges.merge(older.id, newer.id, actor="u-1")

    survivor = result.survivor
    assert (survivor.id, result.duplicate_id) == (older.id, newer.id)  # the older record survives by default
    assert crm.contacts.find(newer.id) is None
    merged = rows_touching(crm, older.id, newer.id)
    assert {r["id"] for r in merged["contacts"]} == {older.id}
    for table in ("activities", "deals", "tasks"):
        assert len(merged[table]) == 2 and {r["contact_id"] for r in merged[table]} == {older.id}
    assert {(r["system"], r["value"], r["contact_id"]) for r in merged["external_ids"]} == {
        ("shop", "C-1", older.id), ("crm-old", "77", older.id), ("merged_email", "ada.lovelace@example.com", older.id),
    }
    assert result.relinked == {"activities.contact_id": 1, "consents.contact_id": 3, "deals.contact_id": 1,
                               "external_ids.contact_id": 1, "tasks.contact_id": 1}
    assert (survivor.first_name, survivor.last_name, survivor.email, survivor.phone) == ("Adelaide", "Lovelace", "ada@example.com", "+14155550001")
    assert survivor.lifecycle_stage is LifecycleStage.CUSTOMER and survivor.score == 40
    assert survivor.tags == ["newsletter", "vip"] and survivor.custom == {"shoe": "38", "team": "red"}
    assert survivor.source.channel == "web"
    assert crm.contacts.get(older.id) == survivor
    assert crm.consents.current(older.id, "email", "marketing") == "withdrawn"
    assert crm.consents.current(older.id, "sms", "marketing") == "withdrawn"
    assert crm.consents.current(older.id, "email", "news") == "granted"
    record = crm.merges.get(result.merge_id)
    assert (record.survivor_id, record.duplicate_id, record.actor, record.undone_at) == (older.id, newer.id, "u-1", None)
    assert record.snapshot["duplicate"]["email"] == "ada.lovelace@example.com"
    merged_events = [e for e in events.events if e.type == "contact.merged"]
    assert [(e.subject_id, e.data["merge_id"], e.actor) for e in merged_events] == [(older.id, result.merge_id, "u-1")]

    undone = crm.merges.undo(result.merge_id, actor="u-2")

    assert not undone.forced
    assert rows_touching(crm, older.id, newer.id) == before
    record = crm.merges.get(result.merge_id)
    assert record.undone_at is not None and record.undone_by == "u-2"
    assert [e.subject_id for e in events.events if e.type == "contact.merge_undone"] == [older.id]
    with pytest.raises(MergeError, match="already undone"):
        crm.merges.undo(result.merge_id)


# --- survivorship rules (pure) ------------------------------------------------------------


def contact(**fields):
    fields.setdefault("created_at", T0)
    fields.setdefault("updated_at", fields["created_at"])
    return Contact(**fields)


def test_default_rules_keep_the_most_complete_identity_and_combine_the_rest():
    a = contact(first_name="J.", last_name="Doe", email="j@example.com", address=Address(city="Oslo"), score=3,
                lifecycle_stage=LifecycleStage.CHURNED, tags=["a", "b"], custom={"x": 1, "y": None}, source=Attribution(channel="web"))
    b = contact(first_name="John", email="john.doe@example.com", phone="+14155550002", address=Address(street="Main 1", city="Bergen"),
                score=7, lifecycle_stage=LifecycleStage.OPPORTUNITY, tags=["b", "c"], custom={"x": 2, "y": 5, "z": 9},
                source=Attribution(channel="import"), created_at=T0 + timedelta(days=1), birth_date=date(1990, 5, 1))
    res = resolve(a, b, Side.A, parse_rules(None))
    v, d = res.values, res.decisions
    assert (v["first_name"], d["first_name"].chosen) == ("John", "b")  # longer name is more complete
    assert (v["last_name"], d["last_name"].chosen) == ("Doe", "a")  # non-empty beats empty
    assert (v["email"], d["email"].chosen) == ("j@example.com", "a")  # length means nothing: the survivor's
    assert v["phone"] == "+14155550002" and v["birth_date"] == date(1990, 5, 1)
    assert v["address"] == Address(street="Main 1", city="Bergen")  # taken whole, never mixed
    assert v["lifecycle_stage"] is LifecycleStage.CHURNED  # a former customer outranks an opportunity
    assert v["score"] == 7 and v["tags"] == ["a", "b", "c"]
    assert v["custom"] == {"x": 1, "y": 5, "z": 9}  # survivor wins conflicts, empty values do not
    assert v["source"] == Attribution(channel="web")  # first touch: the older record's
    assert v["created_at"] == T0


def test_lifecycle_customer_outranks_churned_and_ties_go_to_the_survivor():
    a = contact(email="a@example.com", lifecycle_stage=LifecycleStage.CHURNED, first_name="Ann")
    b = contact(email="b@example.com", lifecycle_stage=LifecycleStage.CUSTOMER, first_name="Bea")
    res = resolve(a, b, Side.B, parse_rules(None))
    assert res.values["lifecycle_stage"] is LifecycleStage.CUSTOMER
    assert (res.values["first_name"], res.values["email"]) == ("Bea", "b@example.com")


def test_most_recent_takes_the_last_updated_records_value_unless_it_is_empty():
    a = contact(first_name="Ann", job_title="CEO", updated_at=T0 + timedelta(days=5))
    b = contact(first_name="Annabel", job_title=None, updated_at=T0 + timedelta(days=1))
    res = resolve(a, b, Side.B, parse_rules({"first_name": "most_recent", "job_title": "most_recent"}))
    assert (res.values["first_name"], res.decisions["first_name"].chosen) == ("Ann", "a")
    b.job_title, a.job_title = "CTO", None
    res = resolve(a, b, Side.B, parse_rules({"job_title": "most_recent"}))
    assert (res.values["job_title"], res.decisions["job_title"].chosen) == ("CTO", "b")


def test_prefer_source_and_its_fallback_to_the_default_rule():
    a = contact(first_name="Ann", source=Attribution(channel="web"))
    b = contact(first_name="Annabel", source=Attribution(channel="shop"))
    assert resolve(a, b, Side.B, parse_rules({"first_name": "prefer_source:web"})).values["first_name"] == "Ann"
    assert resolve(a, b, Side.A, parse_rules({"first_name": "prefer_source:shop"})).values["first_name"] == "Annabel"
    res = resolve(a, b, Side.A, parse_rules({"first_name": "prefer_source:fax"}))  # neither: most complete
    assert (res.values["first_name"], res.decisions["first_name"].rule) == ("Annabel", "prefer_source:fax")


def test_keep_a_and_keep_b_take_that_value_even_when_empty():
    a = contact(first_name="Ann", phone="+14155550003", tags=["x"])
    b = contact(first_name="Bea", phone=None, tags=["y"])
    res = resolve(a, b, Side.A, parse_rules({"first_name": "keep_b", "phone": "keep_b", "tags": "keep_a"}))
    assert (res.values["first_name"], res.values["phone"], res.values["tags"]) == ("Bea", None, ["x"])
    assert res.decisions["phone"].chosen == "b"


def test_oldest_rule_and_default_survivor():
    older = contact(first_name="Old", created_at=T0)
    newer = contact(first_name="New", email="n@example.com", phone="+14155550004", created_at=T0 + timedelta(hours=1))
    assert choose_survivor(newer, older) is Side.B
    assert resolve(older, newer, Side.B, parse_rules({"first_name": "oldest"})).values["first_name"] == "Old"
    twin = contact(first_name="Twin", email="t@example.com", created_at=T0)
    assert choose_survivor(older, twin) is Side.B  # same age: the more complete one


def test_bad_rules_are_all_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        parse_rules({"emial": "keep_a", "email": "newest", "phone": "union", "first_name": "prefer_source:", "score": "keep_a:x"})
    assert sorted((i.field, i.code) for i in caught.value.issues) == [
        ("rules.email", "unknown_rule"), ("rules.emial", "unknown_field"), ("rules.first_name", "missing_source"),
        ("rules.phone", "rule_not_applicable"), ("rules.score", "unexpected_argument"),
    ]
    assert set(parse_rules({})) == set(DEFAULT_RULES)


def test_a_merge_that_would_leave_no_identity_is_refused():
    a, b = contact(email="a@example.com"), contact(phone="+14155550005")
    with pytest.raises(ValidationFailed, match="none of email"):
        resolve(a, b, Side.A, parse_rules({"email": "keep_b", "phone": "keep_a"}))


def test_consent_conflicts_are_most_restrictive_and_no_record_counts_as_not_granted():
    from crmkit.domain import Consent

    def entry(contact_id, channel, status, minutes):
        return Consent(contact_id=contact_id, channel=channel, purpose="p", status=status, recorded_at=T0 + timedelta(minutes=minutes))

    survivor = current_states([entry("s", "email", "granted", 1), entry("s", "email", "withdrawn", 2), entry("s", "sms", "granted", 0),
                               entry("s", "post", "granted", 0), entry("s", "fax", "withdrawn", 0)])
    duplicate = current_states([entry("d", "email", "granted", 5), entry("d", "sms", "granted", 0), entry("d", "phone", "withdrawn", 0),
                                entry("d", "fax", "withdrawn", 0)])
    found = {(c.channel, c.survivor_status, c.duplicate_status, c.resolved) for c in conflicts(survivor, duplicate)}
    assert found == {("email", "withdrawn", "granted", "withdrawn"), ("post", "granted", None, "withdrawn"), ("phone", None, "withdrawn", "withdrawn")}


# --- the service on SQLite ---------------------------------------------------------------


def test_prefer_and_keep_rules_through_the_service_and_lost_identifiers_still_match(crm):
    older, newer = build_pair(crm)
    result = crm.merges.merge(older.id, newer.id, prefer="b", rules={"email": "keep_a", "first_name": "keep_a"})
    survivor = result.survivor
    assert (survivor.id, result.duplicate_id) == (newer.id, older.id)
    assert (survivor.email, survivor.first_name, survivor.last_name) == ("ada@example.com", "Ada", "Lovelace")
    assert result.merged_identifiers == [("merged_email", "ada.lovelace@example.com")]
    assert result.decisions["email"].chosen == "a"
    # Intake of the address that lost finds the survivor instead of creating a new contact.
    again = crm.intake.submit({"email": "ada.lovelace@example.com", "job_title": "Analyst"})
    assert (again.record.outcome, again.contact.id) == ("updated", newer.id)
    # The external id of the duplicate now names the survivor.
    assert crm.intake.submit({"first_name": "Ada"}, external_ids={"shop": "C-1"}).contact.id == newer.id


def test_a_live_contact_with_the_address_wins_over_a_merged_alias(crm):
    a = crm.contacts.create({"email": "one@example.com"})
    b = crm.contacts.create({"email": "two@example.com"})
    crm.merges.merge(a.id, b.id)
    c = crm.contacts.create({"email": "two@example.com"})  # someone created the address anew
    assert crm.intake.submit({"email": "two@example.com", "first_name": "Tess"}).contact.id == c.id


def test_consent_conflicts_are_logged_with_ledger_entries_naming_the_merge(crm):
    older, newer = build_pair(crm)
    # A grant recorded with a future time must not outrank the merge's decision.
    crm.consents.record({"contact_id": newer.id, "channel": "sms", "purpose": "marketing", "status": "granted",
                         "recorded_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()})
    result = crm.merges.merge(older.id, newer.id)
    assert [(c.channel, c.purpose, c.survivor_status, c.duplicate_status, c.resolved) for c in result.consent_conflicts] == [
        ("email", "marketing", "granted", "withdrawn", "withdrawn"), ("sms", "marketing", None, "granted", "withdrawn"),
    ]
    history = crm.consents.history(older.id)
    added = [e for e in history if e.source == "merge"]
    assert [(e.channel, e.status) for e in added] == [("email", "withdrawn"), ("sms", "withdrawn")]
    assert all(e.evidence["merge_id"] == result.merge_id for e in added)
    assert added[1].evidence["survivor"] == {"contact_id": older.id, "status": None}
    assert added[1].evidence["duplicate"] == {"contact_id": newer.id, "status": "granted"}
    assert crm.consents.current(older.id, "sms", "marketing") == "withdrawn"
    assert len(history) == 6 + 2  # both ledgers kept whole, plus the merge's entries
    stored = crm.merges.get(result.merge_id).consent_conflicts
    assert [(c["channel"], c["resolved"]) for c in stored] == [("email", "withdrawn"), ("sms", "withdrawn")]


def test_bad_merges_are_refused_with_clear_errors(crm):
    a = crm.contacts.create({"email": "a@example.com"})
    b = crm.contacts.create({"email": "b@example.com"})
    with pytest.raises(ValidationFailed) as caught:
        crm.merges.merge(a.id, a.id, prefer="c", rules={"nope": "keep_a"})
    assert sorted((i.field, i.code) for i in caught.value.issues) == [("b", "same_contact"), ("prefer", "invalid_choice"), ("rules.nope", "unknown_field")]
    with pytest.raises(NotFound, match="'missing' not found"):
        crm.merges.merge(a.id, "missing")
    crm.merges.merge(a.id, b.id)
    with pytest.raises(MergedAway, match=f"was merged into '{a.id}'"):
        crm.merges.merge(b.id, a.id)
    assert crm.merges.merged_into(b.id).survivor_id == a.id and crm.merges.resolve(b.id) == a.id
    with pytest.raises(NotFound, match="merge 'nope' not found"):
        crm.merges.undo("nope")


def test_undo_refuses_when_the_survivor_was_merged_away_or_absorbed_more(crm):
    a, b, c = (crm.contacts.create({"email": f"{n}@example.com"}) for n in "abc")
    first = crm.merges.merge(a.id, b.id, prefer="a")
    second = crm.merges.merge(c.id, a.id, prefer="a")  # the survivor of the first is merged away
    with pytest.raises(MergeError, match=f"was merged into {c.id} by merge {second.merge_id}; undo that merge first"):
        crm.merges.undo(first.merge_id)
    crm.merges.undo(second.merge_id)
    d = crm.contacts.create({"email": "d@example.com"})
    third = crm.merges.merge(a.id, d.id, prefer="a")
    with pytest.raises(MergeError, match=f"later merges into {a.id} are still in place \\({third.merge_id}\\)"):
        crm.merges.undo(first.merge_id)
    crm.merges.undo(third.merge_id)
    crm.merges.undo(first.merge_id)
    assert {x.id for x in crm.contacts.list()} == {a.id, b.id, c.id, d.id}


def test_undo_refuses_after_survivor_edits_unless_forced(crm):
    older, newer = build_pair(crm)
    before = rows_touching(crm, older.id, newer.id)
    result = crm.merges.merge(older.id, newer.id)
    crm.contacts.update(older.id, {"job_title": "Countess"})
    with pytest.raises(MergeError, match="changed after the merge"):
        crm.merges.undo(result.merge_id)
    undone = crm.merges.undo(result.merge_id, force=True)
    assert undone.forced
    after = rows_touching(crm, older.id, newer.id)
    survivor_now = after["contacts"][[r["id"] for r in after["contacts"]].index(older.id)]
    survivor_then = before["contacts"][[r["id"] for r in before["contacts"]].index(older.id)]
    assert survivor_now["job_title"] is None and survivor_now["version"] > survivor_then["version"]
    assert {k: v for k, v in survivor_now.items() if k not in ("version", "updated_at")} == {
        k: v for k, v in survivor_then.items() if k not in ("version", "updated_at")}
    assert {k: v for k, v in after.items() if k != "contacts"} == {k: v for k, v in before.items() if k != "contacts"}


def test_undo_refuses_when_consent_was_recorded_after_the_merge(crm):
    older, newer = build_pair(crm)
    result = crm.merges.merge(older.id, newer.id)
    crm.consents.record({"contact_id": older.id, "channel": "post", "purpose": "marketing", "status": "withdrawn"})
    with pytest.raises(MergeError, match="1 consent entry was recorded .* after the merge"):
        crm.merges.undo(result.merge_id, force=True)


def test_rows_linked_after_the_merge_stay_with_the_survivor_and_changed_rows_keep_their_changes(crm):
    older, newer = build_pair(crm)
    result = crm.merges.merge(older.id, newer.id)
    later = crm.activities.log({"kind": "call", "contact_id": older.id})
    moved_deal = next(d for d in crm.deals.list(contact_id=older.id) if d.title == f"deal of {newer.id}")
    crm.deals.update(moved_deal.id, {"title": "renamed"})
    crm.merges.undo(result.merge_id)
    assert crm.activities.get(later.id).contact_id == older.id
    deal = crm.deals.get(moved_deal.id)
    assert (deal.contact_id, deal.title) == (newer.id, "renamed") and deal.version == moved_deal.version + 2


def test_a_failure_mid_merge_or_mid_undo_leaves_nothing_changed(crm, monkeypatch):
    older, newer = build_pair(crm)
    before = rows_touching(crm, older.id, newer.id)
    outbox = crm.backend.metadata.tables["outbox_events"]
    with crm.backend.connect() as conn:
        events_before = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(merge_service.MergeService, "_settle_consents", boom)  # after rows moved and the duplicate deleted
    with pytest.raises(RuntimeError, match="disk on fire"):
        crm.merges.merge(older.id, newer.id)
    assert rows_touching(crm, older.id, newer.id) == before
    assert crm.merges.list() == []
    with crm.backend.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == events_before

    monkeypatch.undo()
    result = crm.merges.merge(older.id, newer.id)
    merged = rows_touching(crm, older.id, newer.id)
    monkeypatch.setattr(merge_service.relink, "move_back", boom)  # after the duplicate is re-inserted
    with pytest.raises(RuntimeError, match="disk on fire"):
        crm.merges.undo(result.merge_id)
    assert rows_touching(crm, older.id, newer.id) == merged
    assert crm.merges.get(result.merge_id).undone_at is None


class LoyaltyPlugin:
    """A plugin keeping rows about contacts in its own tables (created from the models)."""

    crmkit_plugin_name = "test-loyalty"

    @hookimpl
    def crmkit_register_tables(self, metadata, register):
        register(sa.Table("loyalty_points", metadata, sa.Column("id", sa.Integer, primary_key=True),
                          sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
                          sa.Column("points", sa.Integer, nullable=False)))
        register(sa.Table("loyalty_cards", metadata, sa.Column("number", sa.String(16), primary_key=True),
                          sa.Column("holder_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, unique=True)))


def test_plugin_rows_follow_the_merge_and_the_undo_and_their_constraints_are_respected(crm_factory):
    crm = crm_factory(plugins=[LoyaltyPlugin()])
    a, b, c = (crm.contacts.create({"email": f"{n}@example.com"}) for n in "abc")
    points, cards = crm.backend.metadata.tables["loyalty_points"], crm.backend.metadata.tables["loyalty_cards"]
    with crm.backend.engine.begin() as conn:
        conn.execute(sa.insert(points), [{"id": 1, "contact_id": a.id, "points": 5}, {"id": 2, "contact_id": b.id, "points": 7}])
        conn.execute(sa.insert(cards), [{"number": "A", "holder_id": a.id}, {"number": "C", "holder_id": c.id}])

    def owners():
        with crm.backend.connect() as conn:
            return (sorted(conn.execute(sa.select(points.c.id, points.c.contact_id))), sorted(conn.execute(sa.select(cards.c.number, cards.c.holder_id))))

    start = owners()
    result = crm.merges.merge(a.id, b.id)
    assert owners()[0] == [(1, a.id), (2, a.id)] and result.relinked["loyalty_points.contact_id"] == 1
    crm.merges.undo(result.merge_id)
    assert owners() == start
    # Both have a card and a contact may hold one: the merge cannot settle that itself.
    with pytest.raises(MergeError, match="violates a database constraint"):
        crm.merges.merge(a.id, c.id)
    assert owners() == start and crm.contacts.find(c.id) is not None


def test_erasure_scrubs_merge_snapshots_and_aliases_and_blocks_undo(crm):
    older, newer = build_pair(crm)
    result = crm.merges.merge(older.id, newer.id)
    exported = crm.privacy.export(older.id)
    assert [m["id"] for m in exported["merges"]] == [result.merge_id]
    assert exported["merges"][0]["snapshot"]["duplicate"]["email"] == "ada.lovelace@example.com"
    assert exported["merged_identifiers"] == [["merged_email", "ada.lovelace@example.com"]]
    crm.privacy.erase(older.id)
    assert crm.merges.get(result.merge_id).snapshot == {"erased": True}
    assert crm.intake.submit({"email": "ada.lovelace@example.com"}).record.outcome == "created"
    with pytest.raises(MergeError, match="personal data it kept was erased"):
        crm.merges.undo(result.merge_id)


# --- CLI ---------------------------------------------------------------------------------


def test_cli_merge_list_and_undo(crm, cli):
    older, newer = build_pair(crm)
    merged = cli.json("dedupe", "merge", older.id, newer.id, "--prefer", "B", "--rule", "email=keep_a")
    assert (merged["survivor"]["id"], merged["duplicate_id"], merged["survivor"]["email"]) == (newer.id, older.id, "ada@example.com")
    assert [c["channel"] for c in merged["consent_conflicts"]] == ["email", "sms"]
    listed = cli.json("dedupe", "merges", "--contact", older.id)
    assert [(m["id"], m["undone_at"]) for m in listed] == [(merged["merge_id"], None)] and "snapshot" not in listed[0]
    human = cli("dedupe", "merges")
    assert human.exit_code == 0 and merged["merge_id"] in human.output
    undone = cli.json("dedupe", "undo", merged["merge_id"])
    assert (undone["duplicate"]["id"], undone["forced"]) == (older.id, False)
    again = cli("dedupe", "undo", merged["merge_id"])
    assert again.exit_code == 1 and "already undone" in again.output
    assert cli.json("dedupe", "merges", "--active") == []


def test_cli_merge_prints_a_summary_and_rejects_bad_rules(crm, cli):
    older, newer = build_pair(crm)
    bad = cli("dedupe", "merge", older.id, newer.id, "--rule", "email=newest")
    assert bad.exit_code == 1 and "rules.email" in bad.output and "unknown_rule" in bad.output
    assert cli("dedupe", "merge", older.id, newer.id, "--rule", "email").exit_code == 2
    done = cli("dedupe", "merge", older.id, newer.id)
    assert done.exit_code == 0, done.output
    assert f"into {older.id}" in done.output and "consent email/marketing" in done.output and "crmkit dedupe undo" in done.output
    missing = cli("dedupe", "merge", older.id, newer.id)
    assert missing.exit_code == 1 and f"was merged into '{older.id}'" in missing.output
