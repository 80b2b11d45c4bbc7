"""Cost estimates before a campaign: the text rendered per recipient and counted in segments,
recipients the send would skip counted apart, from Python and from ``crmkit sms estimate``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from crmkit.errors import ValidationFailed
from crmkit_sms.estimate import estimate


def people(crm: Any) -> dict[str, Any]:
    """Short and long names (a name can add a segment), a Persian name (UCS-2), no phone."""
    made = {
        "ada": crm.contacts.create({"first_name": "Ada", "phone": "+14155550100"}),
        "long": crm.contacts.create({"first_name": "Maximiliana-Josephine-Theodora", "phone": "+14155550101"}),
        "sara": crm.contacts.create({"first_name": "سارا", "phone": "+989121234567"}),
        "nophone": crm.contacts.create({"first_name": "Ned", "email": "ned@example.org"}),
    }
    for key in ("ada", "long", "sara"):
        crm.consents.record({"contact_id": made[key].id, "channel": "sms", "purpose": "marketing", "status": "granted"})
    return made


TEXT = ("Hi {{ contact.first_name }}! Our spring sale starts now: every plant, pot and tool is 20% off until Sunday. "
        "Visit shop.example/spring. Reply STOP to opt out.")


def test_each_recipient_is_rendered_then_counted(crm):
    who = people(crm)
    ids = [who[k].id for k in ("ada", "long", "sara", "nophone")]
    result = estimate(crm, ids, "0.0079", body=TEXT)
    # Ada: 136 septets (1 segment); the long name: 163 (2); سارا makes the text UCS-2: 137 units (3).
    assert result.by_encoding == {"GSM-7": {"messages": 2, "segments": 3}, "UCS-2": {"messages": 1, "segments": 3}}
    assert (result.recipients, result.segments, result.skipped) == (3, 6, {"no_phone": 1})
    assert result.cost == Decimal("0.0474") and result.as_dict()["cost"] == "0.0474"


def test_with_a_purpose_whoever_the_veto_chain_refuses_is_left_out(crm):
    who = people(crm)
    crm.messages.suppress("sms", who["long"].phone, "stop")
    crm.consents.record({"contact_id": who["sara"].id, "channel": "sms", "purpose": "marketing", "status": "withdrawn"})
    result = estimate(crm, None, Decimal("0.05"), body=TEXT, purpose="marketing")  # None: every contact with a phone
    assert (result.recipients, result.segments, result.skipped) == (1, 1, {"consent": 1, "suppressed": 1})
    assert result.cost == Decimal("0.05")
    assert estimate(crm, None, "0.05", body=TEXT).recipients == 3  # without a purpose only the address counts


def test_a_saved_template_and_a_campaign(crm):
    who = people(crm)
    campaign = crm.campaigns.create({"name": "Nowruz"})
    crm.messages.save_template("nowruz", "{{ campaign.name }} mobarak, {{ contact.first_name }}!", channel="sms")
    result = estimate(crm, [who["ada"].id, who["sara"].id], "0.01", template="nowruz", campaign_id=campaign.id)
    assert result.by_encoding["GSM-7"] == {"messages": 1, "segments": 1} and result.by_encoding["UCS-2"]["messages"] == 1


@pytest.mark.parametrize(("kwargs", "field", "code"), [
    ({"body": "Hi", "price_per_segment": "-1"}, "price_per_segment", "invalid_number"),
    ({"body": "Hi", "price_per_segment": "cheap"}, "price_per_segment", "invalid_number"),
    ({"body": "Hi", "price_per_segment": "NaN"}, "price_per_segment", "invalid_number"),
    ({"price_per_segment": "1"}, "template", "template_or_body"),
    ({"body": "Hi {{ contact.nope }}", "price_per_segment": "1"}, "body", "missing_variable"),
    ({"body": "{{ deal.title }}", "price_per_segment": "1"}, "body", "per_deal"),
    ({"body": "{{ campaign.name }}", "price_per_segment": "1"}, "campaign_id", "required"),
    ({"body": "Hi", "price_per_segment": "1", "campaign_id": "nope"}, "campaign_id", "not_found"),
])
def test_bad_input_names_the_field(crm, kwargs, field, code):
    price = kwargs.pop("price_per_segment")
    with pytest.raises(ValidationFailed) as failure:
        estimate(crm, None, price, **kwargs)
    assert (failure.value.issues[0].field, failure.value.issues[0].code) == (field, code)


def test_an_unknown_contact_id_is_named(crm):
    with pytest.raises(ValidationFailed, match="no contact nobody"):
        estimate(crm, ["nobody"], "1", body="Hi")


def test_the_cli(cli, crm):
    who = people(crm)
    result = cli.json("sms", "estimate", "--body", TEXT, "--price", "0.0079", "--purpose", "marketing", "--json")
    assert result == {"recipients": 3, "segments": 6, "price_per_segment": "0.0079", "cost": "0.0474",
                      "by_encoding": {"GSM-7": {"messages": 2, "segments": 3}, "UCS-2": {"messages": 1, "segments": 3}}, "skipped": {}}
    text = cli("sms", "estimate", "--body", "Hi", "--price", "0.01", "--contact", who["ada"].id, "--contact", who["nophone"].id).output
    assert "1 recipient(s), 1 segment(s) × 0.01 = 0.01" in text and "skipped (no_phone): 1" in text

    bad = cli("sms", "estimate", "--body", "Hi", "--price", "free")
    assert bad.exit_code == 1 and "Error: price_per_segment:" in bad.stderr
    both = cli("sms", "estimate", "--price", "1")
    assert both.exit_code == 1 and "Error: template:" in both.stderr
