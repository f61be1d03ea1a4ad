"""http_log_stats against a real nginx in front of the sample app (gunicorn) on loopback.

A known mix of requests (fast, 500/503, slow through a path of their own, health checks, static files,
404s) must give exactly the counts it was made of; a log rotated mid-period must lose nothing and count
nothing twice; check mode must count the same and not move the position.
"""

import math

import pytest

from tests.fixtures.web import Nginx, SampleAppUpstream
from tests.integration.module_runner import run_module

pytestmark = pytest.mark.integration

for _module in ("django", "gunicorn"):
    pytest.importorskip(_module, reason="the sample app's requirements (lab/app/requirements.txt) are not installed")

SLOW = 1.0  # seconds the slow requests sleep upstream: their $request_time is at least this


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("web")
    upstream = SampleAppUpstream(workdir).start()
    nginx = None
    try:
        nginx = Nginx(workdir, upstream).start()
        yield nginx
    finally:
        if nginx:
            nginx.stop()
        upstream.stop()


def _logged_times(lines):
    """Request times of the counted lines, parsed independently of the module (last-but-one field)."""
    times = []
    for line in lines:
        path = line.split('"')[1].split(" ")[1].split("?")[0]
        if path in ("/healthz/", "/favicon.ico") or path.startswith("/static/"):
            continue
        times.append(float(line.rsplit(" ", 2)[1]))
    return sorted(times)


def _nearest_rank(values, pct):
    return values[max(1, math.ceil(pct / 100 * len(values))) - 1]


def _send(web, mix):
    for path, count in mix:
        for _ in range(count):
            web.get(path)


MIX = [
    ("/lab/fault/?status=200", 36),
    ("/nope/", 2),                          # 404 from Django: a request, not an error
    ("/lab/fault/?status=500", 5),
    ("/lab/fault/?status=503", 3),
    ("/api/reports/?delay=%s" % SLOW, 4),    # slow, 200
    ("/healthz/", 6),                       # 503 here (no database): a health check, not counted
    ("/static/app.css", 4),                 # static, not counted
    ("/favicon.ico", 2),                    # static pattern, not counted
]


def test_known_mix_then_rotation_then_nothing(web, tmp_path):
    state = tmp_path / "state.json"
    args = {"path": str(web.access_log), "state_file": str(state)}

    _send(web, MIX)
    web.wait_logged(62)
    lines = web.access_log.read_text().splitlines()
    assert len(lines) == 62

    # Check mode counts the same and leaves no position behind.
    checked = run_module("http_log_stats", args, check_mode=True)
    assert not checked.failed, checked
    assert not state.exists()
    res = run_module("http_log_stats", args)
    assert not res.failed, res
    for key in ("requests", "errors_5xx", "p50_seconds", "p95_seconds", "p99_seconds", "status_classes"):
        assert checked[key] == res[key], key

    assert res["requests"] == 50
    assert res["errors_5xx"] == 8
    assert res["error_rate_percent"] == 16.0
    assert res["status_classes"] == {"1xx": 0, "2xx": 40, "3xx": 0, "4xx": 2, "5xx": 8}
    assert res["excluded"] == {"health_checks": 6, "static": 6}
    assert res["unparsed_lines"] == 0
    assert res["lines_read"] == 62
    times = _logged_times(lines)
    assert len(times) == 50
    assert res["p50_seconds"] == _nearest_rank(times, 50)
    assert res["p95_seconds"] == _nearest_rank(times, 95)
    assert res["p99_seconds"] == _nearest_rank(times, 99)
    # 4 of 50 are slow: rank 48 (p95) is one of them, whatever the machine's speed.
    assert res["p95_seconds"] >= SLOW
    assert res["slowest_paths"][0]["path"] == "/api/reports/"
    assert res["slowest_paths"][0]["requests"] == 4
    assert res["slowest_paths"][0]["p95_seconds"] >= SLOW
    fault = [p for p in res["slowest_paths"] if p["path"] == "/lab/fault/"][0]
    assert (fault["requests"], fault["errors_5xx"]) == (44, 8)
    assert res["changed"] is True
    assert res["period"]["from"] is None

    # Period 2: six requests, logrotate renames the file, six more (and a health check).
    _send(web, [("/lab/fault/?status=500", 2), ("/lab/fault/?status=200", 4)])
    web.wait_logged(68)
    web.rotate()
    _send(web, [("/lab/fault/?status=502", 1), ("/lab/fault/?status=200", 5), ("/healthz/", 1)])
    web.wait_logged(75)
    res2 = run_module("http_log_stats", args)
    assert not res2.failed, res2
    assert res2["requests"] == 12
    assert res2["errors_5xx"] == 3
    assert res2["error_rate_percent"] == 25.0
    assert res2["excluded"] == {"health_checks": 1, "static": 0}
    assert [s["path"] for s in res2["sources"]] == [str(web.access_log) + ".1", str(web.access_log)]
    assert res2["sources"][0]["from"] == res["sources"][-1]["to"]
    assert res2["sources"][1]["from"] == 0
    assert any("rotated" in note for note in res2["notes"])
    assert res2["period"]["from"] == res["period"]["to"]

    # Nothing new: nothing counted, nothing counted twice.
    res3 = run_module("http_log_stats", args)
    assert not res3.failed, res3
    assert (res3["requests"], res3["errors_5xx"], res3["error_rate_percent"], res3["p95_seconds"]) == (
        0, 0, None, None)
    assert res3["changed"] is False


def test_rotated_file_gone_says_what_was_lost(web, tmp_path):
    state = tmp_path / "state.json"
    args = {"path": str(web.access_log), "state_file": str(state)}
    assert not run_module("http_log_stats", args).failed  # position at the end of the current file
    base = web.lines_logged()
    _send(web, [("/lab/fault/?status=200", 3)])
    web.wait_logged(base + 3)  # in the file that is then rotated and compressed: lost to the next run
    web.rotate()  # replaces the .1 of the test before
    (web.access_log.parent / "access.log.1").rename(web.access_log.parent / "access.log.1.gz")  # compressed
    _send(web, [("/lab/fault/?status=500", 2)])
    web.wait_logged(2)
    res = run_module("http_log_stats", args)
    assert not res.failed, res
    assert (res["requests"], res["errors_5xx"]) == (2, 2)
    assert any("no rotated file" in note and "were not read" in note for note in res["notes"]), res["notes"]


def test_wrong_format_fails_clearly(tmp_path):
    log = tmp_path / "access.log"
    log.write_text('127.0.0.1 - - [02/Dec/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8"\n')
    res = run_module("http_log_stats", {"path": str(log), "state_file": str(tmp_path / "s.json")})
    assert res.failed
    assert "none of its 1 new lines is in the expected format" in res["msg"]
    assert "$request_time" in res["msg"]
    assert not (tmp_path / "s.json").exists()


def test_missing_log_fails_clearly(tmp_path):
    res = run_module("http_log_stats", {"path": str(tmp_path / "nope.log"), "state_file": str(tmp_path / "s.json")})
    assert res.failed
    assert res["msg"].startswith("Failed to read the access log %s" % (tmp_path / "nope.log"))
