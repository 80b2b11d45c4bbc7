"""Looking up a contact that was merged away says where it went."""

import pytest

import crmkit
from crmkit.merge.records import MergedAway


def test_get_of_merged_away_contact_names_the_survivor(crm):
    older = crm.contacts.create({"email": "ada@example.com", "first_name": "Ada"})
    newer = crm.contacts.create({"email": "ada.l@example.com", "last_name": "Lovelace"})
    result = crm.merges.merge(older.id, newer.id, prefer="a")

    with pytest.raises(MergedAway) as excinfo:
        crm.contacts.get(newer.id)
    assert excinfo.value.survivor_id == older.id
    assert older.id in str(excinfo.value)
    assert isinstance(excinfo.value, crmkit.NotFound)  # callers catching NotFound keep working

    crm.merges.undo(result.merge_id)
    assert crm.contacts.get(newer.id).last_name == "Lovelace"


def test_get_of_unknown_contact_is_plain_not_found(crm):
    with pytest.raises(crmkit.NotFound) as excinfo:
        crm.contacts.get("0" * 32)
    assert not isinstance(excinfo.value, MergedAway)
