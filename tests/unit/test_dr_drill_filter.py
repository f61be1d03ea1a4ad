"""Unit tests for the dr_drill filters: RTO/RPO arithmetic, targets, segment end LSN."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.upkeep.runbooks.plugins.filter.dr_drill import dr_drill_result, wal_segment_end_lsn

RESTORE = {"phases": {"restore_seconds": 2.0, "start_seconds": 0.5, "replay_seconds": 1.0, "promote_seconds": 0.2,
                      "total_seconds": 3.7},
           "backup": {"label": "F1"}, "target": {"type": "lsn", "value": "0/9000000", "inclusive": False},
           "recovery_point": {"lsn": "0/9000000", "last_transaction_time": "2024-05-02T09:00:08.000500+00:00",
                              "timeline": 2}}
DECLARATION = {"declared_at": "2024-05-02 09:00:10.5+00", "declared_epoch": "1000.0",
               "last_committed": "2024-05-02 09:00:10.2+00"}


def test_segment_end_lsn():
    assert wal_segment_end_lsn("000000010000000000000005") == "0/6000000"
    assert wal_segment_end_lsn("0000000100000001000000FF") == "2/0"
    assert wal_segment_end_lsn("000000010000000000000001", 64 * 1024 * 1024) == "0/8000000"
    with pytest.raises(AnsibleFilterError):
        wal_segment_end_lsn("00000001.history")


def test_rpo_is_the_heartbeat_difference_and_rto_leaves_out_the_wait():
    check = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:08+00", 1030.0, waited_seconds=4,
                            rto_target=60, rpo_target=5)
    assert check["status"] == "ok" and check["check"] == "dr_drill" and check["host"] == "dr1"
    assert check["value"]["rpo_seconds"] == 2.2
    assert check["value"]["rpo_cross_check_seconds"] == 2.2  # 2.1995 rounded
    assert check["value"]["rto_seconds"] == 26.0
    assert check["message"].startswith("DR drill: RTO 26.0 s, RPO 2.2 s (backup F1")


def test_targets_missed_or_nothing_measured_fail():
    late = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:00+00", 2000.0, rto_target=60, rpo_target=5)
    assert late["status"] == "fail"
    assert "RPO 10.2 s is above the target of 5 s" in late["message"]
    assert "RTO 1000.0 s is above the target of 60 s" in late["message"]
    lost = dr_drill_result(RESTORE, "dr1", DECLARATION, None, 1010.0)
    assert lost["status"] == "fail" and lost["value"]["rpo_seconds"] is None
    assert "no heartbeat of the source survived" in lost["message"]
    with pytest.raises(AnsibleFilterError, match="no time zone"):
        dr_drill_result(RESTORE, "dr1", dict(DECLARATION, declared_at="2024-05-02 09:00:10"), None, 1.0)


def test_application_phases_join_the_result_and_rto_ends_at_the_first_healthy_answer():
    app = {"phases": {"app_deploy_check_seconds": 1.5, "app_start_seconds": "2.25"},
           "object_counts": {"orders.Order": 400}, "health": {"status": "ok"}}
    check = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:08+00", 1012.0, rto_target=60,
                            rpo_target=5, app=app)
    assert check["status"] == "ok"
    assert check["value"]["phases"]["app_start_seconds"] == 2.25
    assert check["value"]["phases"]["restore_seconds"] == 2.0
    assert check["value"]["application"] == {"object_counts": {"orders.Order": 400}, "health": {"status": "ok"}}
    assert check["value"]["rto_seconds"] == 12.0
    assert "application healthy after 3.8 s" in check["message"]
    plain = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:08+00", 1012.0)
    assert plain["value"]["application"] is None and "application not checked" in plain["message"]
    with pytest.raises(AnsibleFilterError, match="app must be a dict"):
        dr_drill_result(RESTORE, "dr1", DECLARATION, None, 1012.0, app={"phases": None})


def test_a_rehearsal_keeps_the_outage_the_prober_saw_and_the_fail_back_steps():
    app = {"phases": {"app_start_seconds": 1.0}}
    outage = {"requests": 40, "failed_requests": 9, "outage_seconds": 4.5, "healthy_before": True, "recovered": True}
    check = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:08+00", 1012.0, rto_target=60,
                            rpo_target=5, kind="rehearsal", app=app, outage=outage, fail_back=["one", "two"])
    assert check["status"] == "ok"
    assert check["value"]["user_outage_seconds"] == 4.5 and check["value"]["prober"] == outage
    assert check["value"]["fail_back"] == ["one", "two"]
    assert "users saw 4.5 s of outage (9 of 40 requests failed)" in check["message"]
    never = dict(outage, recovered=False)
    failed = dr_drill_result(RESTORE, "dr1", DECLARATION, "2024-05-02 09:00:08+00", 1012.0, kind="rehearsal",
                             app=app, outage=never)
    assert failed["status"] == "fail" and "never saw the application healthy again" in failed["message"]


def test_a_logical_drill_measures_rpo_against_the_snapshot_or_a_restored_heartbeat():
    logical = {"phases": {"fetch_seconds": 1.5, "restore_seconds": 6.25}, "backup": {"label": "daily-20240502T080000Z"},
               "target": {"type": "logical", "database": "app", "snapshot_at": "2024-05-02T08:00:00.250Z"},
               "recovery_point": {"last_transaction_time": "2024-05-02T08:00:00.250Z", "lsn": "0/5000060",
                                  "timeline": None}}
    snap = dr_drill_result(logical, "dr1", DECLARATION, "2024-05-02T08:00:00.250Z", 1010.0, rto_target=60,
                           rpo_target=86400, source="logical", rpo_basis="snapshot")
    assert snap["status"] == "ok"
    assert snap["value"]["source"] == "logical" and snap["value"]["rpo_basis"] == "snapshot"
    assert snap["value"]["rpo_seconds"] == 3609.95 == snap["value"]["rpo_cross_check_seconds"]
    assert snap["message"].startswith("DR drill from the logical backup: RTO 10.0 s, RPO 3609.9 s (the dump's snapshot)"
                                      " (backup daily-20240502T080000Z, fetch 1.5 s, restore 6.2 s)")
    # the same drill judged against a PITR-sized RPO target: what a logical backup costs
    costly = dr_drill_result(logical, "dr1", DECLARATION, "2024-05-02T08:00:00.250Z", 1010.0, rpo_target=60,
                             source="logical", rpo_basis="snapshot")
    assert costly["status"] == "fail" and "RPO 3609.9 s is above the target of 60 s" in costly["message"]
    beat = dr_drill_result(logical, "dr1", DECLARATION, "2024-05-02 08:00:00.1+00", 1010.0, source="logical")
    assert beat["value"]["rpo_basis"] == "heartbeat" and beat["value"]["rpo_seconds"] == 3610.1
    unknown = dr_drill_result(logical, "dr1", DECLARATION, None, 1010.0, source="logical", rpo_basis="snapshot")
    assert unknown["status"] == "fail" and "snapshot time is unknown" in unknown["message"]
    with pytest.raises(AnsibleFilterError, match="source must be"):
        dr_drill_result(logical, "dr1", DECLARATION, None, 1010.0, source="wal-g")
