"""The deploy lock (module_utils/deploy_lock.py): holding, heartbeat, staleness, take-over, release."""

import pytest
from ledger_test_helpers import ALICE, BOB, T0, act, at, folder_names, on_disk, raw

from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso


def test_lock_and_unlock_are_not_changes(ledger):
    result = act(ledger, "lock", holder=ALICE, stale_after_s=600)
    assert result["changed"] is False
    assert result["lock"] == {"holder": ALICE, "acquired": iso(T0), "heartbeat": iso(T0), "stale_after_s": 600}
    assert on_disk(ledger)["lock"]["holder"] == ALICE
    assert result["msg"].startswith("deployment lock of demo in local held by run %s" % ALICE["run_id"])
    result = act(ledger, "unlock", holder=ALICE)
    assert result["changed"] is False
    assert result["lock"] is None and on_disk(ledger)["lock"] is None


def test_same_holder_refreshes_the_heartbeat(ledger):
    act(ledger, "lock", holder=ALICE)
    result = act(ledger, "lock", now=at(60), holder=ALICE)
    assert result["lock"]["acquired"] == iso(T0)
    assert result["lock"]["heartbeat"] == iso(at(60))
    assert result["taken_over_from"] is None


def test_lock_conflict_names_the_holder(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    before = raw(ledger)
    with pytest.raises(LockConflict) as exc:
        act(ledger, "lock", now=at(60), holder=BOB)
    assert str(exc.value) == (
        "deployment lock of demo in local is held by run %s (pid 1234 on host ctl, user alice) since "
        "2026-11-27T04:58:12.345Z; it goes stale at 2026-11-27T05:13:12.345Z; wait, or re-run with force=true."
        % ALICE["run_id"])
    assert exc.value.lock["holder"] == ALICE
    assert raw(ledger) == before


def test_stale_lock_is_taken_over(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    with pytest.raises(LockConflict):
        act(ledger, "lock", now=at(900), holder=BOB)  # exactly at the limit: not stale yet
    result = act(ledger, "lock", now=at(901), holder=BOB)
    assert result["lock"]["holder"] == BOB
    assert result["taken_over_from"] == ALICE
    assert "taken over from run %s" % ALICE["run_id"] in result["msg"]


def test_heartbeat_postpones_staleness(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    act(ledger, "lock", now=at(800), holder=ALICE)
    with pytest.raises(LockConflict, match="goes stale at 2026-11-27T05:26:32.345Z"):
        act(ledger, "lock", now=at(1000), holder=BOB)


@pytest.mark.parametrize("flag", ["holder_dead", "force"])
def test_holder_dead_or_force_takes_over(ledger, flag):
    act(ledger, "lock", holder=ALICE)
    result = act(ledger, "lock", now=at(5), holder=BOB, **{flag: True})
    assert result["lock"]["holder"] == BOB
    assert result["lock"]["acquired"] == iso(at(5))


def test_unlock_of_another_runs_lock_is_left_alone(ledger):
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)
    result = act(ledger, "unlock", holder=BOB)
    assert result["changed"] is False
    assert result["lock"]["holder"] == ALICE
    assert "not by run %s" % BOB["run_id"] in result["warning"]
    assert raw(ledger) == before


def test_unlock_of_a_missing_ledger_writes_nothing(ledger):
    result = act(ledger, "unlock", holder=ALICE)
    assert result["msg"] == "deployment lock of demo in local was not held; nothing to release."
    assert folder_names(ledger) == ["demo.ledger.json.lock"]
