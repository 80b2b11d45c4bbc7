"""Golden tests for the core metrics on a small fixed history, on every database backend.

The data set is built through the public services, backdated with ``created_at`` / ``at`` /
``occurred_at``. Every expected number is worked out by hand in the comments, from the
definitions in the calculators' docstrings. Times are 09:00 UTC unless said otherwise.

Pipeline Sales: Lead 0.1 · Qualified 0.5 · Won · Lost. Users alice, bob.
Campaigns: C1 ads 1000 USD starts 2026-07-01 · C2 email 300 USD starts 2026-08-15 ·
C3 events 500 USD starts 2026-04-10.
Contacts (owner, source): K1 (alice, ads/C1) · K2 (bob, email/C2) · K3 (alice, ads/C1) ·
K4 (bob, none) · K5 (alice, events/C3) · K6 (bob, email, no campaign).

Deals (owner, contact, amount, history):
  D1 alice K1 1000 USD  Lead 07-01 → Qualified 07-05 → Won 07-11         (cycle 10 d)
  D2 bob   K2  500 USD  Lead 07-10 → Won 07-30                           (cycle 20 d)
  D3 alice K3  300 USD  Lead 07-02 → Qualified 07-07 → Lost 07-12
  D4 bob   K4 2000 USD  Lead 08-01 → Qualified 08-03, open, expected close 09-15
  D5 alice K5  400 USD  Lead 04-01 → Won 04-21
  D6 alice K3  700 EUR  Lead 07-03, open, expected close 09-30
  D7 alice K1  600 USD  Lead 06-01 → Lost 06-11
  D8 bob   K6  100 USD  Lead 05-01 → Won 05-06
Activities: K1 email 07-08 (alice), K1 call "phone" 07-20 (alice), K5 purchase 08-20 (bob).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from crmkit.errors import ValidationFailed
from crmkit.metrics import metrics


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 9, 0, tzinfo=UTC)


DEALS = {
    "D1": ("alice", "K1", "1000", "USD", (7, 1), [("Qualified", (7, 5)), ("Won", (7, 11))], None),
    "D2": ("bob", "K2", "500", "USD", (7, 10), [("Won", (7, 30))], None),
    "D3": ("alice", "K3", "300", "USD", (7, 2), [("Qualified", (7, 7)), ("Lost", (7, 12))], None),
    "D4": ("bob", "K4", "2000", "USD", (8, 1), [("Qualified", (8, 3))], "2026-09-15"),
    "D5": ("alice", "K5", "400", "USD", (4, 1), [("Won", (4, 21))], None),
    "D6": ("alice", "K3", "700", "EUR", (7, 3), [], "2026-09-30"),
    "D7": ("alice", "K1", "600", "USD", (6, 1), [("Lost", (6, 11))], None),
    "D8": ("bob", "K6", "100", "USD", (5, 1), [("Won", (5, 6))], None),
}


def build(crm) -> dict[str, str]:
    """The data set above; returns ids by short name."""
    ids = {}
    ids["alice"] = crm.users.create({"email": "alice@example.com", "name": "Alice"}).id
    ids["bob"] = crm.users.create({"email": "bob@example.com", "name": "Bob"}).id
    for key, name, channel, spend, starts in (("C1", "Spring ads", "ads", "1000", "2026-07-01"),
                                               ("C2", "Newsletter", "email", "300", "2026-08-15"),
                                               ("C3", "Old fair", "events", "500", "2026-04-10")):
        ids[key] = crm.campaigns.create({"name": name, "channel": channel, "spend": spend, "currency": "USD", "starts_on": starts}).id
    for key, owner, channel, campaign in (("K1", "alice", "ads", "C1"), ("K2", "bob", "email", "C2"), ("K3", "alice", "ads", "C1"),
                                          ("K4", "bob", None, None), ("K5", "alice", "events", "C3"), ("K6", "bob", "email", None)):
        source = {"channel": channel, "campaign_id": ids[campaign] if campaign else None} if channel else {}
        ids[key] = crm.contacts.create({"first_name": key, "owner_id": ids[owner], "source": source}).id
    crm.pipelines.create("Sales", [("Lead", 0.1), ("Qualified", 0.5), ("Won", 1, "won"), ("Lost", 0, "lost")])
    for key, (owner, contact, amount, currency, created, moves, expected) in DEALS.items():
        deal = crm.deals.create({"title": key, "pipeline": "Sales", "owner_id": ids[owner], "contact_id": ids[contact],
                                 "amount": amount, "currency": currency, "created_at": at(*created), "expected_close": expected})
        for stage, when in moves:
            crm.deals.move(deal.id, stage, at=at(*when))
        ids[key] = deal.id
    crm.activities.log({"kind": "email.sent", "channel": "email", "contact_id": ids["K1"], "occurred_at": at(7, 8)}, actor=ids["alice"])
    crm.activities.log({"kind": "call", "channel": "phone", "contact_id": ids["K1"], "occurred_at": at(7, 20)}, actor=ids["alice"])
    crm.activities.log({"kind": "purchase", "contact_id": ids["K5"], "occurred_at": at(8, 20)}, actor=ids["bob"])
    return ids


def by_label(result) -> dict[str, tuple]:
    return {row.label: (row.value, row.sample_size) for row in result.breakdown}


def test_sales_metrics(any_crm):
    build(any_crm)
    m = metrics(any_crm)

    # Closed in Q3: D1 won, D2 won, D3 lost. Alice: D1 won, D3 lost; Bob: D2 won.
    win = m.compute("sales.win_rate", period="2026-Q3", by="owner")
    assert (win.value, win.sample_size, win.details) == (pytest.approx(2 / 3), 3, {"won": 2, "lost": 1})
    assert by_label(win) == {"Alice": (0.5, 2), "Bob": (1.0, 1)}
    # 2026: won D1 D2 D5 D8, lost D3 D7. By source: ads D1 won, D3 D7 lost; email D2 D8 won; events D5 won.
    year = m.compute("sales.win_rate", period="2026", by="source")
    assert (year.value, year.sample_size) == (pytest.approx(4 / 6), 6)
    assert by_label(year) == {"ads": (pytest.approx(1 / 3), 3), "email": (1.0, 2), "events": (1.0, 1)}

    # Filters: alice's deals only; the Sales pipeline by name; ads-sourced contacts only.
    ids = {u.name: u.id for u in any_crm.users.list()}
    assert m.compute("sales.win_rate", period="2026-Q3", filters={"owner": ids["Alice"]}).value == 0.5
    assert m.compute("sales.win_rate", period="2026", filters={"pipeline": "Sales", "source": "ads"}).sample_size == 3
    with pytest.raises(ValidationFailed) as caught:
        m.compute("sales.win_rate", filters={"pipeline": "Nope"})
    assert caught.value.issues[0].field == "filters.pipeline"

    # Won in Q3, USD: D1 1000, D2 500.
    size = m.compute("sales.average_deal_size", period="2026-Q3")
    assert (size.value, size.sample_size, size.currency) == (Decimal("750"), 2, "USD")
    assert m.compute("sales.average_deal_size", period="2026-Q3", currency="EUR").value is None

    # D1 07-01 → 07-11 = 10 days, D2 07-10 → 07-30 = 20 days.
    cycle = m.compute("sales.cycle_length", period="2026-Q3", by="owner")
    assert (cycle.value, cycle.sample_size) == (pytest.approx(15.0), 2)
    assert by_label(cycle) == {"Alice": (pytest.approx(10.0), 1), "Bob": (pytest.approx(20.0), 1)}

    # Completed stays entered in Q3: Lead D1 4, D2 20, D3 5, D4 2 → 31/4; Qualified D1 6, D3 5 → 11/2.
    stay = m.compute("sales.time_in_stage", period="2026-Q3")
    assert (stay.value, stay.sample_size) == (pytest.approx(42 / 6), 6)
    assert by_label(stay) == {"Lead": (pytest.approx(7.75), 4), "Qualified": (pytest.approx(5.5), 2)}

    # Created in Q3: D1 D2 D3 D4 D6 = 5; 5 × 2/3 × 750 / 15 per day.
    speed = m.compute("sales.velocity", period="2026-Q3")
    assert speed.value == pytest.approx(5 * 2 / 3 * 750 / 15)
    assert speed.details["opportunities"] == 5

    # Reached Lead: 8; Qualified: D1 D2 D3 D4 D5 D8 (won ones count) = 6; Won entered: D1 D2 D5 D8.
    funnel = m.compute("sales.funnel", filters={"pipeline": "Sales"})
    assert (funnel.value, funnel.sample_size) == (0.5, 8)
    assert [(r.label, r.sample_size) for r in funnel.breakdown] == [("Lead", 8), ("Qualified", 6), ("Won", 4), ("Lost", 2)]


def test_forecast_metrics(any_crm):
    build(any_crm)
    m = metrics(any_crm)

    # Open now: D4 2000 USD in Qualified (0.5) → 1000; D6 700 EUR in Lead (0.1) → 70.
    weighted = m.compute("forecast.weighted_pipeline")
    assert (weighted.value, weighted.sample_size) == (Decimal("1000"), 1)
    assert m.compute("forecast.weighted_pipeline", currency="EUR").value == Decimal("70")

    # Closed deals that entered Qualified: D1 won, D3 lost → 1/2; entered Lead: D1 D2 D5 D8 won,
    # D3 D7 lost → 4/6. D4 (Qualified, 2000 USD) closes in Q3: 1000; D6 (Lead, 700 EUR): 466.6667.
    usd = m.compute("forecast.historical", period="2026-Q3")
    assert (usd.value, usd.sample_size) == (Decimal("1000"), 1)
    assert usd.breakdown[0].details["conversion"] == 0.5
    eur = m.compute("forecast.historical", period="2026-Q3", currency="EUR", series=True)
    assert eur.value == Decimal("466.6667")
    assert [(p.period, p.value) for p in eur.series] == [("2026-07", None), ("2026-08", None), ("2026-09", Decimal("466.6667"))]
    # Nothing expected to close in Q4: undefined, not zero.
    assert (m.compute("forecast.historical", period="2026-Q4").value, m.compute("forecast.historical", period="2026-Q4").sample_size) == (None, 0)


def test_acquisition_metrics(any_crm):
    build(any_crm)
    m = metrics(any_crm)

    # Q3 spend: C1 1000 + C2 300; new customers (first win in Q3): K1 (ads/C1), K2 (email/C2).
    cac = m.compute("acquisition.cac", period="2026-Q3", by="channel")
    assert (cac.value, cac.sample_size) == (Decimal("650"), 2)
    assert by_label(cac) == {"ads": (Decimal("1000"), 1), "email": (Decimal("300"), 1)}
    assert by_label(m.compute("acquisition.cac", period="2026-Q3", by="campaign")) == {"Newsletter": (Decimal("300"), 1), "Spring ads": (Decimal("1000"), 1)}
    # Q2: C3 500 spend; new customers K5 (events/C3) and K6 (email, no campaign).
    q2 = m.compute("acquisition.cac", period="2026-Q2", by="channel")
    assert (q2.value, by_label(q2)) == (Decimal("250"), {"email": (Decimal("0"), 1), "events": (Decimal("500"), 1)})
    assert m.compute("acquisition.cac", period="2026-Q3", filters={"campaign": "Spring ads"}).value == Decimal("1000")

    # Won in Q3 from campaign contacts: D1 (C1) 1000, D2 (C2) 500.
    revenue = m.compute("acquisition.campaign_revenue", period="2026-Q3")
    assert (revenue.value, by_label(revenue)) == (Decimal("1500"), {"Newsletter": (Decimal("500"), 1), "Spring ads": (Decimal("1000"), 1)})
    roi = m.compute("acquisition.campaign_roi", period="2026-Q3")
    assert roi.value == pytest.approx(200 / 1300)
    assert {k: v for k, (v, _) in by_label(roi).items()} == {"Newsletter": pytest.approx(200 / 300), "Spring ads": 0.0}

    first = m.compute("acquisition.first_touch", period="2026-Q3")
    assert (first.value, by_label(first)) == (Decimal("1500"), {"ads": (Decimal("1000"), 1), "email": (Decimal("500"), 1)})
    # D1: K1's last channel before 07-11 is the e-mail of 07-08 (the call came later); K2 has none.
    last = m.compute("acquisition.last_touch", period="2026-Q3")
    assert (last.value, by_label(last)) == (Decimal("1500"), {"email": (Decimal("1000"), 1), "(none)": (Decimal("500"), 1)})


def test_retention_and_activity_metrics(any_crm):
    ids = build(any_crm)
    m = metrics(any_crm)

    # Customers before Q3: K5 (won 04-21, alice), K6 (won 05-06, bob). K5 bought in Q3 (purchase).
    keep = m.compute("retention.retention_rate", period="2026-Q3", by="owner")
    assert (keep.value, keep.sample_size, by_label(keep)) == (0.5, 2, {"Alice": (1.0, 1), "Bob": (0.0, 1)})
    churn = m.compute("retention.churn_rate", period="2026-Q3")
    assert (churn.value, churn.details) == (0.5, {"churned": 1})
    # Won USD revenue closed before Q3 ends: K1 1000, K2 500, K5 400, K6 100 → 2000 / 4.
    clv = m.compute("retention.customer_lifetime_value", period="2026-Q3", by="owner")
    assert (clv.value, clv.sample_size) == (Decimal("500"), 4)
    assert by_label(clv) == {"Alice": (Decimal("700"), 2), "Bob": (Decimal("300"), 2)}
    assert m.compute("retention.customer_lifetime_value", period="2026-Q2").value == Decimal("250")

    # Q3 activities by a user: alice 2, bob 1 → 3 / 2 users.
    per_user = m.compute("activity.per_user", period="2026-Q3", by="owner")
    assert (per_user.value, per_user.sample_size, by_label(per_user)) == (1.5, 3, {"Alice": (2.0, 2), "Bob": (1.0, 1)})

    any_crm.tasks.create({"title": "call back", "due_at": "2020-01-01T00:00:00Z", "assignee_id": ids["alice"]})
    done = any_crm.tasks.create({"title": "sent", "due_at": "2020-01-01T00:00:00Z", "assignee_id": ids["bob"]})
    any_crm.tasks.complete(done.id)
    any_crm.tasks.create({"title": "later", "due_at": "2999-01-01T00:00:00Z", "assignee_id": ids["alice"]})
    any_crm.tasks.create({"title": "someday"})
    overdue = m.compute("activity.overdue_tasks", by="owner")
    assert (overdue.value, overdue.sample_size, by_label(overdue)) == (1, 2, {"Alice": (1, 2)})


@pytest.mark.parametrize("name", ["sales.win_rate", "sales.average_deal_size", "sales.cycle_length", "sales.time_in_stage",
                                  "sales.velocity", "forecast.historical", "acquisition.cac", "acquisition.campaign_roi",
                                  "retention.retention_rate", "retention.churn_rate", "retention.customer_lifetime_value",
                                  "activity.per_user"])
def test_an_empty_period_is_undefined_not_an_error(crm, name):
    build(crm)
    # 2025 holds nothing: no deal closed or created, no spend, no customer before it ended.
    result = metrics(crm).compute(name, period="2025")
    assert (result.value, result.sample_size) == (None, 0)


def test_empty_database(any_crm):
    m = metrics(any_crm)
    for metric in m.list():
        if metric.name == "sales.funnel":
            continue  # needs a pipeline
        result = m.compute(metric.name, period="2026-Q3" if metric.uses_period else None)
        assert result.sample_size == 0, metric.name
        assert result.value in (None, 0), metric.name


def test_sums_of_nothing_are_zero(crm):
    build(crm)
    result = metrics(crm).compute("acquisition.first_touch", period="2025")
    assert (result.value, result.sample_size, result.breakdown) == (Decimal(0), 0, [])


def test_bad_parameters_name_every_field(crm):
    m = metrics(crm)
    with pytest.raises(ValidationFailed) as caught:
        m.compute("sales.win_rate", period="2026-Q5", by="segment", filters={"colour": "red"}, currency="dollars")
    assert sorted(i.field for i in caught.value.issues) == ["by", "currency", "filters.colour", "period"]
    with pytest.raises(ValidationFailed) as caught:
        m.compute("no.such.metric")
    assert caught.value.issues[0].field == "metric"
    with pytest.raises(ValidationFailed) as caught:
        m.compute("retention.churn_rate")
    assert caught.value.issues[0].code == "required"
    with pytest.raises(ValidationFailed) as caught:
        m.compute("forecast.weighted_pipeline", period="2026")
    assert caught.value.issues[0].field == "period"


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("2026-q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("2026-02-10..2026-03-09", datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)),
])
def test_periods(text, start, end):
    from crmkit.metrics import Period

    period = Period.parse(text)
    assert (period.start, period.end) == (start, end)


@pytest.mark.parametrize("text", ["2026-13", "2026-Q0", "26", "2026-03-01..2026-02-01", "2026-02-30..2026-03-01", "last year"])
def test_bad_periods(text):
    from crmkit.metrics import Period

    with pytest.raises(ValidationFailed) as caught:
        Period.parse(text)
    assert caught.value.issues[0].field == "period"


def test_months_of_a_range_are_clipped():
    from crmkit.metrics import Period

    assert [p.label for p in Period.parse("2026-02-10..2026-04-05").months()] == ["2026-02-10..2026-02-28", "2026-03", "2026-04-01..2026-04-05"]
