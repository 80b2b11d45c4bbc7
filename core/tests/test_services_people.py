"""Users and teams: a user may keep (and re-send) its own e-mail, but not take another's; team
names are unique ignoring case — each refused as a 422 naming the field, before the database's
unique index would answer with a bare conflict. On every backend."""

from __future__ import annotations

import pytest
from crmkit.errors import ValidationFailed


def issue(exc: pytest.ExceptionInfo[ValidationFailed]) -> tuple[str, str]:
    [only] = exc.value.issues
    return only.field, only.code


def test_a_user_keeps_its_own_email_but_cannot_take_anothers(any_crm):
    crm = any_crm
    ada = crm.users.create({"email": "ada@example.com", "name": "Ada"})
    crm.users.create({"email": "bob@example.com"})

    renamed = crm.users.update(ada.id, {"email": "ADA@example.com", "name": "Ada L."})
    assert (renamed.email, renamed.name, renamed.version) == ("ada@example.com", "Ada L.", 2)

    with pytest.raises(ValidationFailed) as taken:
        crm.users.update(ada.id, {"email": "Bob@Example.com"})
    assert issue(taken) == ("email", "duplicate") and "bob@example.com" in str(taken.value.issues[0].message)
    assert crm.users.get(ada.id).email == "ada@example.com" and crm.users.get(ada.id).version == 2

    with pytest.raises(ValidationFailed) as again:
        crm.users.create({"email": "ada@example.com"})
    assert issue(again) == ("email", "duplicate")
    assert crm.users.count() == 2


def test_team_names_are_unique_ignoring_case(any_crm):
    crm = any_crm
    crm.teams.create({"name": "Sales"})
    for name in ("Sales", "sales", " SALES "):
        with pytest.raises(ValidationFailed) as taken:
            crm.teams.create({"name": name})
        assert issue(taken) == ("name", "duplicate") and "'Sales'" in taken.value.issues[0].message
    assert crm.teams.create({"name": "Support"}).name == "Support"
    assert crm.teams.count() == 2


def test_the_api_answers_422_for_a_taken_team_name_and_200_for_a_users_own_email(crm):
    from crmkit.api.testing import api_client

    with api_client(crm) as admin:
        assert admin.post("/teams", json={"name": "Sales"}).status_code == 201
        refused = admin.post("/teams", json={"name": "SALES"})
        assert refused.status_code == 422 and refused.json()["error"]["issues"][0]["field"] == "name"
        user = admin.post("/users", json={"email": "ada@example.com"}).json()
        assert admin.patch(f"/users/{user['id']}", json={"email": "ada@example.com", "name": "Ada"}).status_code == 200
