"""Maintenance windows (plugins/module_utils/_window.py and the maintenance_window module), with a fixed clock.

Time zones of the calendars used below (2026):
  Europe/Berlin     CET +01:00; CEST +02:00 from Sun 29 March 02:00 (-> 03:00) to Sun 25 October 03:00 (-> 02:00)
  America/New_York  EST -05:00; EDT -04:00 from Sun 8 March 02:00 (-> 03:00) to Sun 1 November 02:00 (-> 01:00)
"""

import datetime
import random
from unittest import mock

import pytest
from dateutil import rrule as dateutil_rrule

from ansible_collections.upkeep.runbooks.plugins.module_utils import _window as w
from ansible_collections.upkeep.runbooks.plugins.modules import maintenance_window
from tests.unit.module_helpers import run_module_main

UTC = datetime.timezone.utc

WEEKLY = {
    "name": "weekly-patch",
    "rrule": "DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH",
    "duration": "4h",
    "cutoff": "45m",
}
YEAR_END = {"name": "year-end freeze", "start": "2026-12-18", "end": "2027-01-03",
            "reason": "no changes over the holidays"}


def ev(windows, now, **kwargs):
    return w.evaluate(windows, now=now, **kwargs)


def window(**changes):
    out = dict(WEEKLY)
    out.update(changes)
    return out


def error(windows=None, **kwargs):
    with pytest.raises(w.WindowError) as info:
        w.evaluate(windows if windows is not None else [WEEKLY], now=kwargs.pop("now", "2026-12-08T12:00:00Z"),
                   **kwargs)
    return info.value.msg


# ------------------------------------------------------------------ inside, outside, cutoff


def test_inside_a_window_with_time_left_and_the_cutoff():
    answer = ev([WEEKLY], "2026-12-08T23:48:00+01:00")
    assert answer["inside"] is True
    assert answer["may_start"] is True
    assert answer["may_continue"] is False
    assert answer["frozen"] is None
    assert answer["now"] == "2026-12-08T22:48:00Z"
    assert answer["window"] == {
        "name": "weekly-patch", "timezone": "Europe/Berlin",
        "start": "2026-12-08T22:00:00+01:00", "end": "2026-12-09T02:00:00+01:00",
        "cutoff_at": "2026-12-09T01:15:00+01:00",
        "start_utc": "2026-12-08T21:00:00Z", "end_utc": "2026-12-09T01:00:00Z",
        "cutoff_at_utc": "2026-12-09T00:15:00Z",
        "duration_seconds": 14400, "cutoff_seconds": 2700,
    }
    assert answer["seconds_left"] == 2 * 3600 + 12 * 60
    assert answer["seconds_to_cutoff"] == 3600 + 27 * 60
    assert answer["reason"] == "inside window 'weekly-patch' until 02:00 CET (2h12m left, new hosts until 01:15)"
    # While a host may start, the next window is the occurrence after this one.
    assert answer["next_window"]["start"] == "2026-12-10T22:00:00+01:00"
    assert answer["next_window"]["opens_at"] == "2026-12-10T22:00:00+01:00"
    assert answer["next_window"]["seconds_until"] == 86400 + 22 * 3600 + 12 * 60   # Tue 23:48 -> Thu 22:00
    assert "started_at" not in answer and "started_window" not in answer


def test_outside_every_window_names_the_next_one():
    answer = ev([WEEKLY], "2026-12-05T18:00:00+01:00")
    assert (answer["inside"], answer["may_start"], answer["window"]) == (False, False, None)
    assert answer["seconds_left"] is None and answer["seconds_to_cutoff"] is None
    assert answer["reason"] == "outside every window; next 'weekly-patch' starts Tue 2026-12-08 22:00 CET (in 3d 4h)"
    assert answer["next_window"]["start_utc"] == "2026-12-08T21:00:00Z"
    assert answer["next_window"]["seconds_until"] == 3 * 86400 + 4 * 3600


@pytest.mark.parametrize("now, inside, may_start", [
    ("2026-12-08T21:59:59+01:00", False, False),   # a second before the start
    ("2026-12-08T22:00:00+01:00", True, True),     # the start is inside
    ("2026-12-09T01:14:59+01:00", True, True),     # last second before the cutoff
    ("2026-12-09T01:15:00+01:00", True, False),    # at the cutoff no new host starts
    ("2026-12-09T01:59:59+01:00", True, False),
    ("2026-12-09T02:00:00+01:00", False, False),   # the end is outside
])
def test_window_bounds_and_cutoff(now, inside, may_start):
    answer = ev([WEEKLY], now)
    assert (answer["inside"], answer["may_start"]) == (inside, may_start)


def test_past_the_cutoff_says_so_and_keeps_the_time_left():
    answer = ev([WEEKLY], "2026-12-09T01:30:00+01:00")
    assert answer["seconds_left"] == 1800
    assert answer["seconds_to_cutoff"] == 0
    assert answer["reason"] == (
        "inside window 'weekly-patch' until 02:00 CET (30m left) but past its cutoff at 01:15: no new host may "
        "start; next 'weekly-patch' starts Thu 2026-12-10 22:00 CET (in 1d 20h)")
    assert answer["result"]["status"] == "fail"


def test_a_second_before_the_start():
    answer = ev([WEEKLY], "2026-12-08T21:59:59+01:00")
    assert answer["reason"] == "outside every window; next 'weekly-patch' starts Tue 2026-12-08 22:00 CET (in 1s)"


def test_cutoff_defaults_to_zero():
    answer = ev([window(cutoff=None)], "2026-12-09T01:59:00+01:00")
    assert answer["may_start"] is True
    assert answer["window"]["cutoff_at"] == answer["window"]["end"]


# ------------------------------------------------------------------ started_at: a host that started finishes


def test_rollout_started_inside_finishes_after_the_cutoff():
    answer = ev([WEEKLY], "2026-12-09T01:30:00+01:00", started_at="2026-12-08T22:05:00+01:00")
    assert answer["inside"] is True
    assert answer["may_start"] is False
    assert answer["may_continue"] is True
    assert answer["started_at"] == "2026-12-08T21:05:00Z"
    assert answer["started_window"]["start"] == "2026-12-08T22:00:00+01:00"
    assert answer["reason"] == (
        "inside window 'weekly-patch' until 02:00 CET (30m left) but past its cutoff at 01:15: no new host may "
        "start; the rollout that started Tue 2026-12-08 22:05 CET in window 'weekly-patch' finishes the hosts it "
        "started; next 'weekly-patch' starts Thu 2026-12-10 22:00 CET (in 1d 20h)")
    assert answer["result"]["status"] == "warn"


def test_rollout_started_inside_finishes_after_the_end():
    answer = ev([WEEKLY], "2026-12-09T03:10:00+01:00", started_at="2026-12-09T01:00:00+01:00")
    assert (answer["inside"], answer["may_start"], answer["may_continue"]) == (False, False, True)
    assert answer["reason"].startswith("outside every window; the rollout that started Wed 2026-12-09 01:00 CET in "
                                       "window 'weekly-patch' finishes the hosts it started; next")


def test_started_at_does_not_open_the_window_for_new_hosts():
    # Still before the cutoff: new hosts may start, whatever started_at says.
    answer = ev([WEEKLY], "2026-12-08T23:00:00+01:00", started_at="2026-12-08T22:00:00+01:00")
    assert (answer["may_start"], answer["may_continue"]) == (True, True)
    assert answer["result"]["status"] == "ok"
    assert "rollout" not in answer["reason"]


@pytest.mark.parametrize("started_at, why", [
    ("2026-12-09T01:20:00+01:00", "after the cutoff"),
    ("2026-12-08T20:00:00+01:00", "before the window"),
])
def test_rollout_started_outside_may_not_continue(started_at, why):
    answer = ev([WEEKLY], "2026-12-09T01:30:00+01:00", started_at=started_at)
    assert answer["may_continue"] is False, why
    assert answer["result"]["status"] == "fail"
    assert "did not start inside an open window" in answer["reason"]


def test_rollout_started_in_a_freeze_may_not_continue():
    freeze = {"name": "incident", "start": "2026-12-08T21:30:00+01:00", "end": "2026-12-08T22:30:00+01:00"}
    answer = ev([WEEKLY], "2026-12-08T23:00:00+01:00", started_at="2026-12-08T22:10:00+01:00", freezes=[freeze])
    assert (answer["may_start"], answer["may_continue"]) == (True, False)
    assert answer["started_window"]["name"] == "weekly-patch"


def test_started_at_with_a_naive_time_is_utc_and_epoch_seconds_work():
    naive = ev([WEEKLY], "2026-12-09T00:30:00Z", started_at="2026-12-08T21:05:00")
    epoch = ev([WEEKLY], datetime.datetime(2026, 12, 9, 0, 30, tzinfo=UTC).timestamp(),
               started_at=str(int(datetime.datetime(2026, 12, 8, 21, 5, tzinfo=UTC).timestamp())))
    assert naive["started_at"] == "2026-12-08T21:05:00Z"
    assert epoch["now"] == "2026-12-09T00:30:00Z" and epoch["started_at"] == "2026-12-08T21:05:00Z"
    assert naive["may_continue"] and epoch["may_continue"]


# ------------------------------------------------------------------ freezes


def test_freeze_overrides_a_window():
    answer = ev([WEEKLY], "2026-12-22T23:00:00+01:00", freezes=[YEAR_END])
    assert (answer["inside"], answer["may_start"]) == (True, False)
    assert answer["frozen"] == {
        "name": "year-end freeze", "reason": "no changes over the holidays", "timezone": "Europe/Berlin",
        "start": "2026-12-18T00:00:00+01:00", "end": "2027-01-04T00:00:00+01:00",
        "start_utc": "2026-12-17T23:00:00Z", "end_utc": "2027-01-03T23:00:00Z",
    }
    assert answer["reason"] == (
        "frozen: 'year-end freeze' until 2027-01-04 00:00 CET (no changes over the holidays); inside window "
        "'weekly-patch' until 02:00 CET, no new host may start; next 'weekly-patch' starts Tue 2027-01-05 22:00 CET "
        "(in 13d 23h)")
    assert answer["result"]["status"] == "fail"
    assert answer["result"]["value"]["frozen"] == "year-end freeze"


def test_freeze_applies_outside_windows_too():
    answer = ev([WEEKLY], "2026-12-27T12:00:00+01:00", freezes=[YEAR_END])
    assert answer["frozen"]["name"] == "year-end freeze"
    assert answer["reason"].startswith("frozen: 'year-end freeze' until 2027-01-04 00:00 CET (no changes over the "
                                       "holidays); next 'weekly-patch' starts Tue 2027-01-05 22:00 CET")


def test_window_that_runs_into_a_freeze_closes_for_new_hosts_when_it_starts():
    freezes = [YEAR_END]
    before = ev([WEEKLY], "2026-12-17T23:30:00+01:00", freezes=freezes)
    after = ev([WEEKLY], "2026-12-18T00:30:00+01:00", freezes=freezes)
    assert before["may_start"] is True and before["next_window"]["start"] == "2027-01-05T22:00:00+01:00"
    assert after["may_start"] is False and after["frozen"]["name"] == "year-end freeze"


def test_freeze_ending_inside_an_occurrence_opens_it_at_the_end_of_the_freeze():
    freeze = {"name": "release", "start": "2027-01-01", "end": "2027-01-07T23:00:00+01:00", "reason": ""}
    answer = ev([WEEKLY], "2027-01-06T12:00:00+01:00", freezes=[freeze])
    nxt = answer["next_window"]
    assert (nxt["start"], nxt["opens_at"], nxt["opens_at_utc"]) == (
        "2027-01-07T22:00:00+01:00", "2027-01-07T23:00:00+01:00", "2027-01-07T22:00:00Z")
    assert answer["reason"] == (
        "frozen: 'release' until 2027-01-07 23:00 CET; next 'weekly-patch' (from Thu 2027-01-07 22:00 CET) opens for "
        "new hosts at Thu 2027-01-07 23:00 CET (in 1d 11h)")
    # Inside that occurrence, during the freeze: the same occurrence is next, at the end of the freeze.
    during = ev([WEEKLY], "2027-01-07T22:30:00+01:00", freezes=[freeze])
    assert during["inside"] and not during["may_start"]
    assert during["next_window"]["opens_at"] == "2027-01-07T23:00:00+01:00"
    assert during["next_window"]["seconds_until"] == 1800
    assert ev([WEEKLY], "2027-01-07T23:00:00+01:00", freezes=[freeze])["may_start"] is True


def test_freeze_ending_after_the_cutoff_skips_the_occurrence():
    freeze = {"name": "late", "start": "2027-01-07T21:00:00+01:00", "end": "2027-01-08T01:20:00+01:00"}
    answer = ev([WEEKLY], "2027-01-07T20:00:00+01:00", freezes=[freeze])
    assert answer["next_window"]["start"] == "2027-01-12T22:00:00+01:00"


def test_chained_freezes_are_jumped_over():
    freezes = [{"name": "a", "start": "2027-01-01", "end": "2027-01-31"},
               {"name": "b", "start": "2027-01-31T12:00:00Z", "end": "2027-03-01T00:00:00Z"},
               {"name": "c", "start": "2027-02-28T23:00:00+00:00", "end": "2027-03-05"}]
    answer = ev([WEEKLY], "2027-01-02T00:00:00Z", freezes=freezes)
    assert answer["frozen"]["name"] == "a"
    assert answer["next_window"]["start"] == "2027-03-09T22:00:00+01:00"


def test_freeze_with_its_own_time_zone_and_an_offset():
    freeze = {"name": "US holiday", "start": "2026-11-26", "end": "2026-11-26", "timezone": "America/New_York",
              "reason": "Thanksgiving"}
    answer = ev([WEEKLY], "2026-11-26T23:30:00+01:00", freezes=[freeze])
    assert answer["frozen"]["start"] == "2026-11-26T00:00:00-05:00"
    assert answer["frozen"]["end"] == "2026-11-27T00:00:00-05:00"
    assert answer["frozen"]["end_utc"] == "2026-11-27T05:00:00Z"
    assert answer["reason"].startswith("frozen: 'US holiday' until 2026-11-27 00:00 EST (Thanksgiving)")
    assert ev([WEEKLY], "2026-11-27T06:00:00+01:00", freezes=[freeze])["frozen"] is None


# ------------------------------------------------------------------ excluded dates


def test_excluded_date_drops_that_occurrence():
    answer = ev([WEEKLY], "2026-12-24T23:00:00+01:00", excluded_dates=["2026-12-24"])
    assert answer["inside"] is False
    assert answer["next_window"]["start"] == "2026-12-29T22:00:00+01:00"
    before = ev([WEEKLY], "2026-12-23T12:00:00+01:00", excluded_dates=["2026-12-24"])
    assert before["next_window"]["start"] == "2026-12-29T22:00:00+01:00"


def test_excluded_date_is_the_local_date_the_window_starts_on():
    # The occurrence of Thursday 24 December runs to 02:00 on the 25th: excluding the 25th does not touch it.
    answer = ev([WEEKLY], "2026-12-25T01:00:00+01:00", excluded_dates=["2026-12-25"])
    assert answer["inside"] is True and answer["window"]["start"] == "2026-12-24T22:00:00+01:00"


def test_per_window_excluded_dates_add_to_the_common_ones():
    mine = window(excluded_dates=["2026-12-29"])
    answer = ev([mine], "2026-12-23T12:00:00+01:00", excluded_dates=["2026-12-24"])
    assert answer["next_window"]["start"] == "2026-12-31T22:00:00+01:00"


def test_many_excluded_occurrences_in_a_row():
    daily = {"name": "d", "rrule": "FREQ=DAILY;BYHOUR=3", "timezone": "UTC", "duration": "1h"}
    days = [(datetime.date(2026, 12, 1) + datetime.timedelta(days=n)).isoformat() for n in range(60)]
    answer = ev([daily], "2026-11-30T12:00:00Z", excluded_dates=days)
    assert answer["next_window"]["start"] == "2027-01-30T03:00:00Z"


# ------------------------------------------------------------------ calendars: week, month, year boundaries


def test_next_window_across_a_week_boundary():
    sunday = {"name": "sunday-night", "rrule": "DTSTART;TZID=Europe/Berlin:20260104T230000\nRRULE:FREQ=WEEKLY",
              "duration": "3h", "cutoff": "1h"}
    answer = ev([sunday], "2026-12-07T10:00:00+01:00")   # a Monday
    assert answer["next_window"]["start"] == "2026-12-13T23:00:00+01:00"
    inside = ev([sunday], "2026-12-14T00:30:00+01:00")   # Monday 00:30, in Sunday's window
    assert inside["may_start"] and inside["window"]["start"] == "2026-12-13T23:00:00+01:00"
    assert inside["reason"] == "inside window 'sunday-night' until 02:00 CET (1h30m left, new hosts until 01:00)"


def test_window_spanning_midnight_and_a_month_end():
    month_end = {"name": "month-end", "rrule": "DTSTART;TZID=Europe/Berlin:20260131T230000\n"
                                               "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1", "duration": "3h", "cutoff": "30m"}
    inside = ev([month_end], "2026-05-01T01:00:00+02:00")
    assert inside["may_start"] is True
    assert (inside["window"]["start"], inside["window"]["end"], inside["window"]["cutoff_at"]) == (
        "2026-04-30T23:00:00+02:00", "2026-05-01T02:00:00+02:00", "2026-05-01T01:30:00+02:00")
    assert inside["next_window"]["start"] == "2026-05-31T23:00:00+02:00"
    # February, and the turn of the year.
    assert ev([month_end], "2027-02-10T00:00:00Z")["next_window"]["start"] == "2027-02-28T23:00:00+01:00"
    new_year = ev([month_end], "2027-01-01T01:10:00+01:00")
    assert new_year["inside"] and new_year["window"]["start"] == "2026-12-31T23:00:00+01:00"
    assert new_year["reason"] == "inside window 'month-end' until 02:00 CET (50m left, new hosts until 01:30)"


def test_long_window_shows_dates_when_the_end_is_more_than_a_day_away():
    weekend = {"name": "weekend", "rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=8", "timezone": "Europe/Berlin",
               "duration": "36h", "cutoff": "12h"}
    answer = ev([weekend], "2026-12-05T09:00:00+01:00")
    assert answer["reason"] == ("inside window 'weekend' until Sun 2026-12-06 20:00 CET (1d 11h left, new hosts "
                                "until 08:00)")


def test_monthly_rule_by_weekday_position():
    patch_tuesday = {"name": "after-patch-tuesday", "rrule": "RRULE:FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22",
                     "timezone": "America/New_York", "duration": "4h", "cutoff": "1h"}
    answer = ev([patch_tuesday], "2026-12-09T12:00:00Z")
    assert answer["next_window"]["start"] == "2027-01-12T22:00:00-05:00"


# ------------------------------------------------------------------ DST


def test_berlin_spring_forward_start_in_the_missing_hour():
    # 02:30 does not exist on 29 March: read with the offset before the gap (+01:00), i.e. 01:30 UTC = 03:30 CEST.
    night = {"name": "night", "rrule": "DTSTART;TZID=Europe/Berlin:20260301T023000\nRRULE:FREQ=DAILY",
             "duration": "1h"}
    before = ev([night], "2026-03-28T12:00:00Z")
    assert before["next_window"]["start"] == "2026-03-29T03:30:00+02:00"
    assert before["next_window"]["start_utc"] == "2026-03-29T01:30:00Z"
    assert before["reason"] == "outside every window; next 'night' starts Sun 2026-03-29 03:30 CEST (in 13h30m)"
    inside = ev([night], "2026-03-29T01:45:00Z")
    assert inside["window"]["start"] == "2026-03-29T03:30:00+02:00"
    assert inside["window"]["end"] == "2026-03-29T04:30:00+02:00"
    assert not ev([night], "2026-03-29T01:15:00Z")["inside"]
    # The day before and after keep 02:30 local.
    assert ev([night], "2026-03-28T01:45:00Z")["window"]["start"] == "2026-03-28T02:30:00+01:00"
    assert ev([night], "2026-03-30T00:45:00Z")["window"]["start"] == "2026-03-30T02:30:00+02:00"


def test_berlin_window_across_spring_forward_lasts_its_real_duration():
    night = {"name": "night", "rrule": "FREQ=DAILY;BYHOUR=1", "timezone": "Europe/Berlin", "duration": "4h",
             "cutoff": "1h"}
    answer = ev([night], "2026-03-29T02:00:00Z")
    assert answer["window"]["start"] == "2026-03-29T01:00:00+01:00"
    assert answer["window"]["end"] == "2026-03-29T06:00:00+02:00"   # four real hours, five on the wall clock
    assert answer["window"]["end_utc"] == "2026-03-29T04:00:00Z"
    assert answer["seconds_left"] == 2 * 3600


def test_berlin_fall_back_repeated_hour():
    # 02:30 exists twice on 25 October: the first (CEST, 00:30 UTC). One hour later is 02:30 CET (01:30 UTC).
    night = {"name": "night", "rrule": "DTSTART;TZID=Europe/Berlin:20260301T023000\nRRULE:FREQ=DAILY",
             "duration": "1h"}
    first = ev([night], "2026-10-25T00:45:00Z")
    assert first["window"]["start"] == "2026-10-25T02:30:00+02:00"
    assert first["window"]["end"] == "2026-10-25T02:30:00+01:00"
    second_pass = ev([night], "2026-10-25T01:15:00Z")   # 02:15 CET, the repeated hour
    assert second_pass["inside"] and second_pass["seconds_left"] == 900
    assert second_pass["reason"] == "inside window 'night' until 02:30 CET (15m left, new hosts until 02:30)"
    assert not ev([night], "2026-10-25T01:30:00Z")["inside"]


def test_new_york_spring_forward_start_in_the_missing_hour():
    night = {"name": "ny", "rrule": "DTSTART;TZID=America/New_York:20260101T023000\nRRULE:FREQ=DAILY",
             "duration": "2h", "cutoff": "30m"}
    answer = ev([night], "2026-03-08T07:45:00Z")
    assert (answer["window"]["start"], answer["window"]["end"], answer["window"]["cutoff_at"]) == (
        "2026-03-08T03:30:00-04:00", "2026-03-08T05:30:00-04:00", "2026-03-08T05:00:00-04:00")
    assert answer["window"]["start_utc"] == "2026-03-08T07:30:00Z"
    assert ev([night], "2026-03-07T12:00:00Z")["reason"] == (
        "outside every window; next 'ny' starts Sun 2026-03-08 03:30 EDT (in 19h30m)")


def test_new_york_fall_back_repeated_hour_and_elapsed_duration():
    night = {"name": "ny", "rrule": "DTSTART;TZID=America/New_York:20260101T013000\nRRULE:FREQ=DAILY",
             "duration": "2h", "cutoff": "30m"}
    answer = ev([night], "2026-11-01T06:45:00Z")   # 01:45 EST, the second 01:45 of the night
    assert (answer["window"]["start"], answer["window"]["end"], answer["window"]["cutoff_at"]) == (
        "2026-11-01T01:30:00-04:00", "2026-11-01T02:30:00-05:00", "2026-11-01T02:00:00-05:00")
    assert answer["may_start"] is True
    assert answer["reason"] == "inside window 'ny' until 02:30 EST (45m left, new hosts until 02:00)"
    late = ev([night], "2026-11-01T07:15:00Z")
    assert late["inside"] and not late["may_start"]
    assert ev([night], "2026-10-31T12:00:00Z")["next_window"]["start"] == "2026-11-01T01:30:00-04:00"


# ------------------------------------------------------------------ several windows, several zones


TWO_ZONES = [
    {"name": "monthly-sunday", "rrule": "RRULE:FREQ=MONTHLY;BYDAY=1SU;BYHOUR=1;BYMINUTE=0",
     "timezone": "America/New_York", "duration": "4h", "cutoff": "1h"},
    {"name": "apac-evening", "rrule": "FREQ=DAILY;BYHOUR=21;BYMINUTE=30", "timezone": "Asia/Singapore",
     "duration": "90m", "cutoff": "30m"},
]


def test_two_windows_in_two_time_zones():
    # Sun 6 Dec 2026 01:30 EST = 06:30 UTC = 14:30 in Singapore: inside the New York window only.
    answer = ev(TWO_ZONES, "2026-12-06T06:30:00Z")
    assert answer["window"]["name"] == "monthly-sunday"
    assert answer["window"]["start"] == "2026-12-06T01:00:00-05:00"
    assert answer["reason"] == "inside window 'monthly-sunday' until 05:00 EST (3h30m left, new hosts until 04:00)"
    # The next opening is the Singapore evening: 21:30 +08 = 13:30 UTC.
    assert answer["next_window"]["name"] == "apac-evening"
    assert answer["next_window"]["start"] == "2026-12-06T21:30:00+08:00"
    singapore = ev(TWO_ZONES, "2026-12-07T14:00:00Z")
    assert singapore["window"]["name"] == "apac-evening" and singapore["window"]["timezone"] == "Asia/Singapore"
    assert singapore["reason"] == "inside window 'apac-evening' until 23:00 +08 (1h left, new hosts until 22:30)"


def test_overlapping_windows_prefer_the_one_still_open_for_new_hosts():
    short = {"name": "short", "rrule": "FREQ=DAILY;BYHOUR=22", "timezone": "UTC", "duration": "2h", "cutoff": "90m"}
    long_ = {"name": "long", "rrule": "FREQ=DAILY;BYHOUR=21", "timezone": "UTC", "duration": "3h", "cutoff": "30m"}
    answer = ev([short, long_], "2026-12-08T22:45:00Z")
    assert answer["may_start"] and answer["window"]["name"] == "long"


def test_freeze_dates_need_a_zone_when_the_windows_use_several():
    freeze = {"name": "f", "start": "2026-12-18", "end": "2027-01-03"}
    assert error(TWO_ZONES, freezes=[freeze]) == (
        "Failed to read freeze period 'f': start '2026-12-18' has no offset and the windows use several time zones "
        "(America/New_York, Asia/Singapore): give the freeze a timezone")
    with_offsets = {"name": "f", "start": "2026-12-18T00:00:00Z", "end": "2027-01-03T00:00:00Z"}
    assert ev(TWO_ZONES, "2026-12-20T00:00:00Z", freezes=[with_offsets])["frozen"]["timezone"] == "UTC"


# ------------------------------------------------------------------ rule forms


SAME_RULE = [
    {"rrule": "DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH"},
    {"rrule": "DTSTART;TZID=Europe/Berlin:20260105T220000 RRULE:FREQ=WEEKLY;BYDAY=TU,TH"},
    {"rrule": "DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH",
     "timezone": "Europe/Berlin"},
    {"rrule": "DTSTART:20260105T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH", "timezone": "Europe/Berlin"},
    {"rrule": "RRULE:FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=22;BYMINUTE=0", "timezone": "Europe/Berlin"},
    {"rrule": "FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=22", "timezone": "Europe/Berlin"},
    {"rrule": "  dtstart;tzid=Europe/Berlin:20260105T220000\n  rrule:freq=weekly;byday=tu,th\n"},
]


@pytest.mark.parametrize("form", SAME_RULE)
@pytest.mark.parametrize("now", ["2026-12-08T23:48:00+01:00", "2026-12-05T18:00:00+01:00",
                                 "2026-03-28T23:00:00+01:00", "2026-10-27T23:30:00+01:00"])
def test_rule_with_and_without_dtstart_and_tzid_agree(form, now):
    spec = {"name": "weekly-patch", "duration": "4h", "cutoff": "45m"}
    spec.update(form)
    answer, reference = ev([spec], now), ev([WEEKLY], now)
    for key in ("inside", "may_start", "window", "next_window", "seconds_left", "reason"):
        assert answer[key] == reference[key], key


def test_rule_in_utc():
    utc = {"name": "utc", "rrule": "DTSTART:20260105T210000Z\nRRULE:FREQ=WEEKLY;BYDAY=TU", "duration": "1h"}
    answer = ev([utc], "2026-12-08T21:30:00Z")
    assert answer["window"]["start"] == "2026-12-08T21:00:00Z" and answer["window"]["timezone"] == "UTC"
    assert answer["reason"] == "inside window 'utc' until 22:00 UTC (30m left, new hosts until 22:00)"
    assert ev([dict(utc, timezone="Etc/UTC")], "2026-12-08T21:30:00Z")["inside"]


def test_rule_with_until_ends_and_the_reason_says_nothing_opens():
    ended = window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\n"
                         "RRULE:FREQ=WEEKLY;BYDAY=TU;UNTIL=20260601T000000Z")
    answer = ev([ended], "2026-12-08T12:00:00Z")
    assert answer["next_window"] is None
    assert answer["reason"] == "outside every window; no window opens in the next 1830 days"
    assert ev([ended], "2026-05-26T21:00:00Z")["inside"] is True


def test_rule_with_count():
    counted = window(rrule="DTSTART;TZID=Europe/Berlin:20261201T220000\nRRULE:FREQ=DAILY;COUNT=3")
    assert ev([counted], "2026-12-03T22:30:00+01:00")["inside"] is True
    assert ev([counted], "2026-12-04T22:30:00+01:00")["inside"] is False
    assert ev([counted], "2026-12-02T12:00:00Z")["next_window"]["start"] == "2026-12-02T22:00:00+01:00"


def test_every_second_week_keeps_its_phase_from_an_old_dtstart():
    fortnight = window(rrule="DTSTART;TZID=Europe/Berlin:20150106T220000\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU")
    # Whole fortnights after 2015-01-06: 2026-12-08 and 2026-12-22, not 2026-12-15.
    assert (datetime.date(2026, 12, 8) - datetime.date(2015, 1, 6)).days % 14 == 0
    answer = ev([fortnight], "2026-12-09T12:00:00Z")
    assert answer["next_window"]["start"] == "2026-12-22T22:00:00+01:00"


# ------------------------------------------------------------------ rebasing an old DTSTART keeps every occurrence


REBASE_RULES = [
    "DTSTART;TZID=Europe/Berlin:20000103T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH",
    "DTSTART;TZID=Europe/Berlin:20000104T023000\nRRULE:FREQ=WEEKLY;INTERVAL=2",
    "DTSTART;TZID=Europe/Berlin:20010107T010000\nRRULE:FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,WE",
    "DTSTART;TZID=America/New_York:20030301T013000\nRRULE:FREQ=DAILY;INTERVAL=3",
    "DTSTART;TZID=America/New_York:20030301T000000\nRRULE:FREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=30;BYMONTH=3,11",
    "DTSTART;TZID=Europe/Berlin:20180101T220000\nRRULE:FREQ=HOURLY;INTERVAL=5",
    "DTSTART;TZID=Europe/Berlin:20180101T001500\nRRULE:FREQ=HOURLY;INTERVAL=7;BYDAY=SA,SU",
    "DTSTART;TZID=Asia/Kolkata:20100101T233000\nRRULE:FREQ=DAILY;BYDAY=MO,WE,FR;BYSETPOS=1,-1",
]


@pytest.mark.parametrize("text", REBASE_RULES)
def test_rebased_rule_yields_the_same_occurrences(text):
    rule, _zone = w.parse_rule(text)
    rng = random.Random(text)
    for _ in range(6):
        when = datetime.datetime(2026, 1, 1, tzinfo=UTC) + datetime.timedelta(minutes=rng.randrange(0, 2 * 525600))
        rebased = w._rebased(rule, when)
        assert rebased._dtstart > rule._dtstart
        # Cheap: the search starts at most a few intervals before the time of interest.
        assert when - rebased._dtstart.astimezone(UTC) < datetime.timedelta(weeks=3 * rule._interval + 1)
        expected = [o for o, _ in zip(rule.xafter(when), range(40))]
        got = [o for o, _ in zip(rebased.xafter(when), range(40))]
        assert [o.astimezone(UTC) for o in got] == [o.astimezone(UTC) for o in expected]


def test_counted_monthly_and_future_rules_are_not_rebased():
    for text in ("DTSTART;TZID=Europe/Berlin:20000101T220000\nRRULE:FREQ=DAILY;COUNT=10000",
                 "DTSTART;TZID=Europe/Berlin:20000101T220000\nRRULE:FREQ=MONTHLY",
                 "DTSTART;TZID=Europe/Berlin:20300101T220000\nRRULE:FREQ=DAILY"):
        rule, _zone = w.parse_rule(text)
        assert w._rebased(rule, datetime.datetime(2026, 12, 8, tzinfo=UTC)) is rule


def test_old_hourly_rule_is_not_walked_from_its_dtstart():
    hourly = window(rrule="DTSTART;TZID=Europe/Berlin:19900101T000000\nRRULE:FREQ=HOURLY;INTERVAL=6",
                    duration="1h", cutoff="10m")
    calls = []
    real = dateutil_rrule.rrule._iter

    def counting(self):
        for item in real(self):
            calls.append(item)
            yield item

    with mock.patch.object(dateutil_rrule.rrule, "_iter", counting):
        answer = ev([hourly], "2026-12-08T11:30:00Z", freezes=[YEAR_END])
    assert answer["window"]["start"] == "2026-12-08T12:00:00+01:00"
    assert len(calls) < 100   # from 1990 it would be over 50 000


# ------------------------------------------------------------------ against a brute-force reference


def reference(specs, freezes, first, last):
    """A function now -> (inside, may_start, next opening) that lists every occurrence of the un-rebased
    rules between ``first`` and ``last`` and tries every candidate moment."""
    parsed = w.parse_windows(specs)
    frozen = w.parse_freezes(freezes, parsed)
    occurrences = []
    for spec in parsed:
        for start in spec.rule.between(first - datetime.timedelta(days=40), last + datetime.timedelta(days=400),
                                       inc=True):
            occurrence = w.Occurrence(spec, start)
            if occurrence.start.date() not in spec.excluded:
                occurrences.append(occurrence)
    moments = sorted({o.start_utc for o in occurrences} | {f.end_utc for f in frozen})

    def is_frozen(t):
        return any(f.start_utc <= t < f.end_utc for f in frozen)

    def answer(now):
        inside = [o for o in occurrences if o.start_utc <= now < o.end_utc]
        may_start = any(now < o.cutoff_utc for o in inside) and not is_frozen(now)
        # A new host may start at t when no freeze covers t and t is before the cutoff of an occurrence that
        # started after now, or of the current one if a freeze is what stops it now. Such a t is always an
        # occurrence start or a freeze end.
        for t in (m for m in moments if m > now):
            if not is_frozen(t) and any(o.start_utc <= t < o.cutoff_utc and (o.start_utc > now or is_frozen(now))
                                        for o in occurrences):
                return bool(inside), may_start, t
        return bool(inside), may_start, None

    return answer


def test_answers_match_a_brute_force_reference():
    specs = [
        {"name": "weekly", "rrule": "DTSTART;TZID=Europe/Berlin:20200107T220000\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH",
         "duration": "4h", "cutoff": "45m"},
        {"name": "ny", "rrule": "FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "timezone": "America/New_York",
         "duration": "2h", "cutoff": "20m", "excluded_dates": ["2026-11-26", "2026-12-25"]},
    ]
    freezes = [dict(YEAR_END, timezone="Europe/Berlin"),
               {"name": "short", "start": "2026-11-03T02:00:00Z", "end": "2026-11-05T21:30:00Z"}]
    first = datetime.datetime(2026, 10, 20, tzinfo=UTC)
    last = first + datetime.timedelta(days=120)
    expected = reference(specs, freezes, first, last)
    rng = random.Random(9)
    for _ in range(300):
        now = first + datetime.timedelta(minutes=rng.randrange(0, 120 * 1440))
        answer = w.evaluate(specs, freezes, now=now)
        inside, may_start, opening = expected(now)
        assert (answer["inside"], answer["may_start"]) == (inside, may_start), now
        got = answer["next_window"]["opens_at_utc"] if answer["next_window"] else None
        assert got == (w.iso(opening) if opening else None), now


# ------------------------------------------------------------------ durations and formatting


@pytest.mark.parametrize("value, seconds", [
    ("4h", 14400), ("90m", 5400), ("1h30m", 5400), ("1h 30m", 5400), ("1d", 86400), ("45s", 45),
    ("PT4H", 14400), ("PT1H30M", 5400), ("P1DT2H", 93600), ("pt45m", 2700), (14400, 14400), ("3600", 3600),
    (0, 0), ("0m", 0), (90.0, 90),
])
def test_parse_duration(value, seconds):
    assert w.parse_duration(value, "duration") == seconds


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (59, "59s"), (60, "1m"), (3600, "1h"), (4320, "1h12m"), (86400, "1d"), (3 * 86400 + 4 * 3600, "3d 4h"),
    (-5, "0s"),
])
def test_human_duration(seconds, text):
    assert w.human_duration(seconds) == text


# ------------------------------------------------------------------ invalid input: exact messages


BAD_WINDOWS = [
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY;BYDAY=XX"),
     "Failed to read maintenance window 'weekly-patch': invalid rule: invalid 'BYDAY': XX"),
    (window(rrule="RRULE:FREQ=WEEKLY;BYDAY=TU;BYHOUR=22;COLOUR=RED", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': invalid rule: unknown parameter 'COLOUR'"),
    (window(rrule="weekly on tuesday"),
     "Failed to read maintenance window 'weekly-patch': expected exactly one RRULE, found 3"),
    (window(rrule="tuesdays"),
     "Failed to read maintenance window 'weekly-patch': the RRULE must be NAME=VALUE parts separated by ';' "
     "(e.g. FREQ=WEEKLY;BYDAY=TU), got 'tuesdays'"),
    (window(rrule="BYDAY=TU;BYHOUR=22", timezone="UTC"),
     "Failed to read maintenance window 'weekly-patch': the RRULE has no FREQ (e.g. FREQ=WEEKLY;BYDAY=TU)"),
    (window(rrule=""),
     "Failed to read maintenance window 'weekly-patch': rrule is required (e.g. "
     "'DTSTART;TZID=Europe/Berlin:20260105T220000\\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH')"),
    (window(timezone="Europe/Berln", rrule="FREQ=WEEKLY;BYDAY=TU;BYHOUR=22"),
     "Failed to read maintenance window 'weekly-patch': unknown time zone 'Europe/Berln'"),
    (window(rrule="DTSTART;TZID=Europe/Berln:20260105T220000\nRRULE:FREQ=WEEKLY"),
     "Failed to read maintenance window 'weekly-patch': TZID: unknown time zone 'Europe/Berln'"),
    (window(timezone="America/New_York"),
     "Failed to read maintenance window 'weekly-patch': timezone 'America/New_York' disagrees with the rule's "
     "TZID=Europe/Berlin: give one of them"),
    (window(rrule="DTSTART:20260105T210000Z\nRRULE:FREQ=WEEKLY", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': the DTSTART ends in Z (UTC) but timezone is "
     "'Europe/Berlin': write DTSTART;TZID=Europe/Berlin:... without the Z, or leave timezone out"),
    (window(rrule="FREQ=WEEKLY;BYDAY=TU;BYHOUR=22"),
     "Failed to read maintenance window 'weekly-patch': no time zone: give timezone, or a DTSTART;TZID=<zone>:... "
     "line in the rule"),
    (window(rrule="DTSTART:20260105T220000\nRRULE:FREQ=WEEKLY"),
     "Failed to read maintenance window 'weekly-patch': no time zone: the DTSTART has no TZID, so give timezone"),
    (window(rrule="DTSTART:2026\nRRULE:FREQ=WEEKLY", timezone="UTC"),
     "Failed to read maintenance window 'weekly-patch': DTSTART must look like 20260105T220000 (local to TZID or "
     "timezone), 20260105T210000Z (UTC) or VALUE=DATE:20260105, got '2026'"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY\nEXDATE:20261224T220000"),
     "Failed to read maintenance window 'weekly-patch': EXDATE lines are not supported: a window's rule is one "
     "RRULE with an optional DTSTART; put exceptions in excluded_dates or freezes"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=WEEKLY\nRRULE:FREQ=DAILY"),
     "Failed to read maintenance window 'weekly-patch': expected exactly one RRULE, found 2"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nDTSTART;TZID=Europe/Berlin:20260105T220000\n"
                  "RRULE:FREQ=WEEKLY"),
     "Failed to read maintenance window 'weekly-patch': the rule has more than one DTSTART"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=MINUTELY"),
     "Failed to read maintenance window 'weekly-patch': FREQ=MINUTELY is too fine for a maintenance window: "
     "use HOURLY or coarser"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=DAILY;UNTIL=20261231T000000"),
     "Failed to read maintenance window 'weekly-patch': invalid rule: RRULE UNTIL values must be specified in UTC "
     "when DTSTART is timezone-aware"),
    (window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=DAILY;COUNT=3;UNTIL=20261231T000000Z"),
     "Failed to read maintenance window 'weekly-patch': COUNT and UNTIL must not both be given (RFC 5545)"),
    (window(rrule="FREQ=WEEKLY;BYHOUR=22", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': a FREQ=WEEKLY rule without DTSTART must say which days "
     "with BYDAY or BYMONTHDAY"),
    (window(rrule="FREQ=WEEKLY;BYDAY=TU", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': a rule without DTSTART must give the start time with "
     "BYHOUR (and BYMINUTE), e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=22;BYMINUTE=0"),
    (window(rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=22", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': INTERVAL greater than 1 needs a DTSTART to count from"),
    (window(rrule="FREQ=DAILY;INTERVAL=two;BYHOUR=22", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': invalid rule: invalid 'INTERVAL': TWO"),
    (window(rrule="FREQ=DAILY;COUNT=3;BYHOUR=22", timezone="Europe/Berlin"),
     "Failed to read maintenance window 'weekly-patch': COUNT needs a DTSTART to count from"),
    (window(duration="4h", cutoff="4h"),
     "Failed to read maintenance window 'weekly-patch': the cutoff (4h) must be shorter than the duration (4h), "
     "or no host could ever start"),
    (window(duration="1h", cutoff="90m"),
     "Failed to read maintenance window 'weekly-patch': the cutoff (1h30m) must be shorter than the duration (1h), "
     "or no host could ever start"),
    (window(duration="-1h"),
     "Failed to read maintenance window 'weekly-patch': duration must not be negative, got '-1h'"),
    (window(duration=-3600),
     "Failed to read maintenance window 'weekly-patch': duration must not be negative, got -3600"),
    (window(cutoff="-5m"),
     "Failed to read maintenance window 'weekly-patch': cutoff must not be negative, got '-5m'"),
    (window(duration="0m"),
     "Failed to read maintenance window 'weekly-patch': duration must be longer than 0, got '0m'"),
    (window(duration="four hours"),
     "Failed to read maintenance window 'weekly-patch': duration must be a length such as 4h, 90m, 1h30m, PT4H or "
     "a number of seconds, got 'four hours'"),
    (window(duration=True),
     "Failed to read maintenance window 'weekly-patch': duration must be a length such as 4h, 90m, 1h30m, PT4H or "
     "a number of seconds, got True"),
    (window(duration="1.5"),
     "Failed to read maintenance window 'weekly-patch': duration must be whole seconds, got '1.5'"),
    (window(duration=None),
     "Failed to read maintenance window 'weekly-patch': duration is required (e.g. 4h)"),
    (window(durations="4h"),
     "Failed to read maintenance window 'weekly-patch': unknown key(s) durations (expected name, rrule, timezone, "
     "duration, cutoff, excluded_dates)"),
    (window(excluded_dates=["24.12.2026"]),
     "Failed to read maintenance window 'weekly-patch': excluded_dates lists '24.12.2026', which is not a date "
     "(YYYY-MM-DD)"),
    (window(name=""), "Failed to read maintenance window #1: name is required"),
    ("weekly", "Failed to read maintenance window #1: expected a dict with name, rrule, timezone, duration and "
               "cutoff, got str"),
]


@pytest.mark.parametrize("spec, message", BAD_WINDOWS)
def test_invalid_window_messages(spec, message):
    assert error([spec]) == message


def test_invalid_top_level_messages():
    assert error([]) == ("Failed to read maintenance windows: windows must list at least one window "
                         "(name, rrule, timezone, duration, cutoff)")
    assert error([WEEKLY, dict(WEEKLY)]) == (
        "Failed to read maintenance window 'weekly-patch': another window has the same name")
    assert error(excluded_dates=["2026-02-30"]) == (
        "Failed to read excluded_dates: excluded_dates lists '2026-02-30', which is not a date (YYYY-MM-DD)")
    assert error(excluded_dates="2026-12-24") == (
        "Failed to read excluded_dates: excluded_dates must be a list of dates (YYYY-MM-DD), got '2026-12-24'")
    assert error(now="next tuesday") == (
        "Failed to read now: expected an ISO 8601 time with an offset such as 2026-12-08T21:00:00Z (UTC when it has "
        "none) or epoch seconds, got 'next tuesday'")
    assert error(now="2026-12-08T12:00:00Z", started_at="2026-12-08T13:00:00+00:00") == (
        "Failed to read started_at: 2026-12-08T13:00:00Z is later than now (2026-12-08T12:00:00Z)")
    assert error(started_at=True).startswith("Failed to read started_at: expected an ISO 8601 time")


@pytest.mark.parametrize("freeze, message", [
    ({"name": "f", "start": "2027-01-03", "end": "2026-12-18"},
     "Failed to read freeze period 'f': end (2026-12-18) is not after start (2027-01-03)"),
    ({"name": "f", "start": "2026-12-18T10:00:00Z", "end": "2026-12-18T10:00:00Z"},
     "Failed to read freeze period 'f': end (2026-12-18T10:00:00Z) is not after start (2026-12-18T10:00:00Z)"),
    ({"name": "f", "start": "18.12.2026", "end": "2027-01-03"},
     "Failed to read freeze period 'f': start: expected a date (2026-12-18) or a date and time "
     "(2026-12-18T18:00:00+01:00), got '18.12.2026'"),
    ({"name": "f", "start": "2026-12-18", "end": "2027-02-30"},
     "Failed to read freeze period 'f': end: expected a date (2026-12-18) or a date and time "
     "(2026-12-18T18:00:00+01:00), got '2027-02-30'"),
    ({"name": "f", "start": "2026-12-18"},
     "Failed to read freeze period 'f': end is required"),
    ({"name": "f", "start": "2026-12-18", "end": "2027-01-03", "timezone": "Mars/Olympus"},
     "Failed to read freeze period 'f': unknown time zone 'Mars/Olympus'"),
    ({"name": "f", "start": "2026-12-18", "end": "2027-01-03", "until": "x"},
     "Failed to read freeze period 'f': unknown key(s) until (expected name, start, end, reason, timezone)"),
    ({"start": "2026-12-18", "end": "2027-01-03"}, "Failed to read freeze period #1: name is required"),
])
def test_invalid_freeze_messages(freeze, message):
    assert error(freezes=[freeze]) == message


# ------------------------------------------------------------------ the module


MODULE_ARGS = {"windows": [WEEKLY], "now": "2026-12-08T22:48:00Z"}


def test_module_inside_returns_the_answer_and_a_check_result():
    result = run_module_main(maintenance_window, MODULE_ARGS)
    assert result.exit_code == 0 and not result.failed
    assert result["changed"] is False
    assert result["may_start"] is True and result["inside"] is True
    assert result["window"]["cutoff_at"] == "2026-12-09T01:15:00+01:00"
    assert result["result"] == {
        "check": "maintenance_window", "host": "localhost", "status": "ok",
        "value": {"now": "2026-12-08T22:48:00Z", "inside": True, "may_start": True, "may_continue": False,
                  "window": "weekly-patch", "frozen": None,
                  "next_window": {"name": "weekly-patch", "opens_at": "2026-12-10T22:00:00+01:00"}},
        "threshold": {"cutoff_at": "2026-12-09T01:15:00+01:00", "end": "2026-12-09T02:00:00+01:00"},
        "message": "inside window 'weekly-patch' until 02:00 CET (2h12m left, new hosts until 01:15)",
    }


def test_module_check_mode_gives_the_same_answer():
    normal = run_module_main(maintenance_window, MODULE_ARGS)
    checked = run_module_main(maintenance_window, MODULE_ARGS, check_mode=True)
    for key in ("inside", "may_start", "window", "next_window", "reason", "result", "changed"):
        assert checked[key] == normal[key]


def test_module_outside_without_fail_outside_returns():
    result = run_module_main(maintenance_window, dict(MODULE_ARGS, now="2026-12-05T17:00:00Z"))
    assert result.exit_code == 0 and not result.failed
    assert result["may_start"] is False and result["result"]["status"] == "fail"


def test_module_fail_outside_fails_with_the_reason_and_keeps_the_answer():
    args = dict(MODULE_ARGS, now="2026-12-22T22:00:00Z", freezes=[YEAR_END], fail_outside=True,
                report_host="patch-controller")
    result = run_module_main(maintenance_window, args)
    assert result.failed and result.exit_code == 1
    assert result["msg"].startswith("frozen: 'year-end freeze' until 2027-01-04 00:00 CET (no changes over the "
                                    "holidays); inside window 'weekly-patch'")
    assert result["frozen"]["name"] == "year-end freeze"
    assert result["next_window"]["start"] == "2027-01-05T22:00:00+01:00"
    assert result["result"]["host"] == "patch-controller"


def test_module_fail_outside_passes_inside():
    result = run_module_main(maintenance_window, dict(MODULE_ARGS, fail_outside=True))
    assert not result.failed and result["may_start"] is True


def test_module_started_at():
    args = dict(MODULE_ARGS, now="2026-12-09T00:30:00Z", started_at="2026-12-08T21:05:00Z")
    result = run_module_main(maintenance_window, args)
    assert (result["may_start"], result["may_continue"]) == (False, True)
    assert result["started_window"]["name"] == "weekly-patch"
    assert result["result"]["status"] == "warn"


def test_module_bad_rule_fails_with_one_line_and_no_traceback():
    args = {"windows": [window(rrule="DTSTART;TZID=Europe/Berlin:20260105T220000\nRRULE:FREQ=FORTNIGHTLY")],
            "now": "2026-12-08T22:48:00Z"}
    result = run_module_main(maintenance_window, args)
    assert result.failed
    assert result["msg"] == ("Failed to read maintenance window 'weekly-patch': invalid rule: invalid 'FREQ': "
                             "FORTNIGHTLY")
    assert "Traceback" not in result.stdout


def test_module_bad_freeze_and_time_zone():
    result = run_module_main(maintenance_window, {"windows": [window(rrule="FREQ=DAILY;BYHOUR=1",
                                                                     timezone="Nowhere/City")]})
    assert result["msg"] == "Failed to read maintenance window 'weekly-patch': unknown time zone 'Nowhere/City'"


def test_module_requires_duration():
    spec = {k: v for k, v in WEEKLY.items() if k != "duration"}
    result = run_module_main(maintenance_window, {"windows": [spec]})
    assert result.failed and "duration" in result["msg"]


def test_module_without_now_uses_the_clock():
    daily = {"name": "always", "rrule": "FREQ=HOURLY", "timezone": "UTC", "duration": "1h", "cutoff": "0"}
    result = run_module_main(maintenance_window, {"windows": [daily]})
    assert result["inside"] is True
    now = datetime.datetime.fromisoformat(result["now"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(UTC) - now).total_seconds()) < 60


def test_module_reports_a_missing_dateutil():
    with mock.patch.object(w, "_rrule", None):
        result = run_module_main(maintenance_window, MODULE_ARGS)
    assert result.failed
    assert "python-dateutil" in result["msg"] and "to read maintenance window rules" in result["msg"]


def test_module_yaml_dates_arrive_as_text():
    # Unquoted YAML dates reach the module as ISO text; date objects from Python callers work the same.
    freeze = {"name": "year-end freeze", "start": datetime.date(2026, 12, 18), "end": datetime.date(2027, 1, 3)}
    answer = w.evaluate([WEEKLY], [freeze], [datetime.date(2026, 12, 24)], now="2026-12-20T12:00:00Z")
    assert answer["frozen"]["end"] == "2027-01-04T00:00:00+01:00"


def test_every_returned_key_is_documented():
    import yaml  # noqa: PLC0415 - only this test reads the documentation

    documented = yaml.safe_load(maintenance_window.RETURN)
    args = dict(MODULE_ARGS, now="2026-12-22T22:00:00Z", started_at="2026-12-17T21:10:00Z", freezes=[YEAR_END])
    result = run_module_main(maintenance_window, args)
    returned = {k: v for k, v in result.items() if k not in ("changed", "invocation", "failed", "msg")}
    assert set(returned) == set(documented)
    for key, value in returned.items():
        if isinstance(value, dict) and "contains" in documented[key]:
            assert set(value) == set(documented[key]["contains"]), key
    assert set(result["next_window"]) == set(documented["next_window"]["contains"])
