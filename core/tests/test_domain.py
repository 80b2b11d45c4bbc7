"""The domain without a database: field parsing (every issue names its field and code),
custom fields, pipelines and stage moves, money."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from crmkit import domain
from crmkit.domain import fields as f
from crmkit.domain.custom_fields import NUMBER_MAX, CustomFieldDefinition, validate_custom
from crmkit.domain.sales import build_pipeline
from crmkit.domain.values import MONEY_MAX, Outcome, parse_money
from crmkit.errors import ValidationFailed
from crmkit.storage.sql.types import Money
from hypothesis import given
from hypothesis import strategies as st


def issues(call, *args, **kwargs) -> list[tuple[str, str]]:
    """``(field, code)`` of every issue ``call`` raises (it must raise)."""
    with pytest.raises(ValidationFailed) as info:
        call(*args, **kwargs)
    assert str(info.value), "the message must not be empty"
    return [(i.field, i.code) for i in info.value.issues]


def parse_contact(data, region=None, **kwargs):
    return f.parse_input(data, domain.Contact.field_specs(region), read_only=("id", "version", "created_at", "updated_at"), **kwargs)


# --- field parsing -----------------------------------------------------------------------


def test_every_bad_field_is_reported_at_once_by_name_and_code():
    found = issues(parse_contact, {
        "email": "not-an-email", "phone": "12345", "birth_date": "1990-02-30", "score": "lots",
        "lifecycle_stage": "prospect", "address": {"country": "Iran", "zip": "1"}, "tags": [1],
        "nickname": "Ada", "id": "abc", "version": 3,
    })
    assert sorted(found) == sorted([
        ("email", "invalid_email"), ("phone", "invalid_phone"), ("birth_date", "invalid_date"), ("score", "invalid_number"),
        ("lifecycle_stage", "invalid_choice"), ("address.country", "too_long"), ("address.zip", "unknown_field"),
        ("tags", "invalid_type"), ("nickname", "unknown_field"), ("id", "read_only"), ("version", "read_only"),
    ])


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+98 912 345 6789", None, "+989123456789"),
    ("0912 345 6789", "IR", "+989123456789"),
    ("۰۹۱۲۳۴۵۶۷۸۹", "IR", "+989123456789"),  # Persian digits, as typed on an Iranian keyboard
    ("+98 21 1234 5678", None, "+982112345678"),
    ("(415) 555-0132", "US", "+14155550132"),
    ("+1 202 555 0143", None, "+12025550143"),
    ("+989123456789", "US", "+989123456789"),  # an explicit country code wins over the region
])
def test_phone_numbers_become_e164(raw, region, expected):
    assert parse_contact({"phone": raw}, region)["phone"] == expected


@pytest.mark.parametrize(("raw", "region"), [
    ("+1 555 555 0100", None),  # 555 is not a US area code
    ("555-0100", "US"),  # too short
    ("09123456789", None),  # national format needs a default region
    ("+98 912", None),
    ("call me", "US"),
])
def test_bad_phone_numbers_are_rejected_naming_the_field(raw, region):
    assert issues(parse_contact, {"phone": raw}, region) == [("phone", "invalid_phone")]


def test_emails_are_normalised_and_validated():
    assert parse_contact({"email": "  Ada.Lovelace@Example.COM "})["email"] == "ada.lovelace@example.com"
    assert parse_contact({"email": "مریم@مثال.ایران"})["email"] == "مریم@مثال.ایران"
    for bad in ("ada@", "@example.com", "ada@@example.com", "ada example@example.com"):
        assert issues(parse_contact, {"email": bad}) == [("email", "invalid_email")]
    assert issues(parse_contact, {"email": 42}) == [("email", "invalid_type")]


def test_dates_datetimes_and_decimals():
    specs = [f.FieldSpec("day", f.date_), f.FieldSpec("at", f.datetime_), f.FieldSpec("amount", f.money(minimum=0))]
    clean = f.parse_input({"day": "2024-02-29", "at": "2024-03-20T10:00:00+03:30", "amount": "1250.50"}, specs)
    assert clean == {"day": date(2024, 2, 29), "at": datetime(2024, 3, 20, 6, 30, tzinfo=UTC), "amount": Decimal("1250.50")}
    assert f.parse_input({"at": "2024-03-20T10:00:00"}, specs)["at"].tzinfo is UTC  # naive input means UTC
    assert f.parse_input({"amount": 19.99}, specs)["amount"] == Decimal("19.99")  # a JSON number keeps its cents
    assert f.parse_input({"amount": "1E+3"}, specs)["amount"].as_tuple().exponent == 0

    assert issues(f.parse_input, {"day": "2023-02-29", "at": "tomorrow", "amount": "abc"}, specs) == [
        ("day", "invalid_date"), ("at", "invalid_datetime"), ("amount", "invalid_number")]
    for amount, code in [("NaN", "invalid_number"), ("Infinity", "invalid_number"), ("-1", "out_of_range"),
                         ("0.00001", "too_precise"), ("1e30", "out_of_range"), ("1e99999999", "out_of_range"), (True, "invalid_number")]:
        assert issues(f.parse_input, {"amount": amount}, specs) == [("amount", code)], amount


def test_required_fields_partial_updates_and_empty_values():
    specs = domain.Deal.field_specs()
    assert issues(f.parse_input, {"amount": "5"}, specs) == [("title", "required")]
    assert issues(f.parse_input, {"title": "   "}, specs) == [("title", "required")]
    assert f.parse_input({"amount": "5"}, specs, partial=True) == {"amount": Decimal("5")}
    assert issues(f.parse_input, {"title": ""}, specs, partial=True) == [("title", "required")]
    assert issues(f.parse_input, {"title": "x" * 256}, specs) == [("title", "too_long")]
    assert issues(f.parse_input, {"title": "ok", "currency": "dollars"}, specs) == [("currency", "invalid_currency")]


@given(st.lists(st.text(max_size=70), max_size=8) | st.text(max_size=200))
def test_tags_parse_to_a_stable_clean_list(raw):
    try:
        parsed = f.tags(raw, "tags")
    except ValidationFailed as exc:
        assert [i.field for i in exc.issues] == ["tags"]
        return
    assert all(tag and tag == tag.strip().lower() and len(tag) <= 64 for tag in parsed)
    assert len(set(parsed)) == len(parsed)
    assert f.tags(parsed, "tags") == parsed  # parsing what was stored changes nothing


# --- money --------------------------------------------------------------------------------


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_money_is_stored_exactly_or_refused(value):
    """Any decimal either survives storage unchanged or is rejected naming the field, never
    rounded (the old column type rounded 0.00015 to 0.0002 and overflowed past 9.2e14)."""
    money = Money()
    try:
        clean = parse_money(value, "amount")
    except ValidationFailed as exc:
        assert [(i.field, i.code) for i in exc.issues] in ([("amount", "too_precise")], [("amount", "out_of_range")])
        with pytest.raises(ValueError, match="cannot be stored exactly"):
            money.process_bind_param(value, None)
        return
    assert clean == value
    assert money.process_result_value(money.process_bind_param(clean, None), None) == value


def test_money_limits():
    money = Money()
    assert money.process_bind_param(MONEY_MAX, None) == 2**63 - 1
    assert money.process_result_value(-(2**63 - 1), None) == -MONEY_MAX
    assert str(money.process_result_value(money.process_bind_param(Decimal("1000"), None), None)) == "1000"
    assert str(money.process_result_value(1, None)) == "0.0001"


# --- custom fields ------------------------------------------------------------------------


def definitions() -> list[CustomFieldDefinition]:
    return [
        CustomFieldDefinition(entity="contact", name="nickname", type="text"),
        CustomFieldDefinition(entity="contact", name="budget", type="number", required=True),
        CustomFieldDefinition(entity="contact", name="renewal", type="date"),
        CustomFieldDefinition(entity="contact", name="vip", type="bool"),
        CustomFieldDefinition(entity="contact", name="tier", type="choice", choices=["gold", "طلایی"]),
    ]


def test_custom_fields_are_parsed_by_their_type():
    clean = validate_custom(definitions(), {"nickname": "  Ada ", "budget": "1500", "renewal": "2025-01-31", "vip": "yes", "tier": "طلایی"})
    assert clean == {"nickname": "Ada", "budget": 1500, "renewal": "2025-01-31", "vip": True, "tier": "طلایی"}
    assert validate_custom(definitions(), {"budget": 12.5, "vip": False, "tier": ""}) == {"budget": 12.5, "vip": False}


def test_custom_field_errors_name_the_custom_key():
    found = issues(validate_custom, definitions(), {
        "nickname": ["a", "list"], "renewal": "31/01/2025", "vip": "maybe", "tier": "silver", "colour": "red",
    })
    assert sorted(found) == sorted([
        ("custom.nickname", "invalid_type"), ("custom.renewal", "invalid_date"), ("custom.vip", "invalid_bool"),
        ("custom.tier", "invalid_choice"), ("custom.colour", "unknown_field"), ("custom.budget", "required"),
    ])
    assert issues(validate_custom, definitions(), {"budget": "lots"}) == [("custom.budget", "invalid_number")]
    assert issues(validate_custom, definitions(), {"budget": "1e99999999"}) == [("custom.budget", "out_of_range")]
    assert issues(validate_custom, definitions(), {"budget": NUMBER_MAX + 1}) == [("custom.budget", "out_of_range")]
    assert issues(validate_custom, definitions(), {"budget": True}) == [("custom.budget", "invalid_number")]
    assert issues(validate_custom, definitions(), {"budget": 1, "nickname": "x" * 10_001}) == [("custom.nickname", "too_long")]
    # A partial update need not repeat a required field, but cannot empty it.
    assert validate_custom(definitions(), {"vip": "no"}, partial=True) == {"vip": False}
    assert issues(validate_custom, definitions(), {"budget": ""}, partial=True) == [("custom.budget", "required")]


def test_custom_field_definitions_are_validated():
    assert sorted(issues(CustomFieldDefinition, entity="invoice", name="2fast", type="choice", label="x" * 256, choices=[" a", "b", "b", 3])) == sorted([
        ("entity", "invalid_choice"), ("name", "invalid_name"), ("label", "too_long"), ("choices[0]", "invalid_choice"),
        ("choices[3]", "invalid_choice"), ("choices", "duplicate"),
    ])
    assert issues(CustomFieldDefinition, entity="deal", name="tier", type="choice") == [("choices", "required")]


# --- pipelines ----------------------------------------------------------------------------


def test_build_pipeline_parses_loose_stages():
    pipeline = build_pipeline(" Sales ", [("Lead", "0.1"), ("Won", 1, "WON"), ("Lost", 0.0, Outcome.LOST)])
    assert pipeline.name == "Sales"
    assert [(s.name, s.position, s.probability, s.outcome) for s in pipeline.stages] == [
        ("Lead", 0, 0.1, Outcome.OPEN), ("Won", 1, 1.0, Outcome.WON), ("Lost", 2, 0.0, Outcome.LOST)]
    assert {s.pipeline_id for s in pipeline.stages} == {pipeline.id}


def test_build_pipeline_reports_every_bad_stage():
    assert issues(build_pipeline, "", []) == [("name", "required"), ("stages", "required")]
    assert issues(build_pipeline, "Sales", [
        ("Lead", "often"), ("lead", 0.5), ("", 2, "won"), ("Won", 1, "maybe"), "Lost", ("X" * 121, 0.5),
    ]) == [
        ("stages[0].probability", "invalid_number"), ("stages[1].name", "duplicate"), ("stages[2].probability", "out_of_range"),
        ("stages[2].name", "required"), ("stages[3].outcome", "invalid_choice"), ("stages[4]", "invalid_type"), ("stages[5].name", "too_long"),
    ]
    assert issues(build_pipeline, "Sales", [("Won", 1, "won"), ("Lost", 0, "lost")]) == [("stages", "no_open_stage")]
    assert issues(build_pipeline, "S" * 256, [("Lead", 0.1)]) == [("name", "too_long")]


def sales_and_renewals() -> tuple[domain.Pipeline, domain.Pipeline]:
    return (build_pipeline("Sales", [("Lead", 0.1), ("Won", 1, "won"), ("Lost", 0, "lost")]),
            build_pipeline("Renewals", [("Due", 0.5), ("Renewed", 1, "won")]))


def test_moving_a_deal_between_stages():
    sales, renewals = sales_and_renewals()
    lead, won, lost = sales.stages
    deal = domain.Deal(title="Deal", pipeline_id=sales.id, stage_id=lead.id)
    at = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)

    change = deal.move_to(sales, won, by="u1", at=at)
    assert (change.deal_id, change.from_stage_id, change.to_stage_id, change.changed_at, change.changed_by) == (deal.id, lead.id, won.id, at, "u1")
    assert (deal.stage_id, deal.status, deal.closed_at) == (won.id, Outcome.WON, at)

    deal.move_to(sales, lost, at=at + timedelta(days=1), lost_reason="price")
    assert (deal.status, deal.closed_at, deal.lost_reason) == (Outcome.LOST, at + timedelta(days=1), "price")

    deal.move_to(sales, lead)  # reopening clears what closing set
    assert (deal.status, deal.closed_at, deal.lost_reason) == (Outcome.OPEN, None, None)

    assert issues(deal.move_to, sales, lead) == [("stage", "same_stage")]
    assert issues(sales.stage_named, "Negotiation") == [("stage", "unknown_stage")]
    assert sales.stage_named("won") is won and sales.stage_named(lost.id) is lost
    assert issues(deal.move_to, renewals, renewals.stages[0]) == [("stage", "pipeline_change")]
    assert issues(deal.move_to, sales, renewals.stages[0]) == [("stage", "wrong_pipeline")]
    assert deal.stage_id == lead.id  # refused moves change nothing

    deal.move_to(renewals, renewals.stages[1], allow_pipeline_change=True)
    assert (deal.pipeline_id, deal.stage_id, deal.status) == (renewals.id, renewals.stages[1].id, Outcome.WON)


def test_json_objects_must_hold_only_json():
    specs = domain.Activity.field_specs()
    assert f.parse_input({"kind": "note", "payload": {"a": [1, "ب", None, True, {"b": 2.5}]}}, specs)["payload"]["a"][4] == {"b": 2.5}
    for bad in ({"at": datetime(2024, 1, 1, tzinfo=UTC)}, {"n": float("nan")}, {"d": Decimal("1.5")}, {1: {2, 3}}):
        assert issues(f.parse_input, {"kind": "note", "payload": bad}, specs) == [("payload", "invalid_json")], bad
    assert issues(f.parse_input, {"kind": "note", "payload": ["not", "an", "object"]}, specs) == [("payload", "invalid_type")]
