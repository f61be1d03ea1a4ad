"""The HTML report in a real browser: Debian's chromium, headless, driven over the DevTools protocol.

Reports are built from a generated 90-day history (tests/unit/history_factory.py) through the
real run_report path: a daily report with "what changed" and an annually report with the
capacity plan. The browser must find every chart with its data points, make no request but the
page itself, log no error, and the page must not scroll sideways at a phone's width.

Set UPKEEP_REPORT_SCREENSHOT=docs/report-annually.png to refresh the screenshot in the docs.
"""

import datetime
import os
from pathlib import Path

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _report
from tests.integration.cdp import Browser, chromium_path
from tests.unit.history_factory import START, day_results, generate_runs, write_history

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="Debian's chromium is not installed (make deps, or apt-get install chromium)")

DAYS = 90

CHART_FACTS = """(() => {
  const figs = [...document.querySelectorAll('figure.chart')];
  return figs.map(f => ({
    id: f.id,
    series: [...f.querySelectorAll('g.series')].map(g => ({name: g.dataset.series,
      points: Number(g.dataset.points), markers: g.querySelectorAll('.pt').length,
      drawn: g.querySelector('polyline').getAttribute('points').trim().split(/\\s+/).length})),
    svgWidth: f.querySelector('svg').getBoundingClientRect().width,
    rows: f.querySelectorAll('table.data tbody tr').length,
    projection: f.querySelectorAll('.projection').length,
  }));
})()"""
OVERFLOW = ("({scroll: document.documentElement.scrollWidth, view: window.innerWidth, "
            "body: document.body.scrollWidth})")


def stamp(day):
    return (START + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    dest = tmp_path_factory.mktemp("reports")
    write_history(dest / "daily" / "history.json", generate_runs(DAYS))
    run = {"playbook": "playbooks/daily.yml", "check_mode": False}
    daily = day_results(DAYS)
    daily[0] = dict(daily[0], status="warn")  # a check that changed status since yesterday
    _r, daily_paths, _i = _report.run_report(daily, "daily", str(dest), timestamp=stamp(DAYS), run=run)
    _r, annual_paths, _i = _report.run_report(day_results(DAYS + 1), "annually", str(dest), timestamp=stamp(DAYS + 1),
                                              run=dict(run, playbook="playbooks/annually.yml"), capacity="full")
    return {"daily": Path(daily_paths["html_path"]), "annually": Path(annual_paths["html_path"])}


@pytest.fixture()
def browser(tmp_path):
    chrome = Browser(str(tmp_path / "profile"))
    try:
        chrome.open_page()
        yield chrome
    finally:
        chrome.close()


def test_charts_carry_their_data_points(browser, reports):
    browser.viewport(1280, 900)
    url = reports["annually"].as_uri()
    browser.navigate(url)
    charts = browser.evaluate(CHART_FACTS)
    ids = {c["id"] for c in charts}
    for family in ("database_size", "disk_free", "backup_bytes", "backup_seconds", "connections"):
        assert f"chart-db1-{family}" in ids, ids
    assert "chart-dr1-restore_seconds" in ids and "chart-db2-replication_lag" in ids
    size = next(c for c in charts if c["id"] == "chart-db1-database_size")
    # 90 seeded days + the daily report + this annual run
    assert size["series"] == [{"name": "app", "points": DAYS + 2, "markers": size["series"][0]["markers"],
                               "drawn": DAYS + 2}]
    assert 30 <= size["series"][0]["markers"] <= DAYS + 2
    assert size["rows"] == DAYS + 2 and size["svgWidth"] > 300
    projection = [c for c in charts if c["projection"]]
    assert len(projection) == 1 and projection[0]["id"].startswith("proj-db1-database")
    verdicts = browser.evaluate("[...document.querySelectorAll('ul.verdicts li')].map(li => li.textContent)")
    assert any("db1's database volume grows" in v and "80 % used" in v for v in verdicts), verdicts
    assert browser.requests() == [url]
    assert browser.errors() == []
    target = os.environ.get("UPKEEP_REPORT_SCREENSHOT")
    if target:
        browser.viewport(1000, 1500)
        browser.screenshot(target, full_page=False)


def test_what_changed_and_no_network_or_errors(browser, reports):
    browser.viewport(1280, 900)
    url = reports["daily"].as_uri()
    browser.navigate(url)
    text = browser.evaluate("document.getElementById('changes').nextElementSibling.textContent")
    assert "Compared with the daily run of" in text
    rows = browser.evaluate("[...document.querySelectorAll('#changes ~ .scrollx tbody tr')].map(r => r.textContent)")
    assert any("disk_free:database" in r and "OK" in r and "WARN" in r for r in rows), rows
    assert browser.requests() == [url]
    assert browser.errors() == []
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.querySelectorAll('link, img, iframe, object, embed').length") == 0


@pytest.mark.parametrize("name", ["daily", "annually"])
def test_layout_holds_at_phone_width(browser, reports, tmp_path, name):
    browser.viewport(375, 812, mobile=True)
    browser.navigate(reports[name].as_uri())
    sizes = browser.evaluate(OVERFLOW)
    assert sizes["scroll"] <= sizes["view"], sizes
    widths = browser.evaluate("[...document.querySelectorAll('figure.chart svg')].map(s => s.getBoundingClientRect()"
                              ".right)")
    assert widths and max(widths) <= 375
    browser.screenshot(str(tmp_path / f"{name}-phone.png"))
    assert (tmp_path / f"{name}-phone.png").stat().st_size > 10_000
