"""Every chart of the dashboard is present *and drawn* in headless Chromium.

``test_report_in_chromium.py`` checks a fixed list of chart handles on the demo data. This
checks the other direction too: the page shows exactly the charts the dashboard built (so a
chart added later is covered without editing a list), none is an empty "nothing to draw"
frame or a "metric not registered" placeholder, and each has data marks with non-zero values
drawn at a visible size. The data are the demo's (its data-building function, fixed seed) plus
campaign spend, so CAC by channel has something to divide, calls logged by users (the demo's
activities have none, so "activities per user" would be an empty frame), and a house plugin's
NPS metric, so the NPS trend section the issue asks for is drawn as well.
"""

from __future__ import annotations

import random
from datetime import timedelta

import crmkit
import pytest
import sqlalchemy as sa
from crmkit import demo, hookimpl
from crmkit.domain.values import utcnow
from crmkit.metrics import MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import ratio, rows, within
from crmkit.report import write_report

SCORES = (10, 9, 9, 7, 3, 10, 6, 8, 9, 2, 10, 9)  # one survey answer every ten days


def net_promoter_score(crm, params: MetricParams) -> MetricResult:
    """(promoters − detractors) ÷ answers, from ``survey.nps`` activities whose subject is the
    0–10 score, in one aggregate query."""
    with crm.read() as uow:
        a = uow.table("activities")
        score = sa.cast(a.c.subject, sa.Integer)
        net, answers = rows(uow, sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((score >= 9, 1), (score <= 6, -1), else_=0)), 0), sa.func.count(),
        ).where(a.c.kind == "survey.nps", *within(a.c.occurred_at, params.period)))[0]
    return MetricResult(name="house.nps", unit="ratio", value=ratio(int(net), int(answers)), sample_size=int(answers),
                        period=params.period.label if params.period else None)


class HouseNps:
    crmkit_plugin_name = "house-nps"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("house.nps", "Net promoter score of survey answers.", "ratio", net_promoter_score))


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    directory = tmp_path_factory.mktemp("every-chart")
    now = utcnow()
    # Installed plugins (crmkit-email's open and click rates …) are left out: their charts have
    # no data here, and the check is about the charts of the core and of a plugin given data.
    with crmkit.open(f"sqlite:///{directory / 'crm.db'}", plugins=[HouseNps()], migrate=True, load_entry_points=False) as crm:
        for channel, spend in (("webform", "1200"), ("referral", "300"), ("event", "2500"), ("ads", "4000")):
            crm.campaigns.create({"name": f"{channel} push", "channel": channel, "spend": spend, "currency": "USD",
                                  "starts_on": (now - timedelta(weeks=10)).date().isoformat()})
        demo._populate(crm, random.Random(demo.DEFAULT_SEED), 60, now)
        contact = crm.contacts.list()[0]
        # The demo logs activities without a user, which leaves "activities per user" with
        # nothing to draw; two users log calls here.
        for number, name in enumerate(("Alice", "Bob")):
            user = crm.users.create({"name": name, "email": f"{name.lower()}@example.com"})
            for week in range(1 + 2 * number):
                crm.activities.log({"kind": "call", "channel": "phone", "contact_id": contact.id,
                                    "occurred_at": now - timedelta(weeks=4 * week + 1)}, actor=user.id)
        for days, score in enumerate(SCORES):
            crm.activities.log({"kind": "survey.nps", "contact_id": contact.id, "subject": str(score),
                                "occurred_at": now - timedelta(days=10 * days + 1)})
        path = directory / "report.html"
        yield write_report(crm, path), path


def test_every_chart_the_dashboard_built_is_drawn_with_data(chromium, dashboard):
    built, path = dashboard
    expected = built.chart_names()
    assert {"funnel", "weighted_pipeline", "forecast", "cac_by_channel", "activity_per_user", "series:sales.win_rate",
            "series:activity.per_user", "series:house.nps"} <= set(expected)
    assert [s.key for s in built.sections if any(c.key == "series:house.nps" for c in s.charts)] == ["nps"]

    context = chromium.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        charts = page.locator("svg[data-chart]")
        assert [charts.nth(i).get_attribute("data-chart") for i in range(charts.count())] == expected
        for index, name in enumerate(expected):
            chart = charts.nth(index)
            assert chart.get_attribute("data-empty") is None, (name, chart.text_content())
            assert chart.is_visible(), name
            marks = chart.locator("[data-value]")
            values = [marks.nth(i).get_attribute("data-value") for i in range(marks.count())]
            assert any(v not in ("", None) and float(v) != 0 for v in values), (name, values)
            drawn = [box for shape in chart.locator("[data-value] rect, [data-value] circle").all()
                     if (box := shape.bounding_box()) and box["width"] > 0 and box["height"] > 0]
            assert drawn, name
    finally:
        context.close()
