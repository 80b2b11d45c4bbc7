"""The weighted pipeline counts only the deals of the currency it sums.

Found by the metrics benchmark: with deals in two currencies in one stage, the sample size
(overall and per stage) counted the other currency's deals too, while the amounts did not.
"""

from __future__ import annotations

from decimal import Decimal

from crmkit.metrics import metrics


def test_sample_sizes_count_only_the_deals_in_the_currency(any_crm):
    crm = any_crm
    crm.pipelines.create("Sales", [("Lead", 0.1), ("Qualified", 0.5), ("Won", 1, "won"), ("Lost", 0, "lost")])
    for title, amount, currency, stage in (("a", "1000", "USD", "Lead"), ("b", "300", "EUR", "Lead"), ("c", "200", "EUR", "Lead"),
                                           ("d", "400", "USD", "Qualified"), ("e", "50", "USD", "Won")):
        deal = crm.deals.create({"title": title, "pipeline": "Sales", "amount": amount, "currency": currency})
        if stage != "Lead":
            crm.deals.move(deal.id, stage)
    m = metrics(crm)

    # USD open: a 1000 in Lead (× 0.1 = 100), d 400 in Qualified (× 0.5 = 200); e is won.
    usd = m.compute("forecast.weighted_pipeline")
    assert (usd.value, usd.sample_size, usd.details["amount"]) == (Decimal("300"), 2, Decimal("1400"))
    assert [(r.label, r.value, r.sample_size) for r in usd.breakdown] == [("Lead", Decimal("100"), 1), ("Qualified", Decimal("200"), 1)]

    # EUR open: b 300 + c 200 in Lead → 50, two deals; nothing in Qualified.
    eur = m.compute("forecast.weighted_pipeline", currency="EUR", by="pipeline")
    assert (eur.value, eur.sample_size) == (Decimal("50"), 2)
    assert [(r.label, r.value, r.sample_size, r.details["amount"]) for r in eur.breakdown] == [("Sales", Decimal("50"), 2, Decimal("500"))]
