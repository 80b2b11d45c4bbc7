"""The SQL storage layer on SQLite, PostgreSQL and MariaDB: every entity round-trips exactly
through its repository, keyset pagination, counts, deletes, foreign keys, NotFound."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import attrs
import pytest
import sqlalchemy as sa
from crmkit import domain
from crmkit.domain import Address, Attribution, ConsentStatus, Direction, FieldType, LifecycleStage, Outcome, Role
from crmkit.errors import ConflictError, NotFound
from crmkit.storage.sql.types import MONEY_MAX

# Microseconds everywhere: MariaDB's DATETIME would silently drop them without fsp=6.
T0 = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
TEHRAN = ZoneInfo("Asia/Tehran")
PERSIAN, ARABIC, EMOJI = "محمدرضا کیانی", "عبد الله", "Zoë 🚀👩🏽‍💻"


def build_graph() -> dict[str, object]:
    """One of every entity, with the awkward values each column type must survive."""
    team = domain.Team(name=f"Équipe {EMOJI}", created_at=T0)
    user = domain.User(email="maryam@example.com", name="مریم", role=Role.MANAGER, team_id=team.id, active=False,
                       created_at=T0, updated_at=T0 + timedelta(microseconds=1), version=3)
    org = domain.Organization(
        name=ARABIC, domain="example.sa", industry="نفت", size="51-200", phone="+966112345678",
        address=Address(street="شارع الملك فهد ١٢", city="الرياض", postcode="12271", country="SA"),
        owner_id=user.id, tags=["vip", "خليج"], custom={"nested": {"list": [1, 2.5, None, True], "نام": "مقدار"}},
        created_at=T0, updated_at=T0,
    )
    campaign = domain.Campaign(name="نوروز ۱۴۰۳", channel="sms", spend=Decimal("1234.5678"), currency="IRR",
                               starts_on=date(2024, 3, 20), ends_on=date(2024, 4, 2), created_at=T0, updated_at=T0)
    contact = domain.Contact(
        first_name=PERSIAN, last_name=EMOJI, email="kiani@example.ir", phone="+989121234567",
        address=Address(street="خیابان ولیعصر", city="تهران", region="Tehran", postcode="1591634311", country="IR"),
        birth_date=date(1990, 1, 1), account_number="ACC-۱۲۳", job_title="مهندس", industry="IT", location="Tehran",
        lifecycle_stage=LifecycleStage.OPPORTUNITY, owner_id=user.id, organization_id=org.id,
        source=Attribution(channel="web", campaign_id=campaign.id, utm_source="google", utm_medium="cpc",
                           utm_campaign="نوروز", utm_term="crm", utm_content="ad-1"),
        score=0.1, tags=["b2b", "🔥"], custom={"budget": 1500, "remark": "خوب", "flag": False},
        # A non-UTC aware datetime is stored as the same instant and read back in UTC.
        created_at=T0.astimezone(TEHRAN), updated_at=T0 + timedelta(days=1), version=2,
    )
    pipeline = domain.Pipeline(name="فروش", created_at=T0)
    stages = [
        domain.Stage(pipeline_id=pipeline.id, name="جدید", position=0, probability=0.1),
        domain.Stage(pipeline_id=pipeline.id, name="Won 🎉", position=1, probability=1.0, outcome=Outcome.WON),
        domain.Stage(pipeline_id=pipeline.id, name="Lost", position=2, probability=0.0, outcome=Outcome.LOST),
    ]
    tiny = domain.Deal(title="Penny", pipeline_id=pipeline.id, stage_id=stages[0].id, contact_id=contact.id,
                       amount=Decimal("0.0001"), currency="EUR", created_at=T0, updated_at=T0)
    huge = domain.Deal(title=f"Big {EMOJI}", pipeline_id=pipeline.id, stage_id=stages[1].id, organization_id=org.id,
                       amount=MONEY_MAX, currency="IRR", expected_close=date(2099, 12, 31), owner_id=user.id,
                       status=Outcome.WON, closed_at=T0 + timedelta(microseconds=7), custom={"source": "مرجع"},
                       created_at=T0, updated_at=T0)
    lost = domain.Deal(title="Gone", pipeline_id=pipeline.id, stage_id=stages[2].id, amount=Decimal("99999.99"),
                       status=Outcome.LOST, lost_reason="گران بود", closed_at=T0, created_at=T0, updated_at=T0)
    change = domain.StageChange(deal_id=huge.id, from_stage_id=stages[0].id, to_stage_id=stages[1].id,
                                changed_at=T0 + timedelta(microseconds=999), changed_by=user.id)
    activity = domain.Activity(kind="sms.received", contact_id=contact.id, deal_id=tiny.id, organization_id=org.id,
                               channel="sms", direction=Direction.INBOUND, subject="سلام 👋", occurred_at=T0,
                               payload={"text": "سلام، قیمت؟ 🙏", "parts": [{"n": 1}], "cost": "0.0123"},
                               external_id="SM-1", created_by=user.id, created_at=T0)
    task = domain.Task(title="پیگیری", notes="x" * 5000 + EMOJI, due_at=T0 + timedelta(hours=1), done_at=None,
                       assignee_id=user.id, contact_id=contact.id, deal_id=tiny.id, created_at=T0, updated_at=T0)
    consent = domain.Consent(contact_id=contact.id, channel="sms", purpose="marketing", status=ConsentStatus.GRANTED,
                             source="webform", evidence={"ip": "2001:db8::1", "text": "بله"}, recorded_at=T0)
    definition = domain.CustomFieldDefinition(entity="deal", name="tier", type=FieldType.CHOICE, label="سطح",
                                              required=True, choices=["طلایی", "silver"], created_at=T0)
    return {
        "teams": [team], "users": [user], "organizations": [org], "campaigns": [campaign], "contacts": [contact],
        "pipelines": [pipeline], "stages": stages, "deals": [tiny, huge, lost], "stage_changes": [change],
        "activities": [activity], "tasks": [task], "consents": [consent], "custom_fields": [definition],
    }


def test_every_entity_round_trips_exactly(any_crm):
    graph = build_graph()
    with any_crm.uow() as uow:
        for repo_name, entities in graph.items():
            getattr(uow, repo_name).add_many(entities)

    with any_crm.read() as uow:
        for repo_name, entities in graph.items():
            for written in entities:
                read = getattr(uow, repo_name).get(written.id)
                assert read == written, repo_name
                for field in attrs.fields(type(read)):
                    value = getattr(read, field.name)
                    if isinstance(value, datetime):
                        assert value.tzinfo is UTC, f"{repo_name}.{field.name} came back as {value!r}"
                    assert type(value) is type(getattr(written, field.name)), f"{repo_name}.{field.name}"

    amounts = sorted(d.amount for d in any_crm.deals.list())
    assert amounts == [Decimal("0.0001"), Decimal("99999.99"), MONEY_MAX]
    assert str(amounts[0]) == "0.0001" and str(amounts[2]) == "922337203685477.5807"
    assert any_crm.contacts.get(graph["contacts"][0].id).created_at == T0

    # Sums and range filters run in the database: they must be exact there too.
    with any_crm.read() as uow:
        deals = uow.deals.table
        small = sa.select(sa.func.sum(deals.c.amount)).where(deals.c.amount < Decimal("100000"))
        assert uow.connection.execute(small).scalar_one() == Decimal("99999.9901")
        at_exact_instant = uow.deals.list([deals.c.closed_at == T0 + timedelta(microseconds=7)])
        assert [d.title for d in at_exact_instant] == [f"Big {EMOJI}"]
        assert [d.title for d in uow.deals.list([deals.c.closed_at > T0])] == [f"Big {EMOJI}"]


def test_versions_conflicts_and_missing_ids(any_crm):
    contact = domain.Contact(first_name="Ada", created_at=T0, updated_at=T0)
    with any_crm.uow() as uow:
        uow.contacts.add(contact)
    with any_crm.uow() as uow:
        fresh = uow.contacts.get(contact.id)
        fresh.last_name = "Lovelace"
        uow.contacts.update(fresh)
        assert fresh.version == 2 and fresh.updated_at > T0
    stale = contact  # still version 1
    stale.last_name = "Byron"
    with pytest.raises(ConflictError) as info, any_crm.uow() as uow:
        uow.contacts.update(stale)
    assert info.value.expected_version == 1
    stored = any_crm.contacts.get(contact.id)
    assert (stored.last_name, stored.version) == ("Lovelace", 2)

    with pytest.raises(ConflictError):
        any_crm.contacts.delete(contact.id, expected_version=1)
    assert any_crm.contacts.find(contact.id) is not None
    any_crm.contacts.delete(contact.id, expected_version=2)
    assert any_crm.contacts.find(contact.id) is None

    with any_crm.read() as uow:
        assert uow.deals.find("0" * 32) is None
        with pytest.raises(NotFound, match="deal '0{32}' not found"):
            uow.deals.get("0" * 32)
    for service in (any_crm.contacts, any_crm.organizations, any_crm.deals, any_crm.tasks, any_crm.users):
        with pytest.raises(NotFound):
            service.get("missing")
    with pytest.raises(NotFound):
        any_crm.contacts.update(contact.id, {"first_name": "x"})
    with pytest.raises(NotFound):
        any_crm.contacts.delete(contact.id)
    with any_crm.uow() as uow, pytest.raises(NotFound):
        uow.contacts.update(domain.Contact(id="missing", first_name="x"))
    assert any_crm.contacts.count() == 0


def _add_contacts(crm, count: int, *, ties_every: int = 3) -> list[domain.Contact]:
    """Contacts whose created_at collide in groups, so pagination must break ties by id."""
    contacts = [
        domain.Contact(first_name=f"c{i}", created_at=T0 + timedelta(microseconds=i // ties_every), updated_at=T0)
        for i in range(count)
    ]
    with crm.uow() as uow:
        uow.contacts.add_many(contacts)
    return contacts


def _pages(crm, page_size: int, *, descending: bool = False) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    with crm.read() as uow:
        while True:
            page = uow.contacts.list(limit=page_size, after=after, descending=descending)
            if not page:
                return pages
            pages.append([c.id for c in page])
            after = (page[-1].created_at, page[-1].id)


def test_keyset_pagination_returns_every_row_exactly_once(any_crm):
    contacts = _add_contacts(any_crm, 23)
    expected = [c.id for c in sorted(contacts, key=lambda c: (c.created_at, c.id))]

    pages = _pages(any_crm, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == expected
    assert [i for p in _pages(any_crm, 4, descending=True) for i in p] == expected[::-1]

    # The service exposes the same cursor.
    first = any_crm.contacts.list(limit=10)
    rest = any_crm.contacts.list(limit=None, after=(first[-1].created_at, first[-1].id))
    assert [c.id for c in first + rest] == expected
    assert any_crm.contacts.count() == 23
    assert any_crm.contacts.count(first_name="c7") == 1
    assert any_crm.contacts.count(email=None) == 23


def test_keyset_pagination_ignores_the_session_time_zone(crm_factory):
    """The cursor's datetime is bound as UTC like the column, not as a zoned timestamp that
    PostgreSQL would shift by the session's TimeZone."""
    from crmkit.testing import create_server_database

    url, drop = create_server_database("postgresql")
    try:
        crm = crm_factory(sa.make_url(url).update_query_dict({"options": "-c timezone=Asia/Tehran"}).render_as_string(False))
        contacts = _add_contacts(crm, 9)
        expected = [c.id for c in sorted(contacts, key=lambda c: (c.created_at, c.id))]
        assert [i for p in _pages(crm, 2) for i in p] == expected
        crm.close()
    finally:
        drop()


def test_where_rejects_unknown_columns(crm):
    with crm.read() as uow:
        with pytest.raises(ValueError, match="no column 'nope'"):
            uow.contacts.where(nope=1)


def test_foreign_keys_cascade_restrict_and_refuse_dangling_ids(any_crm):
    graph = build_graph()
    with any_crm.uow() as uow:
        for repo_name, entities in graph.items():
            getattr(uow, repo_name).add_many(entities)
        uow.connection.execute(sa.insert(uow.table("external_ids")),
                               [{"system": "shop", "value": "C-1", "contact_id": graph["contacts"][0].id, "created_at": T0}])
    contact_id = graph["contacts"][0].id

    any_crm.contacts.delete(contact_id)

    with any_crm.read() as uow:
        # Owned by the contact: gone with it.
        assert uow.activities.count() == 0
        assert uow.tasks.count() == 0
        assert uow.consents.count() == 0
        assert uow.connection.execute(sa.select(sa.func.count()).select_from(uow.table("external_ids"))).scalar_one() == 0
        # Deals outlive their contact (revenue stays true); the link is cleared.
        tiny = uow.deals.get(graph["deals"][0].id)
        assert tiny.contact_id is None
        assert uow.deals.count() == 3

    # A deal's pipeline (and its stages) cannot be deleted.
    pipeline = graph["pipelines"][0]
    with pytest.raises(sa.exc.IntegrityError), any_crm.uow() as uow:
        uow.pipelines.delete(pipeline.id)
    with any_crm.read() as uow:
        assert uow.pipelines.find(pipeline.id) is not None
        assert uow.stages.count(uow.stages.where(pipeline_id=pipeline.id)) == 3
    with pytest.raises(sa.exc.IntegrityError), any_crm.uow() as uow:
        uow.stages.delete(graph["stages"][1].id)

    # Without deals, the stages go with their pipeline.
    with any_crm.uow() as uow:
        for deal in graph["deals"]:
            uow.deals.delete(deal.id)
        uow.pipelines.delete(pipeline.id)
    with any_crm.read() as uow:
        assert uow.stages.count() == 0
        assert uow.stage_changes.count() == 0

    with pytest.raises(sa.exc.IntegrityError), any_crm.uow() as uow:
        uow.tasks.add(domain.Task(title="orphan", contact_id="f" * 32))
    assert any_crm.tasks.count() == 0
