"""Grandfather-father-son selection (plugins/module_utils/_retention.py): pure logic, many calendars."""

import datetime
import random

import pytest

from ansible_collections.upkeep.runbooks.plugins.module_utils import _retention as r

UTC = datetime.timezone.utc


def at(text, hour=2, minute=15):
    day = datetime.date.fromisoformat(text)
    return datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def backup(when, label="daily"):
    return {"backup_id": "%s-%s" % (label, when.strftime("%Y%m%dT%H%M%SZ")), "time": when}


def days(first, count, hour=2):
    start = datetime.date.fromisoformat(first)
    return [backup(at((start + datetime.timedelta(days=n)).isoformat(), hour)) for n in range(count)]


def ids(items):
    return [item["backup_id"][6:14] for item in items]


def reasons(kept):
    return {item["backup_id"][6:14]: item["reasons"] for item in kept}


# ------------------------------------------------------------------ periods


@pytest.mark.parametrize("day, kind, label", [
    ("2026-11-23", "daily", "2026-11-23"),
    ("2026-11-23", "weekly", "2026-W48"),
    ("2026-11-22", "weekly", "2026-W47"),
    ("2026-11-23", "monthly", "2026-11"),
    ("2026-11-23", "yearly", "2026"),
    ("2026-12-31", "weekly", "2026-W53"),
    ("2027-01-01", "weekly", "2026-W53"),   # ISO week belongs to the previous year
    ("2027-01-01", "monthly", "2027-01"),
    ("2027-01-01", "yearly", "2027"),
    ("2024-12-30", "weekly", "2025-W01"),   # ... or to the next one
    ("2021-01-03", "weekly", "2020-W53"),
])
def test_period_labels(day, kind, label):
    assert r.period(kind, at(day)) == label


def test_period_is_taken_in_utc():
    local = datetime.datetime(2026, 11, 23, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert r.period("daily", local) == "2026-11-22"
    assert r.period("weekly", local) == "2026-W47"


def test_period_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown retention period"):
        r.period("hourly", at("2026-11-23"))


# ------------------------------------------------------------------ selection


def test_empty():
    assert r.select([]) == ([], [])


def test_single_backup_is_kept_for_every_reason():
    kept, deleted = r.select([backup(at("2026-11-23"))])
    assert deleted == []
    assert kept[0]["reasons"] == ["newest", "daily 2026-11-23", "weekly 2026-W48", "monthly 2026-11", "yearly 2026"]
    assert kept[0]["reason"] == "newest, daily 2026-11-23, weekly 2026-W48, monthly 2026-11, yearly 2026"


def test_thirty_days_with_defaults():
    kept, deleted = r.select(days("2026-10-25", 30))
    assert ids(kept) == ["20261123", "20261122", "20261121", "20261120", "20261119", "20261118", "20261117",
                         "20261115", "20261108", "20261031"]
    assert len(deleted) == 20
    assert all(item["reasons"] == ["expired"] and item["reason"] == "expired" for item in deleted)
    why = reasons(kept)
    assert why["20261123"] == ["newest", "daily 2026-11-23", "weekly 2026-W48", "monthly 2026-11", "yearly 2026"]
    assert why["20261122"] == ["daily 2026-11-22", "weekly 2026-W47"]
    assert why["20261117"] == ["daily 2026-11-17"]
    assert why["20261115"] == ["weekly 2026-W46"]
    assert why["20261108"] == ["weekly 2026-W45"]
    assert why["20261031"] == ["monthly 2026-10"]


def test_result_is_newest_first_whatever_the_input_order():
    items = days("2026-10-25", 30)
    shuffled = list(items)
    random.Random(7).shuffle(shuffled)
    assert r.select(shuffled) == r.select(items)


def test_several_backups_a_day_keep_only_the_newest_of_each_day():
    items = []
    for day in ("2026-11-21", "2026-11-22", "2026-11-23"):
        items += [backup(at(day, hour)) for hour in (2, 10, 18)]
    kept, deleted = r.select(items, keep_daily=2, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=0)
    assert [item["time"] for item in kept] == [at("2026-11-23", 18), at("2026-11-22", 18)]
    assert len(deleted) == 7


def test_gaps_do_not_use_up_daily_slots():
    # After a three-month pause the daily rule still keeps the seven most recent days that have a backup.
    items = days("2026-06-01", 5) + days("2026-09-01", 3)
    kept, _deleted = r.select(items, keep_daily=7, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=0)
    assert ids(kept) == ["20260903", "20260902", "20260901", "20260605", "20260604", "20260603", "20260602"]


def test_month_ends_over_five_years_keep_twelve_months_and_three_years():
    items = []
    for year in range(2022, 2027):
        for month in range(1, 13):
            first_next = datetime.date(year + (month == 12), month % 12 + 1, 1)
            items.append(backup(at((first_next - datetime.timedelta(days=1)).isoformat())))
    kept, deleted = r.select(items, keep_daily=0, keep_weekly=0, keep_monthly=12, keep_yearly=3, min_keep=0)
    kept_ids = ids(kept)
    assert kept_ids[:12] == ["20261231", "20261130", "20261031", "20260930", "20260831", "20260731", "20260630",
                             "20260531", "20260430", "20260331", "20260228", "20260131"]
    assert kept_ids[12:] == ["20251231", "20241231"]
    assert reasons(kept)["20251231"] == ["yearly 2025"]
    assert reasons(kept)["20261231"] == ["newest", "monthly 2026-12", "yearly 2026"]
    assert len(deleted) == 60 - 14


def test_weekly_across_the_new_year():
    items = [backup(at(day)) for day in ("2026-12-27", "2026-12-28", "2026-12-31", "2027-01-01", "2027-01-04")]
    kept, _deleted = r.select(items, keep_daily=0, keep_weekly=3, keep_monthly=0, keep_yearly=0, min_keep=0)
    assert reasons(kept) == {
        "20270104": ["newest", "weekly 2027-W01"],
        "20270101": ["weekly 2026-W53"],
        "20261227": ["weekly 2026-W52"],
    }


def test_min_keep_fills_up_with_the_newest_expired():
    items = days("2026-11-01", 10)
    kept, deleted = r.select(items, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=4)
    assert ids(kept) == ["20261110", "20261109", "20261108", "20261107"]
    assert reasons(kept) == {"20261110": ["newest"], "20261109": ["min_keep"], "20261108": ["min_keep"],
                             "20261107": ["min_keep"]}
    assert len(deleted) == 6


def test_min_keep_counts_what_the_rules_keep_already():
    items = days("2026-11-01", 10)
    kept, _deleted = r.select(items, keep_daily=3, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=3)
    assert all("min_keep" not in item["reasons"] for item in kept)
    assert ids(kept) == ["20261110", "20261109", "20261108"]


def test_min_keep_above_the_number_of_backups_keeps_all():
    items = days("2026-11-01", 2)
    kept, deleted = r.select(items, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=5)
    assert len(kept) == 2 and deleted == []


def test_newest_is_kept_even_with_every_rule_off():
    items = days("2026-11-01", 5)
    kept, deleted = r.select(items, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=0)
    assert ids(kept) == ["20261105"] and kept[0]["reasons"] == ["newest"]
    assert len(deleted) == 4


def test_a_long_history_with_defaults_is_bounded():
    items = days("2020-01-01", 365 * 6)
    kept, deleted = r.select(items)
    # 7 days + up to 4 weeks + up to 12 months + up to 3 years, overlapping at the newest end.
    assert 10 <= len(kept) <= 7 + 4 + 12 + 3
    assert len(kept) + len(deleted) == len(items)
    assert kept[0]["time"] == max(item["time"] for item in items)
    assert {"yearly 2025", "yearly 2024"} <= set(sum((item["reasons"] for item in kept), []))


def test_same_time_is_ordered_by_backup_id():
    when = at("2026-11-23")
    items = [backup(when, "daily"), backup(when, "manual")]
    kept, deleted = r.select(items, keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0, min_keep=0)
    assert kept[0]["backup_id"].startswith("manual-") and deleted[0]["backup_id"].startswith("daily-")


def test_extra_fields_are_kept_and_input_is_not_modified():
    item = dict(backup(at("2026-11-23")), path="/b/app/x", database="app")
    kept, _deleted = r.select([item])
    assert kept[0]["path"] == "/b/app/x" and kept[0]["database"] == "app"
    assert "reasons" not in item


@pytest.mark.parametrize("name", ["keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "min_keep"])
@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_rejects_bad_counts(name, value):
    with pytest.raises(ValueError, match=name):
        r.select([], **{name: value})
