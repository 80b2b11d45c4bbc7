"""Team-scoped list pages: an agent's list is read as one index range per owner within reach
plus the ownerless records that follow their parents, merged (``Access.partitions`` and
``Repository.list(partitions=...)``). Walking it page by page, in both directions and with
filters, must give exactly the records the visibility rule allows, in order, each once — the
same as the single query over the whole condition, which other sort orders still use.
"""

from __future__ import annotations

from typing import Any

import pytest
from crmkit.api import create_app
from crmkit.api.testing import api_client


@pytest.fixture
def world(any_crm: Any) -> dict[str, Any]:
    crm = any_crm
    red, blue = crm.teams.create({"name": "Red"}), crm.teams.create({"name": "Blue"})
    ann = crm.users.create({"email": "ann@example.com", "role": "agent", "team_id": red.id})
    rob = crm.users.create({"email": "rob@example.com", "role": "agent", "team_id": red.id})
    bea = crm.users.create({"email": "bea@example.com", "role": "agent", "team_id": blue.id})
    red_org = crm.organizations.create({"name": "Red Org", "owner_id": rob.id})
    blue_org = crm.organizations.create({"name": "Blue Org", "owner_id": bea.id})
    visible, lead = set(), 0
    for index in range(36):
        owner = (ann, rob, bea, None)[index % 4]
        organization = (None, red_org, blue_org)[index % 3] if owner is None else None
        contact = crm.contacts.create({"first_name": f"P{index}", "last_name": "Person", "email": f"p{index}@example.com",
                                       "owner_id": owner.id if owner else None,
                                       "organization_id": organization.id if organization else None,
                                       "lifecycle_stage": "customer" if index % 5 == 0 else "lead"})
        if (owner in (ann, rob)) or (owner is None and organization is not blue_org):
            visible.add(contact.id)
            lead += contact.lifecycle_stage.value == "lead"
    return {"crm": crm, "ann": ann, "visible": visible, "visible_leads": lead}


def walk(client: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    rows, cursor = [], None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= params.get("limit", 50)
        rows.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def key(row: dict[str, Any]) -> tuple[str, str]:
    return row["created_at"], row["id"]


@pytest.mark.parametrize("sort", ["created_at", "-created_at"])
def test_an_agents_pages_hold_exactly_what_it_may_see_in_order(world, sort):
    crm = world["crm"]
    with api_client(crm, "agent", user_id=world["ann"].id, app=create_app(crm)) as client:
        rows = walk(client, "/contacts", limit=4, sort=sort)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "a record appeared on two pages"
    assert set(ids) == world["visible"]
    assert [key(row) for row in rows] == sorted(map(key, rows), reverse=sort.startswith("-"))


def test_filters_apply_within_each_owner_range_and_other_orders_agree(world):
    crm = world["crm"]
    with api_client(crm, "agent", user_id=world["ann"].id, app=create_app(crm)) as client:
        leads = walk(client, "/contacts", limit=3, lifecycle_stage="lead")
        # Sorting on another column takes the single query over the whole condition.
        by_stage = walk(client, "/contacts", limit=5, sort="lifecycle_stage")
    assert len(leads) == world["visible_leads"] and all(row["lifecycle_stage"] == "lead" for row in leads)
    assert {row["id"] for row in by_stage} == world["visible"]


def test_a_key_without_a_user_pages_through_the_shared_pool_only(world):
    crm = world["crm"]
    with api_client(crm, "agent", app=create_app(crm)) as client:
        rows = walk(client, "/contacts", limit=2)
    # Ownerless, and their organization (if any) ownerless too: none here has one.
    assert rows and all(row["owner_id"] is None and row["organization_id"] is None for row in rows)
