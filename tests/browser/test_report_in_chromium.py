"""``crmkit report`` opened in a real headless Chromium: every chart is drawn, visible and sized,
the funnel shows the funnel of ``crmkit.reports``, and the page loads nothing from the network —
with JavaScript switched off, since the dashboard must need none."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from crmkit import reports
from crmkit.cli import build_cli
from crmkit.demo import PIPELINE, open_demo_crm, run_demo
from rich.console import Console

CHARTS = ("funnel", "weighted_pipeline", "forecast", "cac_by_channel", "activity_per_user",
          "series:sales.win_rate", "series:activity.per_user")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo CRM and its dashboard, written by the command a user would run."""
    directory = tmp_path_factory.mktemp("demo")
    run_demo(directory, Console(record=True), contacts=60)
    path = directory / "report.html"
    result = CliRunner().invoke(build_cli(), ["--database", f"sqlite:///{directory / 'crm.db'}", "report", "--out", str(path)])
    assert result.exit_code == 0, result.output
    with open_demo_crm(directory) as crm:
        yield crm, path


def open_offline(chromium, path: Path):
    """A JavaScript-free page on ``path`` that records every request and aborts any that would
    leave the machine. Returns (context, page, requested URLs, aborted URLs)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    requested: list[str] = []
    aborted: list[str] = []
    context.on("request", lambda request: requested.append(request.url))

    def local_only(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    page = context.new_page()
    page.goto(path.as_uri(), wait_until="load")
    return context, page, requested, aborted


def test_the_network_listener_sees_an_external_request(chromium, tmp_path):
    """The check below can fail: a page that does reach for the network is caught."""
    page_path = tmp_path / "leaky.html"
    page_path.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/pixel.png" alt="">', encoding="utf-8")
    context, _, requested, aborted = open_offline(chromium, page_path)
    context.close()
    assert "http://127.0.0.1:9/pixel.png" in requested and aborted == ["http://127.0.0.1:9/pixel.png"]


def test_the_dashboard_renders_offline_in_chromium(chromium, demo_report, tmp_path):
    crm, path = demo_report
    context, page, requested, aborted = open_offline(chromium, path)
    try:
        assert requested == [path.as_uri()] and aborted == []
        assert page.title().startswith("CRM dashboard")

        for name in CHARTS:
            chart = page.locator(f'[data-chart="{name}"]')
            assert chart.count() == 1, name
            assert chart.is_visible(), name
            box = chart.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 40, (name, box)
            assert chart.locator(":scope > title").text_content(), name

        funnel = reports.funnel(crm, PIPELINE)
        stages = page.locator('[data-chart="funnel"] g.stage')
        assert stages.locator("text.label").all_text_contents() == [s.stage.name for s in funnel.stages]
        assert [stages.nth(i).get_attribute("data-value") for i in range(stages.count())] == [
            repr(float(s.reached)) for s in funnel.stages]
        outcomes = page.locator('[data-chart="funnel"] g.outcome text.label').all_text_contents()
        assert outcomes == [o.stage.name for o in funnel.outcomes]
        # Drawn lengths follow the counts: each bar's on-screen width ∝ deals that reached it.
        widths = [stages.nth(i).locator("rect").bounding_box()["width"] for i in range(stages.count())]
        first = funnel.stages[0].reached
        for drawn, stage in zip(widths, funnel.stages, strict=True):
            assert drawn == pytest.approx(widths[0] * stage.reached / first, abs=1.0)
        assert widths[0] > widths[-1] > 0

        for tile in ("win_rate", "average_deal_size", "sales_cycle", "cac", "weighted_pipeline"):
            assert page.locator(f'[data-tile="{tile}"]').is_visible(), tile

        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    finally:
        context.close()
