"""Report history (_history), what changed, charts and capacity planning (_trends), run_report."""

import datetime
import json
import multiprocessing
import os
import re
import random
import tracemalloc
from pathlib import Path

import jsonschema
import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _history, _report, _trends
from ansible_collections.upkeep.runbooks.plugins.module_utils._checks import result

from .history_factory import GIB, START, day_results, generate_runs, write_history

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())
# A schema-1 history written by the report code before schema 2 (40 daily runs of
# history_factory.day_results, day 20 odd, history_policy full_days 30: the first 9 compacted).
SCHEMA1_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "history" / "schema1-daily.json"


def stamp(day, start=START):
    return (start + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(dest, runs, cadence="daily"):
    return write_history(Path(dest) / cadence / "history.json", runs, cadence)


def lines(path):
    return Path(path).read_bytes().splitlines()


# --------------------------------------------------------------------------- format

def test_entry_keeps_statuses_numbers_and_limits():
    report = _report.build_report(day_results(3), "daily", timestamp=stamp(3))
    entry = _history.entry_of(report)
    assert entry["generated_at"] == stamp(3)
    assert entry["checks"]["db1"]["disk_free:database"] == "ok"
    metrics = entry["metrics"]["db1"]
    assert metrics["disk_free:database.bytes_total"] == 200 * GIB
    assert "disk_free:database.path" not in metrics
    assert isinstance(metrics["database_size:app"], int)
    assert set(entry["metrics"]["dr1"]) == {"restore_test:app.restore_seconds", "restore_test:app.checks"} - {
        "restore_test:app.checks"}
    assert entry["thresholds"]["db1"]["disk_free:database"] == {"warn_percent_free": 20, "fail_percent_free": 10}


def test_booleans_and_non_finite_numbers_are_not_metrics():
    assert _history.metrics_of(result("x", "h", "ok", True)) == {}
    assert _history.metrics_of(result("x", "h", "ok", float("nan"))) == {}
    assert _history.metrics_of(result("x", "h", "ok", {"seconds": 2.5, "name": "a"})) == {"x.seconds": 2.5}


def test_prune_keeps_recent_runs_then_days_then_weeks():
    now = START + datetime.timedelta(days=900)
    runs = []
    for day in range(0, 901):
        for hour in (1, 13):  # two runs a day
            when = START + datetime.timedelta(days=day, hours=hour)
            runs.append({"generated_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "checks": {"h": {"c": "ok"}},
                         "metrics": {"h": {"m": day}}, "compacted": False})
    kept = _history.prune(runs, now, {"full_days": 10, "daily_days": 100, "weekly_days": 400, "max_runs": 0})
    recent = [r for r in kept if not r["compacted"]]
    assert 19 <= len(recent) <= 22  # both runs of the last ten days
    daily = [r for r in kept if r["compacted"] and r["metrics"]["h"]["m"] >= 800]
    assert 89 <= len(daily) <= 91 and all(r["checks"] == {} for r in daily)
    oldest = min(r["metrics"]["h"]["m"] for r in kept)
    assert 495 <= oldest <= 510  # weekly runs go back ~400 days, nothing older
    assert [r["generated_at"] for r in kept] == sorted(r["generated_at"] for r in kept)
    capped = _history.prune(runs, now, {"max_runs": 50})
    assert len(capped) == 50 and capped[-1]["generated_at"] == runs[-1]["generated_at"]


# --------------------------------------------------------------------------- run_report with history

def test_runs_append_and_second_report_says_what_changed(tmp_path):
    first = day_results(0)
    _report.run_report(first, "daily", str(tmp_path), timestamp=stamp(0))
    second = day_results(1)
    second[0] = dict(second[0], status="fail")
    second[1] = dict(second[1], value=second[1]["value"] * 2)
    report, paths, info = _report.run_report(second, "daily", str(tmp_path), timestamp=stamp(1),
                                            run={"check_mode": False})
    assert info["recorded"] and info["runs"] == 2
    changes = report["changes"]
    assert changes["previous_at"] == stamp(0)
    assert changes["statuses"] == [{"host": "db1", "check": "disk_free:database", "before": "ok", "after": "fail"}]
    moved = {v["metric"]: v for v in changes["values"]}
    assert moved["database_size:app"]["percent"] > 90
    assert "replication_lag" not in moved  # sub-second wobble is not news
    jsonschema.validate(json.loads(Path(paths["json_path"]).read_text()), SCHEMA)
    page = Path(paths["html_path"]).read_text()
    assert "What changed since the last run" in page and "disk_free:database" in page


def test_first_run_says_so(tmp_path):
    report, paths, _info = _report.run_report(day_results(0), "weekly", str(tmp_path), timestamp=stamp(0))
    assert report["changes"]["previous_at"] is None
    assert "first run of this cadence" in Path(paths["html_path"]).read_text()


def test_damaged_history_is_set_aside_and_reported(tmp_path):
    path = seed(tmp_path, [])
    path.write_text('{"schema_version": 1, "cadence": "daily", "runs": [')
    report, _paths, info = _report.run_report(day_results(5), "daily", str(tmp_path), timestamp=stamp(5))
    failed = [r for r in report["results"] if r["check"] == "report_history"]
    assert len(failed) == 1 and failed[0]["status"] == "fail"
    assert failed[0]["message"].startswith("Failed to read report history: ")
    assert "a new history starts" in failed[0]["message"]
    aside = Path(info["set_aside"])
    assert aside.name == "history.json.damaged-" + stamp(5).replace("-", "").replace(":", "")
    assert aside.read_text().endswith("[")  # preserved as it was
    assert len(_history.read_runs(str(path), "daily")) == 1


def test_damaged_lines_are_named_kept_aside_and_the_other_runs_carried_over(tmp_path):
    path = seed(tmp_path, generate_runs(6))
    raw = lines(path)
    raw[3] = raw[3][: len(raw[3]) // 2]  # the third run (line 4) cut in the middle
    bad = json.loads(raw[5])
    bad["metrics"]["db1"]["connections"] = "many"  # line 6: a metric that is no number
    raw[5] = json.dumps(bad).encode()
    damaged = b"\n".join(raw) + b"\n"
    path.write_bytes(damaged)

    # check mode: named, nothing moved or written
    report, _paths, info = _report.run_report(day_results(6), "daily", str(tmp_path), timestamp=stamp(6),
                                              record=False)
    [failed] = [r for r in report["results"] if r["check"] == "report_history"]
    assert f"the history {path} has 2 damaged lines (line 4: not valid JSON" in failed["message"], failed["message"]
    assert "line 6: the run metric 'db1'/'connections' is not a finite number" in failed["message"]
    assert "4 readable runs" in failed["message"] and "left as it is" in failed["message"]
    assert failed["value"]["damaged_lines"] == [4, 6]
    assert report["changes"]["previous_at"] == stamp(5)  # the readable runs still count
    assert path.read_bytes() == damaged and not list(path.parent.glob("*.damaged-*")) and not info["recorded"]

    report, _paths, info = _report.run_report(day_results(6), "daily", str(tmp_path), timestamp=stamp(6))
    [failed] = [r for r in report["results"] if r["check"] == "report_history"]
    aside = Path(info["set_aside"])
    assert aside.read_bytes() == damaged  # the file as it was, under its damaged-<stamp> name
    assert f"the file as it was is kept as {aside}" in failed["message"]
    kept = _history.read_runs(str(path), "daily")  # raises on any damage
    assert [r["generated_at"] for r in kept] == [stamp(d) for d in (0, 1, 3, 5, 6)]
    assert info["recorded"] and info["runs"] == 5
    # the next run finds nothing wrong
    report, _paths, info = _report.run_report(day_results(7), "daily", str(tmp_path), timestamp=stamp(7))
    assert not [r for r in report["results"] if r["check"] == "report_history"] and info["problem"] is None


def test_damage_in_another_cadence_is_reported_as_a_warning(tmp_path):
    path = seed(tmp_path, generate_runs(5))
    raw = lines(path)
    raw[2] = b"{not json"
    path.write_bytes(b"\n".join(raw) + b"\n")
    report, _paths, _info = _report.run_report(day_results(5), "annually", str(tmp_path), timestamp=stamp(5),
                                               capacity="full")
    [warned] = [r for r in report["results"] if r["check"] == "report_history:daily"]
    assert warned["status"] == "warn" and warned["host"] == "localhost"
    assert f"The daily history {path} has 1 damaged line (line 3: not valid JSON" in warned["message"]
    assert report["capacity"]["volumes"][0]["points"] == 5  # 4 readable daily runs + this one
    assert path.read_bytes().count(b"{not json") == 1  # only a daily run touches the daily history


def test_newer_history_is_left_alone(tmp_path):
    path = seed(tmp_path, [])
    path.write_text(json.dumps({"schema_version": 3, "cadence": "daily"}) + "\n{}\n")
    before = path.read_text()
    report, _paths, info = _report.run_report(day_results(5), "daily", str(tmp_path), timestamp=stamp(5))
    assert not info["recorded"] and info["set_aside"] is None and info["schema_version"] == 3
    assert path.read_text() == before
    assert any(r["check"] == "report_history" and "newer" in r["message"] for r in report["results"])


def test_a_whole_document_claiming_schema_2_is_damage(tmp_path):
    path = seed(tmp_path, [])
    path.write_text(json.dumps({"schema_version": 2, "cadence": "daily", "runs": generate_runs(2)}))
    scan = _history.Scan(str(path), "daily").consume()
    assert scan.count == 0 and "schema 2 is JSON Lines" in scan.message()


def test_schema1_history_is_read_then_migrated_on_the_next_write(tmp_path):
    fixture = json.loads(SCHEMA1_FIXTURE.read_text())
    assert fixture["schema_version"] == 1 and len(fixture["runs"]) == 40
    old, new = tmp_path / "old", tmp_path / "new"
    path = old / "daily" / "history.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(SCHEMA1_FIXTURE.read_bytes())
    seed(new, fixture["runs"])  # the same runs as schema 2

    # Reading: a check-mode report of either file is the same page.
    pages = []
    for dest in (old, new):
        report, paths, info = _report.run_report(day_results(40), "annually", str(dest), timestamp=stamp(40),
                                                 capacity="full", record=False)
        pages.append((Path(paths["html_path"]).read_text(), report["capacity"]))
    assert pages[0] == pages[1]
    report, _paths, info = _report.run_report(day_results(40), "daily", str(old), timestamp=stamp(40), record=False)
    assert info["schema_version"] == 1 and info["runs"] == 40 and report["changes"]["previous_at"] == stamp(39)
    assert path.read_bytes() == SCHEMA1_FIXTURE.read_bytes()

    # Writing: the next real run rewrites it as schema 2, every run carried over (policy applied).
    report, _paths, info = _report.run_report(day_results(40), "daily", str(old), timestamp=stamp(40))
    assert info["recorded"] and info["migrated"] and info["runs"] == 41 and info["problem"] is None
    head = json.loads(lines(path)[0])
    assert head["schema_version"] == 2 and head["cadence"] == "daily" and head["format"] == _history.FORMAT
    entry = _history.entry_of(report)
    expected = _history.prune(fixture["runs"] + [entry], START + datetime.timedelta(days=40))
    assert _history.read_runs(str(path), "daily") == json.loads(json.dumps(expected))
    assert len(lines(path)) == 42 and all(line.startswith(b'{"generated_at":') for line in lines(path)[1:])
def test_check_mode_reads_but_does_not_record(tmp_path):
    path = seed(tmp_path, generate_runs(3))
    before = path.read_text()
    report, _paths, info = _report.run_report(day_results(3), "daily", str(tmp_path), timestamp=stamp(3), record=False)
    assert report["changes"]["previous_at"] == stamp(2)
    assert not info["recorded"] and path.read_text() == before


def _writer(dest, worker, count):
    for n in range(count):
        results = [result("database_size:app", f"w{worker}", "ok", n, None, "x")]
        _report.run_report(results, "daily", dest, timestamp=stamp(0))


def test_two_concurrent_writers_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in (1, 2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    runs = _history.read_runs(str(tmp_path / "daily" / "history.json"), "daily")  # raises on any damage
    seen = sorted((host, run["metrics"][host]["database_size:app"]) for run in runs for host in run["metrics"])
    assert seen == sorted((f"w{w}", n) for w in (1, 2) for n in range(15))
    assert len(list((tmp_path / "daily").glob("2*"))) == 30
    assert not list((tmp_path / "daily").glob("*.damaged-*"))


# --------------------------------------------------------------------------- Theil-Sen and capacity

def test_theil_sen_exact_line_and_outliers():
    xs = list(range(20))
    assert _trends.theil_sen(xs, [3 + 2 * x for x in xs]) == (2.0, 3.0)
    ys = [3 + 2 * x for x in xs]
    ys[4], ys[11], ys[17] = 500, -400, 9000  # 15 % wild points
    slope, intercept = _trends.theil_sen(xs, ys)
    assert slope == pytest.approx(2.0, abs=0.05) and intercept == pytest.approx(3.0, abs=1.0)
    assert _trends.theil_sen([1, 1, 1], [1, 2, 3]) is None
    assert _trends.theil_sen([5], [1]) is None


def _plan(runs, day):
    return _trends.capacity(runs, START + datetime.timedelta(days=day))


def test_forecast_of_400_noisy_days_hits_known_dates():
    growth = 0.1 * GIB  # 100 GiB used of 200 GiB at day 0
    runs = generate_runs(400, odd_days=(), growth=growth, used0=100 * GIB, noise=0.01, rng=None)
    vol = _plan(runs, 399)["volumes"][0]
    assert vol["growth_bytes_per_day"] == pytest.approx(growth, rel=0.03)
    # 80 % used = 160 GiB at day 600, 90 % at day 800, full at day 1000 (from day 399)
    assert vol["days_left"]["warn"] == pytest.approx(600 - 399, abs=15)
    assert vol["days_left"]["fail"] == pytest.approx(800 - 399, abs=20)
    assert vol["days_left"]["full"] == pytest.approx(1000 - 399, abs=25)
    db = _plan(runs, 399)["databases"][0]
    assert db["growth_bytes_per_day"] == pytest.approx(0.2 * GIB, rel=0.03)


def test_outlier_days_barely_move_the_forecast():
    calm = _plan(generate_runs(400, odd_days=(), growth=0.1 * GIB, noise=0.01), 399)["volumes"][0]
    odd = _plan(generate_runs(400, odd_days=(100, 250, 390), growth=0.1 * GIB, noise=0.01), 399)["volumes"][0]
    assert abs(odd["days_left"]["warn"] - calm["days_left"]["warn"]) <= 3
    assert odd["growth_bytes_per_day"] == pytest.approx(calm["growth_bytes_per_day"], rel=0.02)


def test_gap_in_history_is_handled():
    runs = generate_runs(200, gap=(60, 140), growth=0.1 * GIB, noise=0.01)
    assert len(runs) == 119
    vol = _plan(runs, 199)["volumes"][0]
    assert vol["growth_bytes_per_day"] == pytest.approx(0.1 * GIB, rel=0.05)


def test_verdict_names_volume_limit_and_days():
    plan = _plan(generate_runs(90), 89)
    texts = [v["text"] for v in plan["verdicts"]]
    volume = next(t for t in texts if "database volume" in t)
    assert re.search(r"db1's database volume grows [0-9.]+ MiB/day and reaches 80 % used \(the warn limit\) in "
                     r"\d+ days \(\d{4}-\d\d-\d\d\)", volume)
    assert any("connections peaked at 92 %" in t for t in texts)


def test_too_little_history_says_so():
    plan = _plan(generate_runs(2), 1)
    assert plan["volumes"][0]["growth_bytes_per_day"] is None
    assert "not enough history" in plan["verdicts"][-1]["text"]


def test_full_volume_is_due_now():
    runs = generate_runs(30, used0=199 * GIB, growth=0.1 * GIB, noise=0)
    vol = _plan(runs, 29)["volumes"][0]
    assert vol["days_left"] == {"warn": 0, "fail": 0, "full": 0}


def _sequence_runs(days, start_percent, per_day, odd_days=()):
    """Weekly-review runs whose most used sequence grows ``per_day`` points of its column's maximum."""
    runs = []
    for day in range(0, days, 7):
        pct = start_percent + per_day * day + (40.0 if day in odd_days else 0.0)
        runs.append({"generated_at": (START + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "status": "ok", "compacted": False, "checks": {"db1": {"db_review:app:sequences": "ok"}},
                     "metrics": {"db1": {"db_review:app:sequences.percent_used": round(pct, 2)}},
                     "thresholds": {"db1": {"db_review:app:sequences": {"warn": 85.0, "fail": 95.0}}}})
    return runs


def test_sequence_exhaustion_dates_from_the_weekly_review_history():
    # 40 % used at day 0, +0.1 point a day: 85 % at day 450, 95 % at day 550, 100 % at day 600
    runs = _sequence_runs(365, 40.0, 0.1, odd_days=(98, 203))
    plan = _plan(runs, 364)
    [seq] = plan["sequences"]
    assert seq["check"] == "db_review:app:sequences"
    assert seq["growth_percent_per_day"] == pytest.approx(0.1, rel=0.01)
    assert seq["days_left"]["warn"] == pytest.approx(450 - 364, abs=2)
    assert seq["days_left"]["fail"] == pytest.approx(550 - 364, abs=2)
    assert seq["days_left"]["full"] == pytest.approx(600 - 364, abs=2)
    text = next(v for v in plan["verdicts"] if "sequence" in v["text"])
    assert text["level"] == "warn"
    assert "db1: the most used sequence of db_review:app" in text["text"] and "widen the column" in text["text"]


def test_sequence_already_over_its_limit_is_due_now_and_rendered(tmp_path):
    plan = _plan(_sequence_runs(60, 96.0, 0.01), 59)
    assert plan["sequences"][0]["days_left"]["fail"] == 0
    html = "".join(_report._capacity_html(dict(plan, detail="summary"), {}))
    assert "Sequences (the most used of each database)" in html and "db_review:app" in html


# --------------------------------------------------------------------------- charts

def test_chart_draws_every_series_with_its_own_marker_and_a_data_table():
    t0 = START
    lines = {"app": [(t0 + datetime.timedelta(days=d), 10.0 + d) for d in range(10)],
             "cms": [(t0 + datetime.timedelta(days=d), 5.0) for d in range(0, 10, 2)]}
    svg = _trends.chart("db1: Database size", "bytes", lines, ident="c1")
    assert svg.count('class="pt"') == 15
    assert 'data-series="app" data-points="10"' in svg and 'data-series="cms" data-points="5"' in svg
    assert "<circle" in svg and "<rect" in svg  # two marker shapes
    assert 'stroke-dasharray="6 3"' in svg  # and two line patterns
    assert svg.count("<tr>") == 11  # header + 10 timestamps
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert _trends.chart("empty", "", {}) == ""


def test_long_series_keep_a_bounded_number_of_markers():
    lines = {"a": [(START + datetime.timedelta(days=d), float(d)) for d in range(400)]}
    svg = _trends.chart("t", "", lines)
    assert 60 <= svg.count('class="pt"') <= 70
    assert 'data-points="400"' in svg


def test_annual_report_with_seeded_history_has_plan_and_charts(tmp_path):
    seed(tmp_path, generate_runs(120))
    report, paths, _info = _report.run_report(day_results(120), "annually", str(tmp_path), timestamp=stamp(120),
                                              capacity="full", run={"check_mode": False})
    jsonschema.validate(json.loads(Path(paths["json_path"]).read_text()), SCHEMA)
    page = Path(paths["html_path"]).read_text()
    assert "Capacity plan" in page and 'class="projection"' in page
    assert page.count("<svg") >= 6
    assert "<script" not in page and "src=" not in page and "@import" not in page
    summary, paths2, _ = _report.run_report(day_results(121), "monthly", str(tmp_path), timestamp=stamp(121),
                                            capacity="summary")
    assert summary["capacity"]["verdicts"] and 'class="projection"' not in Path(paths2["html_path"]).read_text()


def test_unknown_capacity_level_is_refused(tmp_path):
    with pytest.raises(_report.ReportError, match="capacity must be one of"):
        _report.run_report([], "daily", str(tmp_path), capacity="everything")


def test_random_histories_never_break_the_page(tmp_path):
    rng = random.Random(7)
    runs = generate_runs(40)
    for run in runs:
        if rng.random() < 0.3:
            run["metrics"].pop("db1", None)
    seed(tmp_path, runs)
    _report.run_report(day_results(40), "daily", str(tmp_path), timestamp=stamp(40), capacity="full")
    assert os.path.exists(tmp_path / "daily" / "latest" / "report.html")


def drill_result(rto, rpo, outage=None, kind="drill"):
    return result("dr_drill", "dr1", "ok", {"kind": kind, "rto_seconds": rto, "rpo_seconds": rpo,
                                            "user_outage_seconds": outage}, {"rto_seconds": 900, "rpo_seconds": 60},
                  "DR %s" % kind)


def test_dr_drills_are_kept_and_shown_against_earlier_drills(tmp_path):
    _report.run_report([drill_result(40.0, 1.5)], "quarterly", str(tmp_path), timestamp=stamp(0))
    report, paths, info = _report.run_report([drill_result(95.0, 1.2)], "quarterly", str(tmp_path),
                                             timestamp=stamp(90), run={"check_mode": False})
    assert info["recorded"] and info["runs"] == 2
    moved = {v["metric"]: v for v in report["changes"]["values"]}
    assert moved["dr_drill.rto_seconds"]["before"] == 40.0 and moved["dr_drill.rto_seconds"]["after"] == 95.0
    assert "dr_drill.rpo_seconds" not in moved  # 0.3 s is not news
    # the annual rehearsal's report charts it with the quarterly drills (the histories of every cadence)
    _report.run_report([drill_result(120.0, 2.0, outage=61.5, kind="rehearsal")], "annually", str(tmp_path),
                       timestamp=stamp(100))
    annual = _history.read_runs(_history.history_path(str(tmp_path), "annually"), "annually")
    assert annual[-1]["metrics"]["dr1"]["dr_drill.user_outage_seconds"] == 61.5
    trends = _trends.series(_history.read_runs(_history.history_path(str(tmp_path), "quarterly"), "quarterly")
                            + annual)
    assert [value for _when, value in trends["dr1"]["dr_drill"]["rto_seconds"]] == [40.0, 95.0, 120.0]
    assert "DR drills: RTO, RPO, user-visible outage" in Path(paths["html_path"]).read_text()


# --------------------------------------------------------------------------- streaming and memory

def test_trends_give_back_the_numbers_as_the_history_had_them():
    runs = generate_runs(6)
    runs[2]["metrics"]["db1"]["connections"] = 40  # an int among floats
    runs[4]["metrics"]["db1"]["database_size:app"] = 2 ** 40 + 0.5  # a float among ints
    trends = _trends.gather(reversed(runs))  # any order in, time order out
    assert dict(trends) == _trends.series(runs)
    conn = trends["db1"]["connections"]["connections"]
    assert [type(v) for _w, v in conn] == [float, float, int, float, float, float]
    sizes = [v for _w, v in trends["db1"]["database_size"]["app"]]
    assert sizes[4] == 2 ** 40 + 0.5 and all(type(v) is int for i, v in enumerate(sizes) if i != 4)
    used = trends["db1"]["__used"]["database"]
    assert used[0][1] == runs[0]["metrics"]["db1"]["disk_free:database.bytes_total"] - runs[0]["metrics"]["db1"][
        "disk_free:database.bytes_free"]
    assert "db9" not in trends and trends.get("db9") is None


def _wide_runs(days, hosts):
    for day in range(days):
        results = [r for h in range(hosts) for r in day_results(day, host=f"db{h:03d}")]
        yield _history.entry_of(_report.build_report(results, "daily", timestamp=stamp(day)))


def test_reading_a_history_holds_one_run_at_a_time(tmp_path):
    """The report's read of a history costs what the charts and the plan keep, not the file."""
    path = seed(tmp_path, _wide_runs(60, 60))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        trends = _trends.Trends()
        scan = _history.Scan(str(path), "daily")
        for run in scan.runs():
            trends.add(run)
        plan = trends.capacity(START + datetime.timedelta(days=60))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.count == 60 and not scan.message() and len(plan["volumes"]) == 60
    # the file parsed whole takes several times its size; one run a time and the kept series a fraction
    assert peak < size / 2, (peak, size)
