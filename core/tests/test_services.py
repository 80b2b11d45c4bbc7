"""Services over a real database: validation before any write, deal moves with their history
in one transaction, the consent ledger, idempotent activities, and rejected input that
writes nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from crmkit.domain import ConsentStatus, Outcome
from crmkit.errors import ConflictError, ValidationFailed

STAGES = [("Lead", 0.1, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]


def codes(info: pytest.ExceptionInfo[ValidationFailed]) -> list[tuple[str, str]]:
    return [(i.field, i.code) for i in info.value.issues]


def event_count(crm) -> int:
    return crm.events.counts()["total"]


def test_deal_moves_record_history_and_close_and_reopen(any_crm, events):
    any_crm.pipelines.create("Sales", STAGES)
    renewals = any_crm.pipelines.create("Renewals", [("Due", 0.5), ("Renewed", 1, "won")])
    deal = any_crm.deals.create({"title": "Ütopya 🚀", "pipeline": "Sales", "amount": "1250.50", "created_at": "2024-01-01T08:00:00"})
    assert deal.created_at == datetime(2024, 1, 1, 8, tzinfo=UTC)

    won_at = datetime(2024, 2, 1, 9, 30, 0, 123456, tzinfo=UTC)
    deal, change = any_crm.deals.move(deal.id, "won", at=won_at, actor=None)
    assert (deal.status, deal.closed_at, deal.version) == (Outcome.WON, won_at, 2)
    assert any_crm.deals.get(deal.id).closed_at == won_at

    deal, _ = any_crm.deals.move(deal.id, "Lead", expected_version=2)
    stored = any_crm.deals.get(deal.id)
    assert (stored.status, stored.closed_at, stored.version) == (Outcome.OPEN, None, 3)

    deal, _ = any_crm.deals.move(deal.id, "Lost", lost_reason="too expensive")
    assert (any_crm.deals.get(deal.id).lost_reason, any_crm.deals.get(deal.id).status) == ("too expensive", Outcome.LOST)

    history = any_crm.deals.history(deal.id)
    sales = any_crm.pipelines.get("Sales")
    names = {s.id: s.name for s in sales.stages}
    assert [(names.get(h.from_stage_id), names[h.to_stage_id]) for h in history] == [
        (None, "Lead"), ("Lead", "Won"), ("Won", "Lead"), ("Lead", "Lost")]
    assert history[1].changed_at == won_at
    assert [t for t in events.types() if t.startswith("deal.")] == [
        "deal.created", "deal.stage_changed", "deal.won", "deal.stage_changed", "deal.stage_changed", "deal.lost"]

    # Refused moves write nothing.
    before = event_count(any_crm)
    with pytest.raises(ValidationFailed) as info:
        any_crm.deals.move(deal.id, "Negotiation")
    assert codes(info) == [("stage", "unknown_stage")]
    with pytest.raises(ValidationFailed) as info:
        any_crm.deals.move(deal.id, "Lost")
    assert codes(info) == [("stage", "same_stage")]
    with pytest.raises(ValidationFailed) as info:
        any_crm.deals.move(deal.id, "Renewed", pipeline="Renewals")
    assert codes(info) == [("stage", "pipeline_change")]
    with pytest.raises(ConflictError):
        any_crm.deals.move(deal.id, "Lead", expected_version=1)
    with pytest.raises(ValidationFailed) as info:
        any_crm.deals.move(deal.id, "Lead", at="next tuesday")
    assert codes(info) == [("at", "invalid_datetime")]
    assert any_crm.deals.get(deal.id).version == 4 and event_count(any_crm) == before

    moved, _ = any_crm.deals.move(deal.id, "Renewed", pipeline="Renewals", allow_pipeline_change=True)
    assert (moved.pipeline_id, moved.status) == (renewals.id, Outcome.WON)


def test_a_move_and_its_stage_change_commit_together(crm):
    crm.pipelines.create("Sales", STAGES)
    deal = crm.deals.create({"title": "Atomic", "pipeline": "Sales"})
    before = event_count(crm)

    with pytest.raises(RuntimeError), crm.uow() as uow:
        moved, change = crm.deals.move_in(uow, deal.id, "Won")
        assert uow.stage_changes.find(change.id) is not None  # written, inside the transaction
        raise RuntimeError("forced failure after the move")

    stored = crm.deals.get(deal.id)
    assert (stored.stage_id, stored.status, stored.closed_at, stored.version) == (deal.stage_id, Outcome.OPEN, None, 1)
    assert [h.to_stage_id for h in crm.deals.history(deal.id)] == [deal.stage_id]
    assert event_count(crm) == before


def test_invalid_input_writes_nothing(crm):
    crm.pipelines.create("Sales", STAGES)
    before = event_count(crm)

    with pytest.raises(ValidationFailed) as info:
        crm.pipelines.create("Broken", [("Lead", "lots"), ("Won", 1, "won")])
    assert codes(info) == [("stages[0].probability", "invalid_number")]
    with pytest.raises(ValidationFailed) as info:
        crm.pipelines.create("Sales", [("Lead", 0.2)])
    assert codes(info) == [("name", "duplicate")]
    with pytest.raises(ValidationFailed) as info:
        crm.deals.create({"title": "", "amount": "-5", "contact_id": "nobody"})
    assert sorted(codes(info)) == [("amount", "out_of_range"), ("pipeline", "required"), ("title", "required")]
    with pytest.raises(ValidationFailed) as info:
        crm.deals.create({"title": "x", "pipeline": "Sales", "contact_id": "nobody", "amount": "0.00001"})
    assert codes(info) == [("amount", "too_precise")]
    with pytest.raises(ValidationFailed) as info:
        crm.deals.create({"title": "x", "pipeline": "Sales", "contact_id": "nobody", "created_at": "soon"})
    assert codes(info) == [("created_at", "invalid_datetime")]
    with pytest.raises(ValidationFailed) as info:
        crm.deals.create({"title": "x", "pipeline": "Sales", "contact_id": "nobody"})
    assert codes(info) == [("contact_id", "not_found")]
    with pytest.raises(ValidationFailed) as info:
        crm.contacts.create({"first_name": "Ada", "id": "mine", "shoe_size": 42, "custom": {"colour": "red"}})
    assert sorted(codes(info)) == [("custom.colour", "unknown_field"), ("id", "read_only"), ("shoe_size", "unknown_field")]

    assert crm.deals.count() == 0 and crm.contacts.count() == 0
    assert len(crm.pipelines.list()) == 1
    assert event_count(crm) == before


def test_a_rejected_intake_record_writes_nothing(crm, events):
    with pytest.raises(ValidationFailed) as info:
        crm.intake.submit({"email": "ada@", "phone": "+98 912", "first_name": "Ada"})
    assert sorted(codes(info)) == [("email", "invalid_email"), ("phone", "invalid_phone")]
    assert crm.contacts.count() == 0 and event_count(crm) == 0 and events.events == []

    records = [crm.intake.record(data) for data in ({"email": "a@example.com"}, {"email": "broken@"}, {"first_name": "محمد"})]
    list(crm.intake.submit_many(records))
    assert [r.outcome for r in records] == ["created", "rejected", "created"]
    assert records[1].issues[0].field == "email" and records[1].contact_id is None
    assert crm.contacts.count() == 2 and events.types() == ["contact.created", "contact.created"]


def test_custom_fields_are_enforced_on_writes(crm):
    crm.custom_fields.define("contact", "budget", "number", required=True)
    crm.custom_fields.define("contact", "tier", "choice", choices=["gold", "silver"])
    with pytest.raises(ValidationFailed) as info:
        crm.custom_fields.define("contact", "budget", "text")
    assert codes(info) == [("name", "duplicate")]
    with pytest.raises(ValidationFailed) as info:
        crm.custom_fields.define("contact", "size", "colour")
    assert codes(info) == [("type", "invalid_choice")]

    with pytest.raises(ValidationFailed) as info:
        crm.contacts.create({"first_name": "Ada", "custom": {"tier": "bronze"}})
    assert sorted(codes(info)) == [("custom.budget", "required"), ("custom.tier", "invalid_choice")]
    contact = crm.contacts.create({"first_name": "Ada", "custom": {"budget": "1500", "tier": "gold"}})
    assert crm.contacts.get(contact.id).custom == {"budget": 1500, "tier": "gold"}

    # Python values are fine too: parsed to JSON by the field's type.
    crm.custom_fields.define("contact", "renewal", "date")
    typed = crm.contacts.create({"first_name": "Grace", "custom": {"budget": Decimal("12.50"), "renewal": date(2025, 1, 31)}})
    assert crm.contacts.get(typed.id).custom == {"budget": 12.5, "renewal": "2025-01-31"}

    updated = crm.contacts.update(contact.id, {"custom": {"budget": 2000.5}}, expected_version=1)
    assert updated.custom == {"budget": 2000.5, "tier": "gold"} and updated.version == 2  # named keys change, others stay
    with pytest.raises(ConflictError):
        crm.contacts.update(contact.id, {"first_name": "Grace"}, expected_version=1)
    with pytest.raises(ValidationFailed) as info:
        crm.contacts.update(contact.id, {"version": 9})
    assert codes(info) == [("version", "read_only")]
    assert crm.contacts.get(contact.id).version == 2


def test_consent_ledger_current_state_is_the_latest_entry(any_crm):
    contact = any_crm.contacts.create({"email": "ada@example.com"})
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    assert any_crm.consents.current(contact.id, "email", "marketing") is None

    any_crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": "granted",
                             "source": "webform", "evidence": {"ip": "192.0.2.1"}, "recorded_at": t0})
    any_crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": "withdrawn",
                             "recorded_at": t0 + timedelta(microseconds=1)})
    # Entered later but backdated (an import of old evidence): it does not become current.
    any_crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": "granted",
                             "recorded_at": t0 - timedelta(days=1)})
    any_crm.consents.record({"contact_id": contact.id, "channel": "sms", "purpose": "marketing", "status": "GRANTED"})

    assert any_crm.consents.current(contact.id, "email", "marketing") == ConsentStatus.WITHDRAWN
    assert any_crm.consents.current(contact.id, "sms", "marketing") == ConsentStatus.GRANTED
    assert any_crm.consents.current(contact.id, "email", "billing") is None
    history = any_crm.consents.history(contact.id)
    assert [(c.channel, c.status) for c in history][:3] == [("email", "granted"), ("email", "granted"), ("email", "withdrawn")]
    assert history[1].evidence == {"ip": "192.0.2.1"} and history[1].source == "webform"

    with pytest.raises(ValidationFailed) as info:
        any_crm.consents.record({"contact_id": "nobody", "channel": "email", "purpose": "marketing", "status": "maybe"})
    assert sorted(codes(info)) == [("status", "invalid_choice")]
    with pytest.raises(ValidationFailed) as info:
        any_crm.consents.record({"contact_id": "nobody", "channel": "email", "purpose": "marketing", "status": "granted"})
    assert codes(info) == [("contact_id", "not_found")]
    assert len(any_crm.consents.history(contact.id)) == 4


def test_activities_are_idempotent_per_channel_and_external_id(any_crm):
    contact = any_crm.contacts.create({"phone": "+989123456789"})
    message = {"kind": "sms.received", "contact_id": contact.id, "channel": "sms", "external_id": "SM123", "subject": "سلام"}

    first = any_crm.activities.log(message)
    again = any_crm.activities.log({**message, "subject": "redelivered"})
    assert again.id == first.id and again.subject == "سلام"
    other_channel = any_crm.activities.log({**message, "channel": "whatsapp"})
    assert other_channel.id != first.id
    assert any_crm.activities.count() == 2
    assert any_crm.events.counts()["total"] == 1 + 2  # contact.created, two activity.logged

    # A provider redelivering a webhook at the same moment still gets it logged once, and
    # every delivery is answered with that activity (not a unique-constraint error).
    for round_ in range(5):
        barrier = threading.Barrier(3)

        def deliver(_: int, external_id: str = f"SM-race-{round_}", barrier: threading.Barrier = barrier):
            barrier.wait()
            return any_crm.activities.log({**message, "external_id": external_id})

        with ThreadPoolExecutor(3) as pool:
            delivered = list(pool.map(deliver, range(3)))
        assert len({a.id for a in delivered}) == 1
        assert any_crm.activities.count(external_id=f"SM-race-{round_}") == 1

    with pytest.raises(ValidationFailed) as info:
        any_crm.activities.log({"kind": "Phone Call", "contact_id": "nobody"})
    assert codes(info) == [("kind", "invalid_kind")]
    with pytest.raises(ValidationFailed) as info:
        any_crm.activities.update(first.id, {"subject": "edited"})
    assert codes(info) == [("id", "append_only")]
