"""Interrupted and concurrent canary runs, on real nginx, real supervisord, real demo processes and real HTTP.

ansible-playbook killed with SIGKILL in each phase of canary.yml and then run again; two canaries at once; a run whose
plan went stale while another finished. Each test starts at the baseline (1.0.0 on blue) and checks what the ledger
records, the weights file and the version the LB serves.
"""

import os
import signal
import time

import pytest

from conftest import BackgroundPlaybook, assert_consistent, other_color, stable_version, wait_for

FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}
# A run that only has to get a release out (a re-run, a concurrent run): one step, quick final probes.
QUICK = dict(FAST, canary_steps=[100], canary_final_probe_mode="quick")


# --- 1. ansible-playbook killed with SIGKILL in each phase of canary.yml, then a re-run -----------------------------

def _before_lock(env, run, ctx):
    # The preflight play runs after the plan and before the lock.
    return "PLAY [Check that the canary can deploy" in run.output() and env.read_ledger()["lock"] is None


def _deploying(env, run, ctx):
    current = env.read_ledger()["in_progress"]
    return bool(current) and current["version"] == ctx["version"] and not current["steps"] and env.read_weights()["canary"] == ""


def _mid_step(env, run, ctx):
    weights = env.read_weights()
    return weights["canary"] == ctx["canary"] and weights[ctx["canary"]] == "50" and bool(env.read_ledger()["in_progress"])


def _rescue(env, run, ctx):
    ledger = env.read_ledger()
    last = ledger["history"][-1] if ledger["history"] else {}
    return ledger["lock"] is not None and last.get("version") == ctx["version"] and last.get("outcome") == "rolled_back"


# phase: (how to see it, settings of the killed run)
PHASES = {
    "before_lock": (_before_lock, {}),
    "deploying": (_deploying, {}),
    "mid_step": (_mid_step, {"canary_step_pause_s": 30}),
    # A gate that cannot pass (too little traffic, insufficient_data=fail) sends the run to its rescue, which then waits
    # canary_abort_delay_s before it stops the canary and releases the lock.
    "rescue": (_rescue, {"canary_analysis": {"min_requests": 100000, "insufficient_data": "fail"}, "canary_abort_delay_s": 30}),
}
PHASE_VERSIONS = {"before_lock": "6.1.0", "deploying": "6.2.0", "mid_step": "6.3.0", "rescue": "6.4.0"}


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_playbook_killed_in_each_phase_then_a_rerun_converges(local_env, phase):
    seen, settings = PHASES[phase]
    version = PHASE_VERSIONS[phase]
    before = local_env.read_ledger()
    assert before["lock"] is None and before["in_progress"] is None
    stable = before["active_color"]
    ctx = {"version": version, "canary": other_color(stable)}
    extra = dict({"app_version": version, "canary_steps": [50, 100], "canary_step_pause_s": 1, "canary_abort_delay_s": 0}, **settings)
    run = BackgroundPlaybook(local_env, "canary.yml", extra, "killed-%s" % phase)
    try:
        hit = wait_for(lambda: seen(local_env, run, ctx) or run.proc.poll() is not None, timeout=120, interval=0.02)
        assert hit and run.proc.poll() is None, "the run ended (rc %s) before phase %s; see %s" % (run.proc.poll(), phase, run.log_path)
        # The whole run dies at once, workers included, as when a CI job is killed.
        os.killpg(run.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)
    finally:
        run.cleanup()
    time.sleep(0.3)
    killed = local_env.read_ledger()
    weights = local_env.read_weights()
    print("\nkilled in %s: lock %s, in progress %s, weights %s" % (
        phase, bool(killed["lock"]), (killed["in_progress"] or {}).get("id"), weights))
    # What the kill left behind is the phase's.
    if phase == "before_lock":
        assert killed == before
    else:
        assert killed["lock"]["holder"]["pid"] == run.pid
    if phase in ("deploying", "mid_step"):
        assert killed["in_progress"]["version"] == version
    if phase == "mid_step":
        assert weights[ctx["canary"]] == "50"
    if phase == "rescue":
        assert killed["in_progress"] is None and (weights[stable], weights["canary"]) == ("100", "")

    rerun = local_env.canary(version, **QUICK)
    print("re-run: rc %d; %s" % (rerun.rc, rerun.failure_messages()))
    assert rerun.rc == 0, (rerun.failure_messages(), rerun.stderr[-2000:])
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == ctx["canary"] and stable_version(ledger) == version
    added = ledger["history"][len(before["history"]):]
    outcomes = [entry["outcome"] for entry in added]
    if phase == "before_lock":
        assert outcomes == ["promoted"], added
    elif phase == "rescue":
        assert outcomes == ["rolled_back", "promoted"], added
    else:
        assert outcomes == ["interrupted", "promoted"], added
        interrupted = added[0]
        assert interrupted["id"] == killed["in_progress"]["id"], interrupted
        # Killed with the traffic split or before it: no step had passed its gate, and the reason must not say otherwise.
        assert interrupted["reasons"] == ["run %s stopped without finishing, before any step passed its gate"
                                          % killed["lock"]["holder"]["run_id"]], interrupted
        assert interrupted["run_id"] == killed["lock"]["holder"]["run_id"]
    assert all(entry["version"] == version for entry in added)


# --- 2. two deployments at once -------------------------------------------------------------------------------------

def test_two_canaries_at_once_one_proceeds_the_other_is_refused(local_env):
    before = local_env.read_ledger()
    old = stable_version(before)
    runs = {}
    for version in ("8.1.0", "8.2.0"):
        extra = dict(QUICK, app_version=version, canary_step_pause_s=2)
        runs[version] = BackgroundPlaybook(local_env, "canary.yml", extra, "concurrent-%s" % version)
    try:
        codes = {version: run.wait(240) for version, run in runs.items()}
    finally:
        for run in runs.values():
            run.cleanup()
    print("\nconcurrent canaries: rc %s" % codes)
    winners = [version for version, rc in codes.items() if rc == 0]
    assert len(winners) == 1, dict((version, runs[version].output()[-2000:]) for version in runs)
    winner = winners[0]
    loser = [version for version in runs if version != winner][0]
    out = runs[loser].output()
    assert "deployment lock of demo in local is held by run " in out and "(pid %d on host " % runs[winner].pid in out, out[-3000:]

    ledger = assert_consistent(local_env, before)
    assert stable_version(ledger) == winner and ledger["versions"][other_color(ledger["active_color"])] == old
    added = ledger["history"][len(before["history"]):]
    assert [(entry["version"], entry["outcome"]) for entry in added] == [(winner, "promoted")], added


def test_a_run_whose_plan_went_stale_while_another_finished_is_refused(local_env):
    """Run B plans (stable color, versions), then is slow (stopped here) until run A has promoted a release and let go of
    the lock. B then gets the lock, but its plan is stale: its 'idle' color now serves all the traffic. It must stop
    there, naming what changed, instead of deploying over the serving release."""
    before = local_env.read_ledger()
    stable = before["active_color"]
    late = BackgroundPlaybook(local_env, "canary.yml", dict(QUICK, app_version="8.4.0"), "stale-plan")
    try:
        planned = wait_for(lambda: "PLAY [Check that the canary can deploy" in late.output() or late.proc.poll() is not None,
                           timeout=120, interval=0.02)
        assert planned and late.proc.poll() is None, "the late run ended (rc %s) before its preflight; see %s" % (late.proc.poll(), late.log_path)
        os.killpg(late.pid, signal.SIGSTOP)
        try:
            first = local_env.canary("8.3.0", **QUICK)
        finally:
            os.killpg(late.pid, signal.SIGCONT)
        rc = late.wait(240)
    finally:
        late.cleanup()
    out = late.output()
    print("\nfirst run rc %d; the late run: rc %s" % (first.rc, rc))
    assert first.rc == 0, first.failure_messages()
    assert rc not in (None, 0), out[-3000:]
    assert "changed since this run planned" in out, out[-3000:]
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == other_color(stable) and stable_version(ledger) == "8.3.0"
    added = ledger["history"][len(before["history"]):]
    assert [(entry["version"], entry["outcome"]) for entry in added] == [("8.3.0", "promoted")], added
    # The serving slot was left alone, and so was the old release in the idle one.
    assert local_env.slot_answers(other_color(stable)) == "8.3.0"
    assert local_env.slot_answers(stable) == stable_version(before)
