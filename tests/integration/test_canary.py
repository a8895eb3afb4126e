"""canary.yml against real nginx, real demo slots and real HTTP: promotion, automatic rollback, the ledger.

The module's environment is brought up by site.yml (1.0.0 on blue). The first test promotes 2.0.0 by canary; every
faulty canary after it must leave 2.0.0 serving. The last test kills ansible-playbook in the middle of a step.
"""

import os
import re
import signal
import time

import pytest

from conftest import OTHER_HOLDER, BackgroundPlaybook, Traffic, other_color, stable_version

PROMOTED = "2.0.0"
FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}


@pytest.fixture(scope="module")
def promoted(local_env):
    """PROMOTED is the stable release: the promotion test did it, or (run alone) a quick canary does it here."""
    if stable_version(local_env.read_ledger()) != PROMOTED:
        local_env.canary(PROMOTED, check=True, canary_steps=[50, 100], **FAST)
    assert local_env.served_versions() == {PROMOTED}
    return PROMOTED


# --- 1. promotion -----------------------------------------------------------------------------------------------------

def test_canary_promotes_under_keepalive_traffic_without_failing_a_request(local_env):
    before = local_env.read_ledger()
    assert stable_version(before) == "1.0.0"
    with Traffic(local_env, rate=40, seconds=120) as traffic:
        started = time.monotonic()
        run = local_env.canary(PROMOTED, canary_steps=[10, 50, 100], **FAST)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
    print("\ncanary 1.0.0 -> %s: %.1f s; background traffic %s" % (PROMOTED, elapsed, traffic.summary))

    assert run.rc == 0
    assert local_env.served_versions() == {PROMOTED}
    weights = local_env.read_weights()
    assert (weights["green"], weights["blue"], weights["stable"], weights["canary"]) == ("100", "0", "green", "")

    ledger = local_env.read_ledger()
    assert ledger["active_color"] == "green"
    assert ledger["versions"] == {"blue": "1.0.0", "green": PROMOTED}
    assert ledger["lock"] is None and ledger["in_progress"] is None
    assert [entry["id"] for entry in ledger["history"][:-1]] == [entry["id"] for entry in before["history"]]
    entry = ledger["history"][-1]
    assert (entry["type"], entry["version"], entry["from_version"]) == ("deploy", PROMOTED, "1.0.0")
    assert entry["outcome"] == "promoted" and entry["autonomous"] is True and entry["reasons"]
    assert [step["weight"] for step in entry["steps"]] == [10, 50, 100]
    assert all(step["verdicts"]["probes"] == "pass" and step["verdicts"]["analysis"] != "fail" for step in entry["steps"])

    assert traffic.summary["failed"] == 0, traffic.summary
    assert traffic.summary["ok"] > 100, traffic.summary


# --- 2. automatic rollback --------------------------------------------------------------------------------------------

# (fault env, canary settings, background traffic?, what the reasons must mention)
FAULTS = {
    "error_rate": ({"LEANVIBE_FAULT_ERROR_RATE": "1"}, {"canary_steps": [10, 50, 100]}, False,
                   r"HTTP 500|5xx|api_functionality"),
    "latency": ({"LEANVIBE_FAULT_LATENCY_MS": "400"},
                {"canary_steps": [25, 50, 100], "canary_step_pause_s": 3, "canary_analysis": {"min_requests": 10}}, True,
                r"p95"),
    "health": ({"LEANVIBE_FAULT_HEALTH": "fail"}, {"canary_steps": [10, 50, 100], "app_health_timeout": 10}, False,
               r"healthy|HTTP 503|basic_health"),
    "websocket": ({"LEANVIBE_FAULT_WEBSOCKET": "fail"}, {"canary_steps": [10, 50, 100]}, False, r"websocket"),
    # The process dies 4 s after each start and supervisord restarts it (about 2 s down every 6 s). The probes of a
    # gate take milliseconds and may all fall into up windows; the background traffic of a step's window does not:
    # what the canary dropped, the stable color took over (failover) or nginx answered with a 5xx.
    "crash": ({"LEANVIBE_FAULT_CRASH_AFTER_S": "4"},
              {"canary_steps": [10, 25, 50, 75, 100], "canary_step_pause_s": 3, "canary_analysis": {"min_requests": 5}},
              True, r"expected 3\.0\.5|reports version|refused|reset|[Cc]onnection|HTTP 50\d|not become healthy|closed|EOF"
              r"|failover|5xx"),
}
VERSIONS = {"error_rate": "3.0.1", "latency": "3.0.2", "health": "3.0.3", "websocket": "3.0.4", "crash": "3.0.5"}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_faulty_canary_is_rolled_back_automatically(local_env, promoted, fault):
    fault_env, settings, with_traffic, cause = FAULTS[fault]
    version = VERSIONS[fault]
    before = local_env.read_ledger()
    # Between cases the stable release is still the promoted one.
    assert stable_version(before) == promoted and before["active_color"] == "green"
    assert local_env.served_versions() == {promoted}

    args = dict(FAST, app_env=fault_env)
    args.update(settings)
    started = time.monotonic()
    if with_traffic:
        with Traffic(local_env, rate=40, seconds=120) as traffic:
            run = local_env.canary(version, **args)
        note = "; background traffic %s" % traffic.summary
    else:
        run = local_env.canary(version, **args)
        note = ""
    print("\n%s canary %s: rc %d in %.1f s%s" % (fault, version, run.rc, time.monotonic() - started, note))

    assert run.rc != 0
    assert local_env.served_versions() == {promoted}
    weights = local_env.read_weights()
    assert (weights["green"], weights["stable"], weights["canary"]) == ("100", "green", "")

    ledger = local_env.read_ledger()
    assert ledger["lock"] is None and ledger["in_progress"] is None
    assert ledger["active_color"] == "green" and stable_version(ledger) == promoted
    # Every earlier entry is kept, and this run added exactly one.
    assert [entry["id"] for entry in ledger["history"][:-1]] == [entry["id"] for entry in before["history"]]
    entry = ledger["history"][-1]
    assert entry["version"] == version and entry["from_version"] == promoted
    assert entry["outcome"] in ("rolled_back", "failed"), entry
    assert entry["autonomous"] is True
    assert entry["reasons"] and re.search(cause, " ".join(entry["reasons"])), entry["reasons"]
    if entry["outcome"] == "rolled_back":
        assert ledger["weights"] == {"blue": 0, "green": 100}

    # The play's final message says what happened and why.
    final = [msg for msg in run.failure_messages() if msg.startswith("canary %s " % version)]
    assert final, run.failure_messages()
    assert re.search(r"rolled back to %s|traffic stays on %s" % (promoted, promoted), final[-1]), final[-1]
    assert re.search(cause, final[-1]), final[-1]


# --- 3. check mode and bad steps --------------------------------------------------------------------------------------

def test_check_mode_prints_the_plan_and_changes_nothing(local_env, promoted, unchanged):
    run = local_env.canary("4.2.0", "--check", canary_steps=[10, 50, 100], canary_step_pause_s=7)
    assert run.rc == 0
    assert run.changed_tasks() == []
    plan = run.results_of("Show the plan")
    assert len(plan) == 1
    text = "\n".join(plan[0]["msg"])
    print("\n" + text)
    assert "demo %s on green -> 4.2.0 on blue" % promoted in text
    assert "steps 10 % -> 50 % -> 100 %, 7 s pause each" in text
    assert "check mode: nothing was changed" in text


# Bad steps: the unit tests of rollout_plan (tests/unit/plugins/modules/test_rollout_plan.py) hold the cases, the
# bad-input matrix one run of canary.yml that proves a refusal changes nothing.


# --- 4. a concurrent deployment ---------------------------------------------------------------------------------------

def test_canary_is_refused_while_another_run_holds_the_lock(local_env, promoted):
    rc, out = local_env.deployment_state("lock", holder=OTHER_HOLDER)
    assert rc == 0, out
    try:
        assert local_env.read_ledger()["lock"]["holder"] == OTHER_HOLDER
        before = local_env.observe()
        run = local_env.canary("4.1.0", canary_steps=[50, 100], **FAST)
        assert run.rc != 0
        messages = set(run.failure_messages())
        assert len(messages) == 1, messages
        assert "held by run other (pid 1 on host other-host, user x)" in messages.pop(), run.failure_messages()
        local_env.assert_unchanged(before)
        assert local_env.served_versions() == {promoted}
    finally:
        rc, out = local_env.deployment_state("unlock", holder=OTHER_HOLDER)
    assert rc == 0, out
    ledger = local_env.read_ledger()
    assert ledger["lock"] is None and ledger["in_progress"] is None


# --- 5. kill -9 in the middle of a step -------------------------------------------------------------------------------

def test_killed_run_is_recorded_as_interrupted_and_a_rerun_converges(local_env, promoted):
    version = "4.0.0"
    before = local_env.read_ledger()
    canary_color = other_color(before["active_color"])
    settings = {"app_version": version, "canary_steps": [10, 100], "canary_step_pause_s": 20, "canary_abort_delay_s": 0}
    killed_run = BackgroundPlaybook(local_env, "canary.yml", settings, "killed-canary")
    try:
        deadline = time.monotonic() + 90
        in_step = None
        while time.monotonic() < deadline and killed_run.proc.poll() is None:
            ledger = local_env.read_ledger()
            weights = local_env.read_weights()
            if ledger["in_progress"] and weights.get("canary") == canary_color and weights.get(canary_color) == "10":
                in_step = ledger
                break
            time.sleep(0.2)
        assert in_step is not None, "the canary did not reach its first step (rc %s); see %s" % (
            killed_run.proc.poll(), killed_run.log_path)
        os.kill(killed_run.pid, signal.SIGKILL)
        killed_run.proc.wait(timeout=10)
    finally:
        killed_run.cleanup()  # workers of the killed run, if any are left
    killed = in_step["in_progress"]
    assert killed["version"] == version and killed["holder"]["pid"] == killed_run.pid
    # Killed mid-step: the lock and the deployment in progress stay behind, traffic stays split.
    after_kill = local_env.read_ledger()
    assert after_kill["lock"]["holder"]["run_id"] == killed["holder"]["run_id"]
    assert after_kill["in_progress"]["id"] == killed["id"]

    run = local_env.canary(version, canary_steps=[10, 100], **FAST)
    assert run.rc == 0, run.failure_messages()
    assert local_env.served_versions() == {version}

    ledger = local_env.read_ledger()
    assert ledger["lock"] is None and ledger["in_progress"] is None
    assert ledger["active_color"] == canary_color and stable_version(ledger) == version
    ids_before = [entry["id"] for entry in before["history"]]
    assert [entry["id"] for entry in ledger["history"][:len(ids_before)]] == ids_before
    added = ledger["history"][len(ids_before):]
    assert [entry["outcome"] for entry in added] == ["interrupted", "promoted"], added
    interrupted, promotion = added
    assert interrupted["id"] == killed["id"] and interrupted["run_id"] == killed["holder"]["run_id"]
    assert interrupted["version"] == version and interrupted["reasons"]
    assert promotion["version"] == version and [step["weight"] for step in promotion["steps"]] == [10, 100]
