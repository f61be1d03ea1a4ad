"""The access-log backend (plugins/module_utils/_http_log.py): parsing, percentiles, positions."""

import os

from ansible_collections.upkeep.runbooks.plugins.module_utils import _http_log as h

LINE = ('203.0.113.7 - - [02/Dec/2026:09:00:00 +0000] "GET /orders/42/lines/7?x=1 HTTP/1.1" 502 157 '
        '"https://shop.example/a \\"q\\"" "Mozilla/5.0 (X11)" 0.731 0.730')


def _tally():
    return h.Tally(h.compile_patterns(h.DEFAULT_HEALTH_CHECK_PATHS, "health"),
                   h.compile_patterns(h.DEFAULT_STATIC_PATHS, "static"))


def test_parse_line_combined_plus_request_time():
    assert h.parse_line(LINE) == ("GET", "/orders/42/lines/7", 502, 0.731)
    # $upstream_response_time may be "-" or absent; a bad request line has no method
    assert h.parse_line(LINE.replace(" 0.731 0.730", " 0.002 -"))[3] == 0.002
    assert h.parse_line(LINE.replace(" 0.731 0.730", " 0.002")) is not None
    bad = '198.51.100.1 - - [02/Dec/2026:09:00:00 +0000] "-" 400 0 "-" "-" 0.000 -'
    assert h.parse_line(bad) == ("-", "-", 400, 0.0)
    # combined without $request_time is not guessed at
    assert h.parse_line(LINE.rsplit(" ", 2)[0]) is None


def test_nearest_rank_percentiles():
    values = [float(i) for i in range(1, 21)]  # 1..20
    assert h.percentile(values, 50) == 10.0
    assert h.percentile(values, 95) == 19.0
    assert h.percentile(values, 99) == 20.0
    assert h.percentile([0.5], 95) == 0.5
    assert h.percentile([], 95) is None


def test_ids_are_grouped_and_exclusions_counted():
    tally = _tally()
    tally.add(LINE)
    tally.add(LINE.replace("/orders/42/lines/7", "/orders/9/lines/3"))
    tally.add(LINE.replace("/orders/42/lines/7?x=1", "/healthz/"))
    tally.add(LINE.replace("/orders/42/lines/7?x=1", "/static/app.css"))
    tally.add("garbage")
    summary = tally.summary(5)
    assert summary["requests"] == 2
    assert summary["slowest_paths"][0]["path"] == "/orders/{id}/lines/{id}"
    assert summary["excluded"] == {"health_checks": 1, "static": 1}
    assert (summary["unparsed_lines"], summary["unparsed_sample"]) == (1, "garbage")


def test_copytruncate_reads_from_start_and_partial_line_waits(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(LINE + "\n" + LINE + "\n")
    tally = _tally()
    position, _sources, notes = h.collect(str(log), None, [], tally)
    assert position["offset"] == os.path.getsize(log)
    assert tally.summary(1)["requests"] == 2 and notes
    with open(log, "w") as handle:  # copytruncate, then one full line and one being written
        handle.write(LINE + "\n" + LINE[:20])
    tally = _tally()
    position2, _sources, notes = h.collect(str(log), position, [], tally)
    assert tally.summary(1)["requests"] == 1
    assert position2["offset"] == len(LINE) + 1
    assert any("truncated" in note for note in notes)


def test_histogram_percentiles_equal_the_full_list():
    import random

    rng = random.Random(12)
    times = [round(rng.expovariate(8), 3) for _ in range(5000)] + [0.0, 12.345]
    hist = h.Histogram()
    for value in times:
        hist.add(value)
    ordered = sorted(times)
    for pct in (1, 50, 95, 99, 100):
        assert hist.percentile(pct) == h.percentile(ordered, pct), pct
    assert hist.max() == 12.345 and hist.total == len(times)
    assert len(hist.counts) < len(times)
