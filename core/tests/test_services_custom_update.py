"""Updates name the custom fields they change; other custom fields survive."""

import pytest

import crmkit


def test_update_merges_custom_fields_and_removes_cleared_ones(crm):
    crm.custom_fields.define("contact", "a", "text")
    crm.custom_fields.define("contact", "b", "number")
    crm.custom_fields.define("contact", "tier", "choice", choices=["gold", "silver"], required=True)
    contact = crm.contacts.create({"email": "x@example.com", "custom": {"a": "keep", "tier": "gold"}})

    updated = crm.contacts.update(contact.id, {"custom": {"b": "2"}})
    assert updated.custom == {"a": "keep", "b": 2, "tier": "gold"}

    updated = crm.contacts.update(contact.id, {"custom": {"a": None}})
    assert updated.custom == {"b": 2, "tier": "gold"}

    with pytest.raises(crmkit.ValidationFailed) as excinfo:
        crm.contacts.update(contact.id, {"custom": {"tier": None}})
    assert [i.field for i in excinfo.value.issues] == ["custom.tier"]
    assert crm.contacts.get(contact.id).custom == {"b": 2, "tier": "gold"}
