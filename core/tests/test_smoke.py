def test_crm_fixture_opens_migrated_sqlite(crm, events):
    result = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"})
    assert result.record.outcome == "created"
    assert "contact.created" in events.types()


def test_database_url_backends(any_crm):
    contact = any_crm.intake.submit({"email": "grace@example.com"}).contact
    assert any_crm.contacts.get(contact.id).email == "grace@example.com"
