"""The HTML dashboard: the SVG chart builders' geometry and escaping, a report of the demo CRM
checked against ``crmkit.reports`` and the metrics registry, a small hand-checked history on
every database, empty data, plugin metrics (an NPS trend), option errors and the CLI."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from crmkit import hookimpl, reports
from crmkit.demo import PIPELINE, open_demo_crm, run_demo
from crmkit.errors import ValidationFailed
from crmkit.metrics import MetricDefinition, MetricParams, MetricResult
from crmkit.report import build_dashboard, render_dashboard, write_report
from crmkit.report.charts import BAR_AREA, LABEL_WIDTH, Bar, bar_chart, empty_chart, funnel_chart, grouped_bar_chart, line_chart
from rich.console import Console

HOSTILE = '<b onclick="x()">R&D "hot" \'lead\'</b>'
CORE_CHARTS = {"funnel", "weighted_pipeline", "forecast", "cac_by_channel", "activity_per_user",
               "series:sales.win_rate", "series:activity.per_user"}


# --- helpers ------------------------------------------------------------------------------


def svg_of(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def bars(svg: ET.Element, kind: str = "bar") -> list[ET.Element]:
    return [g for g in svg.iter("g") if kind in (g.get("class") or "").split()]


def width(bar: ET.Element) -> float:
    return float(bar.find("rect").get("width"))


def charts_in(html: str) -> dict[str, list[ET.Element]]:
    """Every inline ``<svg data-chart>`` of a page, parsed (the builders write well-formed XML)."""
    found: dict[str, list[ET.Element]] = {}
    for text in re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL):
        svg = ET.fromstring(text)
        found.setdefault(svg.get("data-chart"), []).append(svg)
    return found


def one_chart(html: str, name: str) -> ET.Element:
    (svg,) = charts_in(html)[name]
    return svg


def labelled(svg: ET.Element, kind: str = "bar") -> list[tuple[str, float | None]]:
    return [(g.get("data-label"), float(g.get("data-value")) if g.get("data-value") else None) for g in bars(svg, kind)]


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def tiles(self) -> dict[str, dict[str, str | None]]:
        return {a["data-tile"]: a for tag, a in self.tags if "data-tile" in a}


def assert_self_contained(html: str) -> None:
    """No script, no external resource: nothing a browser would fetch or run."""
    tags = Tags(html).tags
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe", "object", "embed", "base")]
    assert not [a for _, a in tags if "src" in a or "href" in a or "srcset" in a]
    assert "http://" not in html and "https://" not in html
    assert "url(" not in html and "@import" not in html


# --- chart builders -------------------------------------------------------------------------


def test_bar_lengths_are_proportional_to_the_largest_value():
    svg = svg_of(bar_chart("sizes", "Sizes", [Bar("a", 10, "10"), Bar("b", 5, "5"), Bar("c", 0, "0"), Bar("d", None)]))
    assert [width(b) for b in bars(svg)] == [BAR_AREA, BAR_AREA / 2, 0, 0]
    assert labelled(svg) == [("a", 10.0), ("b", 5.0), ("c", 0.0), ("d", None)]
    assert [b.find("title").text for b in bars(svg)] == ["a: 10", "b: 5", "c: 0", "d: —"]
    assert svg.get("data-chart") == "sizes" and svg.get("role") == "img"
    assert svg.find("title").text == "Sizes" and svg.get("aria-labelledby") == svg.find("title").get("id")


def test_all_zero_or_negative_values_draw_no_bar_and_never_divide_by_zero():
    svg = svg_of(bar_chart("zeros", "Zeros", [Bar("a", 0, "0"), Bar("b", -3, "-3"), Bar("c", math.nan, "?")]))
    assert [width(b) for b in bars(svg)] == [0, 0, 0]
    assert labelled(svg)[2] == ("c", None)  # NaN is undefined, not a number to draw


def test_labels_and_titles_are_escaped():
    markup = str(bar_chart(f"x{HOSTILE}", HOSTILE, [Bar(HOSTILE, 1, HOSTILE)]))
    assert "<b" not in markup and "R&D" not in markup and "&lt;b onclick=" in markup
    svg = svg_of(markup)  # still well-formed, only the chart's own elements, every string back exactly
    assert {e.tag for e in svg.iter()} <= {"svg", "title", "text", "g", "rect", "line"}
    assert not [e for e in svg.iter() if "onclick" in e.attrib]
    assert svg.get("data-chart") == f"x{HOSTILE}"
    assert svg.find("title").text == HOSTILE
    (bar,) = bars(svg)
    assert bar.get("data-label") == HOSTILE and bar.find("title").text == f"{HOSTILE}: {HOSTILE}"
    assert re.fullmatch(r"chart-[A-Za-z0-9_-]+-title", svg.find("title").get("id"))


def test_long_labels_are_shortened_on_screen_but_kept_whole_in_data_and_tooltip():
    label = "Enterprise renewals and upsells (EMEA)"
    (bar,) = bars(svg_of(bar_chart("long", "Long", [Bar(label, 1, "1")])))
    assert bar.get("data-label") == label and bar.find("title").text.startswith(label)
    shown = bar.find("text").text
    assert len(shown) < len(label) and shown.endswith("…") and label.startswith(shown[:-1])


def test_funnel_bars_are_centred_on_one_scale_with_outcomes_below_a_rule():
    svg = svg_of(funnel_chart("funnel", "Funnel", [Bar("Lead", 100, "100"), Bar("Qualified", 40, "40")],
                              [Bar("Won", 20, "20", tone="won"), Bar("Lost", 30, "30", tone="lost")]))
    stages, outcomes = bars(svg, "stage"), bars(svg, "outcome")
    assert [width(b) for b in stages] == [BAR_AREA, BAR_AREA * 0.4]
    assert [width(b) for b in outcomes] == [BAR_AREA * 0.2, BAR_AREA * 0.3]
    for bar in stages + outcomes:  # centred: equal margins either side
        x = float(bar.find("rect").get("x"))
        assert x - LABEL_WIDTH == pytest.approx(LABEL_WIDTH + BAR_AREA - (x + width(bar)), abs=0.1)
    assert "won" in outcomes[0].get("class") and svg.find("line").get("class") == "rule"
    assert float(svg.find("line").get("y1")) < float(outcomes[0].find("rect").get("y"))


def test_grouped_bars_share_one_scale_and_name_their_series():
    svg = svg_of(grouped_bar_chart("g", "G", {"plan": [Bar("A", 50, "50"), Bar("B", 100, "100")],
                                              "seen": [Bar("A", 25, "25"), Bar("B", None)]}))
    assert [(b.get("data-series"), b.get("data-label"), width(b)) for b in bars(svg)] == [
        ("plan", "A", BAR_AREA / 2), ("plan", "B", BAR_AREA), ("seen", "A", BAR_AREA / 4), ("seen", "B", 0)]
    assert [g.find("text").text for g in svg.iter("g") if "legend" in g.get("class", "")] == ["plan", "seen"]


def test_line_chart_breaks_at_undefined_points_and_draws_negative_values_below_zero():
    svg = svg_of(line_chart("nps", "NPS", [Bar("07", -20, "-20"), Bar("08", 10, "10"), Bar("09", None), Bar("10", 30, "30")],
                            low="-20", high="30"))
    zero = float(next(line for line in svg.iter("line") if line.get("class") == "zero").get("y1"))
    points = {g.get("data-label"): float(g.find("circle").get("cy")) for g in bars(svg, "point")}
    assert set(points) == {"07", "08", "10"}  # no dot for the undefined month
    assert points["07"] > zero > points["08"] > points["10"]  # SVG y grows downwards
    assert len(list(svg.iter("polyline"))) == 1  # 07–08 joined; 10 stands alone after the gap
    assert [t.text for t in svg.iter("text") if t.text in ("-20", "30")] == ["30", "-20"]


def test_nothing_to_draw_gives_an_empty_frame_with_the_same_handle_and_title():
    for markup in (bar_chart("c", "T", []), bar_chart("c", "T", [Bar("a", None)]), grouped_bar_chart("c", "T", {}),
                   funnel_chart("c", "T", [Bar("Lead", 0, "0")], [Bar("Won", 0, "0")]), funnel_chart("c", "T", []),
                   line_chart("c", "T", [Bar("07", None), Bar("08", math.inf)]), line_chart("c", "T", []),
                   empty_chart("c", "T")):
        svg = svg_of(markup)
        assert (svg.get("data-chart"), svg.get("data-empty"), svg.find("title").text) == ("c", "true", "T")
        assert [t.text for t in svg.iter("text") if t.get("class") == "empty"] == ["No data for this period"]
        assert not bars(svg) and not bars(svg, "point")
    flat = svg_of(line_chart("flat", "Flat", [Bar("07", 0, "0"), Bar("08", 0, "0")]))
    assert len(bars(flat, "point")) == 2  # all zeros is data: a flat line on the axis


# --- the demo CRM ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    run_demo(directory, Console(record=True), contacts=60)
    crm = open_demo_crm(directory)
    out = directory / "report.html"
    dashboard = write_report(crm, out)
    yield crm, dashboard, out.read_text(encoding="utf-8")
    crm.close()


def test_demo_report_has_every_chart_and_is_self_contained(demo):
    _, dashboard, html = demo
    found = charts_in(html)
    assert set(found) == set(dashboard.chart_names())
    assert CORE_CHARTS <= set(found)  # plus the charts of installed plugins' metrics
    for name, svgs in found.items():
        for svg in svgs:
            assert svg.find("title").text, name
    assert_self_contained(html)
    assert html.startswith("<!DOCTYPE html>")
    header = {a["data-field"] for _, a in Tags(html).tags if "data-field" in a}
    assert header == {"crm", "period", "pipeline", "currency", "generated-at"}
    assert dashboard.period.label in html and "crm.db" in dashboard.crm


def test_demo_funnel_and_weighted_pipeline_match_the_reports(demo):
    crm, _, html = demo
    funnel = reports.funnel(crm, PIPELINE)
    svg = one_chart(html, "funnel")
    assert labelled(svg, "stage") == [(s.stage.name, s.reached) for s in funnel.stages]
    assert labelled(svg, "outcome") == [(o.stage.name, o.entered) for o in funnel.outcomes]
    assert funnel.stages[0].reached > funnel.stages[-1].reached > 0  # the demo has a real funnel
    first = funnel.stages[0].reached
    assert [round(width(b), 1) for b in bars(svg, "stage")] == [round(BAR_AREA * s.reached / first, 1) for s in funnel.stages]

    weighted = reports.weighted_pipeline(crm, PIPELINE)
    assert labelled(one_chart(html, "weighted_pipeline")) == [
        (s.stage.name, float(s.weighted.get("USD", Decimal(0)))) for s in weighted.stages]


def test_demo_tiles_forecast_and_cac_match_the_metrics(demo):
    crm, dashboard, html = demo
    period = dashboard.period
    tiles = Tags(html).tiles()
    for key, name, dated in (("win_rate", "sales.win_rate", True), ("average_deal_size", "sales.average_deal_size", True),
                             ("sales_cycle", "sales.cycle_length", True), ("cac", "acquisition.cac", True),
                             ("weighted_pipeline", "forecast.weighted_pipeline", False), ("velocity", "sales.velocity", True)):
        value = crm.metrics.compute(name, period=period if dated else None).value
        assert tiles[key]["data-value"] == ("" if value is None else str(float(value))), key
    assert float(tiles["win_rate"]["data-value"]) > 0

    historical = {r.label: r.value for r in crm.metrics.compute("forecast.historical").breakdown}
    forecast = one_chart(html, "forecast")
    seen = [(g.get("data-label"), g.get("data-value")) for g in bars(forecast) if g.get("data-series") == "by observed conversion"]
    assert seen == [(label, "" if historical.get(label) is None else str(float(historical[label])))
                    for label, _ in labelled(one_chart(html, "weighted_pipeline"))]

    cac = crm.metrics.compute("acquisition.cac", period=period, by="channel")
    assert labelled(one_chart(html, "cac_by_channel")) == [(r.label, None if r.value is None else float(r.value)) for r in cac.breakdown]
    assert {r.label for r in cac.breakdown} >= {"webform", "referral"}

    win = crm.metrics.compute("sales.win_rate", period=period, series=True)
    assert labelled(one_chart(html, "series:sales.win_rate"), "point") == [(p.period[:7], p.value) for p in win.series if p.value is not None]


# --- a small history, by hand, on every database ------------------------------------------


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 9, 0, tzinfo=UTC)


def small_history(crm) -> dict[str, str]:
    """Q3 2026: Alice wins D1 (1000 USD, ads contact) and loses D2; Bob wins D3 (500 USD, email
    contact) in August; D4 2000 USD stays open in Qualified (0.5). Campaign spend: ads 600, email
    300. Activities in Q3: Alice 3, Bob 1."""
    alice = crm.users.create({"email": "alice@example.com", "name": "Alice"}).id
    bob = crm.users.create({"email": "bob@example.com", "name": "Bob"}).id
    crm.campaigns.create({"name": "Ads", "channel": "ads", "spend": "600", "currency": "USD", "starts_on": "2026-07-01"})
    crm.campaigns.create({"name": "Mail", "channel": "email", "spend": "300", "currency": "USD", "starts_on": "2026-08-01"})
    k1 = crm.contacts.create({"first_name": "K1", "source": {"channel": "ads"}}).id
    k2 = crm.contacts.create({"first_name": "K2", "source": {"channel": "email"}}).id
    crm.pipelines.create("Sales", [("Lead", 0.1), ("Qualified", 0.5), ("Won", 1, "won"), ("Lost", 0, "lost")])
    for title, owner, contact, amount, created, moves in (
            ("D1", alice, k1, "1000", (7, 1), [("Qualified", (7, 5)), ("Won", (7, 11))]),
            ("D2", alice, k1, "300", (7, 2), [("Lost", (7, 12))]),
            ("D3", bob, k2, "500", (8, 1), [("Won", (8, 21))]),
            ("D4", bob, k2, "2000", (8, 2), [("Qualified", (8, 3))])):
        deal = crm.deals.create({"title": title, "pipeline": "Sales", "owner_id": owner, "contact_id": contact,
                                 "amount": amount, "currency": "USD", "created_at": at(*created)})
        for stage, when in moves:
            crm.deals.move(deal.id, stage, at=at(*when))
    for actor, day in ((alice, (7, 3)), (alice, (7, 9)), (alice, (8, 4)), (bob, (9, 1))):
        crm.activities.log({"kind": "call", "contact_id": k1, "occurred_at": at(*day)}, actor=actor)
    return {"alice": alice, "bob": bob}


def test_small_history_numbers_by_hand(any_crm, tmp_path):
    small_history(any_crm)
    write_report(any_crm, tmp_path / "r.html", period="2026-Q3")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    tiles = Tags(html).tiles()
    assert float(tiles["win_rate"]["data-value"]) == pytest.approx(2 / 3)  # D1 D3 won, D2 lost
    assert float(tiles["average_deal_size"]["data-value"]) == 750.0
    assert float(tiles["cac"]["data-value"]) == 450.0  # (600 + 300) ÷ 2 new customers
    assert float(tiles["weighted_pipeline"]["data-value"]) == 1000.0  # D4 2000 × 0.5
    assert "USD 450.00" in html and "USD 1,000.00" in html

    # CAC by channel: ads 600 ÷ K1, email 300 ÷ K2.
    assert labelled(one_chart(html, "cac_by_channel")) == [("ads", 600.0), ("email", 300.0)]
    assert labelled(one_chart(html, "activity_per_user")) == [("Alice", 3.0), ("Bob", 1.0)]
    assert labelled(one_chart(html, "funnel"), "stage") == [("Lead", 4.0), ("Qualified", 3.0)]
    assert labelled(one_chart(html, "funnel"), "outcome") == [("Won", 2.0), ("Lost", 1.0)]
    assert labelled(one_chart(html, "weighted_pipeline")) == [("Lead", 0.0), ("Qualified", 1000.0)]
    # July: D1 won, D2 lost → 0.5; August: D3 won → 1; September: nothing closed (no dot).
    assert labelled(one_chart(html, "series:sales.win_rate"), "point") == [("2026-07", 0.5), ("2026-08", 1.0)]
    assert labelled(one_chart(html, "series:activity.per_user"), "point") == [("2026-07", 2.0), ("2026-08", 1.0), ("2026-09", 1.0)]
    assert "Period" in html and "2026-Q3 (2026-07-01..2026-09-30)" in html


def test_an_empty_crm_renders_every_chart_as_no_data(any_crm, tmp_path):
    write_report(any_crm, tmp_path / "empty.html", period="2026")
    html = (tmp_path / "empty.html").read_text(encoding="utf-8")
    found = charts_in(html)
    # Installed plugins add their metrics' charts (crmkit-email's open and click rates).
    assert set(found) == set(build_dashboard(any_crm, period="2026").chart_names())
    assert CORE_CHARTS <= set(found)
    assert all(svg.get("data-empty") == "true" for svgs in found.values() for svg in svgs)
    tiles = Tags(html).tiles()
    assert tiles["win_rate"]["data-value"] == "" and "no data for this period" in html
    assert_self_contained(html)

    any_crm.pipelines.create("Sales", [("Lead", 0.1), ("Won", 1, "won"), ("Lost", 0, "lost")])
    html = render_dashboard(build_dashboard(any_crm, period="2026"))
    assert "No deals in this pipeline yet" in html and one_chart(html, "funnel").get("data-empty") == "true"


def test_hostile_names_from_the_data_are_escaped_in_the_page(crm, tmp_path):
    crm.pipelines.create("Sales", [(HOSTILE, 0.5), ("Won", 1, "won"), ("Lost", 0, "lost")])
    crm.deals.create({"title": "D", "pipeline": "Sales", "amount": "100", "currency": "USD"})
    html = render_dashboard(build_dashboard(crm, period="2026"))
    assert "<b " not in html and "<script" not in html
    assert labelled(one_chart(html, "funnel"), "stage") == [(HOSTILE, 1.0)]
    assert labelled(one_chart(html, "weighted_pipeline")) == [(HOSTILE, 50.0)]


def test_the_pipeline_option_scopes_the_funnels(crm):
    crm.pipelines.create("Sales", [("Lead", 0.1), ("Won", 1, "won"), ("Lost", 0, "lost")])
    crm.pipelines.create("Renewals", [("Due", 0.8), ("Renewed", 1, "won"), ("Churned", 0, "lost")])
    crm.deals.create({"title": "R", "pipeline": "Renewals", "amount": "100", "currency": "USD"})
    everything = render_dashboard(build_dashboard(crm, period="2026"))
    assert [a["data-pipeline"] for _, a in Tags(everything).tags if "data-pipeline" in a] == ["Renewals", "Sales"]
    assert labelled(one_chart(everything, "weighted_pipeline")) == [("Renewals: Due", 80.0), ("Sales: Lead", 0.0)]
    one = build_dashboard(crm, period="2026", pipeline="Renewals")
    html = render_dashboard(one)
    assert one.pipeline == "Renewals" and len(charts_in(html)["funnel"]) == 1
    assert labelled(one_chart(html, "weighted_pipeline")) == [("Due", 80.0)]


def test_bad_options_are_all_named_and_nothing_is_written(crm, tmp_path):
    out = tmp_path / "report.html"
    with pytest.raises(ValidationFailed) as caught:
        write_report(crm, out, period="2026-13", pipeline="Nope", currency="EURO")
    assert {i.field for i in caught.value.issues} == {"period", "pipeline", "currency"}
    with pytest.raises(ValidationFailed) as caught:
        write_report(crm, tmp_path / "missing" / "report.html")
    assert caught.value.issues[0].field == "out"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("crm-")] == []  # no report, no temporary file


# --- plugin metrics: the NPS trend and more --------------------------------------------------

NPS_BY_MONTH = {"2026-07": -20.0, "2026-08": 15.0}


def nps(crm, params: MetricParams) -> MetricResult:
    """A survey plugin's score: fixed per month for the test (-100..100), None when unsurveyed."""
    label = params.period.label if params.period else None
    value = NPS_BY_MONTH.get(label or "", 5.0 if label == "2026-Q3" else None)
    return MetricResult(name="survey.nps", unit="count", value=value, sample_size=10 if value is not None else 0, period=label)


def needs_a_filter(crm, params: MetricParams) -> MetricResult:
    raise ValidationFailed.single("filters.team", "required", "name the team")


class SurveyMetrics:
    crmkit_plugin_name = "survey-metrics"

    @hookimpl
    def crmkit_register_metrics(self, register):
        register(MetricDefinition("survey.nps", "Net promoter score.", "count", nps))
        register(MetricDefinition("house.team_score", "A team's score.", "ratio", needs_a_filter))
        register(MetricDefinition("house.snapshot", "Not over time.", "count", nps, uses_period=False))


def test_nps_trend_appears_only_when_a_metric_named_like_nps_is_registered(crm_factory, tmp_path):
    plain = render_dashboard(build_dashboard(crm_factory(), period="2026-Q3"))
    assert "NPS trend" not in plain and 'data-section="nps"' not in plain

    html = render_dashboard(build_dashboard(crm_factory(plugins=[SurveyMetrics()]), period="2026-Q3"))
    assert 'data-section="nps"' in html and "<h2>NPS trend</h2>" in html
    trend = one_chart(html, "series:survey.nps")
    assert labelled(trend, "point") == [("2026-07", -20.0), ("2026-08", 15.0)]
    assert "over the whole period: 5." in html
    # Other plugin metrics over time are drawn generically; one that cannot be computed for the
    # report's parameters says so instead of breaking the page; point-in-time ones are left out.
    more = one_chart(html, "series:house.team_score")
    assert more.get("data-empty") == "true" and "name the team" in ET.tostring(more, encoding="unicode")
    assert "series:house.snapshot" not in charts_in(html)


# --- command line ---------------------------------------------------------------------------


def test_crmkit_report_writes_the_file(cli, crm, tmp_path):
    small_history(crm)
    out = tmp_path / "report.html"
    result = cli("report", "--out", str(out), "--period", "2026-Q3", "--pipeline", "Sales")
    assert result.exit_code == 0, result.output
    charts = set(build_dashboard(crm, period="2026-Q3", pipeline="Sales").chart_names())
    assert CORE_CHARTS <= charts  # and the charts of installed plugins' metrics
    assert f"Wrote {out}: period 2026-Q3, 7 figures, {len(charts)} charts." in result.output
    assert set(charts_in(out.read_text(encoding="utf-8"))) == charts

    bad = cli("report", "--out", str(tmp_path / "bad.html"), "--period", "Q5", "--pipeline", "Nope")
    assert bad.exit_code == 1
    assert "period" in bad.output and "no pipeline named 'Nope' (pipelines: Sales)" in bad.output
    assert not (tmp_path / "bad.html").exists()
    assert cli("report").exit_code == 2  # --out is required


def test_report_package_data_is_declared():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"report/templates/*.j2"' in pyproject
