"""canary.yml against real nginx, real demo slots and real HTTP: promotion, automatic rollback, the ledger.

The module's environment is brought up by site.yml (1.0.0 on blue). The first test promotes 2.0.0 by canary; every
faulty canary after it must leave 2.0.0 serving. The last test kills ansible-playbook in the middle of a step.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import BIN, REPO

PROMOTED = "2.0.0"
FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}


# --- helpers ----------------------------------------------------------------------------------------------------------

def ledger_path(env):
    return env.path("state", "demo.ledger.json")


def read_ledger(env):
    with open(ledger_path(env), encoding="utf-8") as handle:
        return json.load(handle)


def stable_version(ledger):
    return ledger["versions"].get(ledger["active_color"])


def read_weights(env):
    with open(env.path("nginx", "conf", "demo.weights"), encoding="utf-8") as handle:
        return dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line and not line.startswith("#"))


def served_versions(env, count=20):
    """What the LB answers to `count` requests in a row (a canary left at any weight shows up here)."""
    return {env.served_version() for _index in range(count)}


def canary(env, version, *args, check=False, timeout=300, **settings):
    """canary.yml with app_version and extra settings (canary_steps, app_env, ...) as one JSON -e; `check` raises on rc != 0."""
    extra = dict(settings, app_version=version)
    return env.playbook("canary.yml", "-e", json.dumps(extra), *args, check=check, timeout=timeout)


class Traffic:
    """scripts/traffic.py in the background against the test LB: keep-alive clients that never retry.

    Bounded by --seconds; stopped with SIGTERM on exit, when it prints its summary (ok, failed, status).
    """

    def __init__(self, env, rate=40, seconds=120, connections=4):
        self.cmd = [sys.executable, os.path.join(REPO, "scripts", "traffic.py"), "--url", env.lb_url,
                    "--rate", str(rate), "--seconds", str(seconds), "--connections", str(connections)]
        self.seconds = seconds
        self.proc = None
        self.summary = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # let every connection make its first requests before anything moves
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.summary = json.loads(lines[-1]) if lines else {"ok": 0, "failed": -1, "error": err[-2000:]}


@pytest.fixture(scope="module")
def promoted(local_env):
    """PROMOTED is the stable release: the promotion test did it, or (run alone) a quick canary does it here."""
    if stable_version(read_ledger(local_env)) != PROMOTED:
        canary(local_env, PROMOTED, check=True, canary_steps=[50, 100], **FAST)
    assert served_versions(local_env) == {PROMOTED}
    return PROMOTED


@pytest.fixture
def unchanged(local_env):
    """Asserts after the test that nginx config, ledger, slots and the served version did not move."""
    before = local_env.snapshot()
    served = served_versions(local_env)
    yield
    after = local_env.snapshot()
    assert sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name)) == []
    assert served_versions(local_env) == served


# --- 1. promotion -----------------------------------------------------------------------------------------------------

def test_canary_promotes_under_keepalive_traffic_without_failing_a_request(local_env):
    before = read_ledger(local_env)
    assert stable_version(before) == "1.0.0"
    with Traffic(local_env, rate=40, seconds=120) as traffic:
        started = time.monotonic()
        run = canary(local_env, PROMOTED, canary_steps=[10, 50, 100], **FAST)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
    print("\ncanary 1.0.0 -> %s: %.1f s; background traffic %s" % (PROMOTED, elapsed, traffic.summary))

    assert run.rc == 0
    assert served_versions(local_env) == {PROMOTED}
    weights = read_weights(local_env)
    assert (weights["green"], weights["blue"], weights["stable"], weights["canary"]) == ("100", "0", "green", "")

    ledger = read_ledger(local_env)
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
    # The process dies 4 s after each start and supervisord restarts it (about 2 s down every 6 s): five steps of
    # about 4 s each put at least one step's probes into a down window.
    "crash": ({"LEANVIBE_FAULT_CRASH_AFTER_S": "4"}, {"canary_steps": [10, 25, 50, 75, 100], "canary_step_pause_s": 2}, False,
              r"expected 3\.0\.5|reports version|refused|reset|[Cc]onnection|HTTP 50\d|not become healthy|closed|EOF"),
}
VERSIONS = {"error_rate": "3.0.1", "latency": "3.0.2", "health": "3.0.3", "websocket": "3.0.4", "crash": "3.0.5"}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_faulty_canary_is_rolled_back_automatically(local_env, promoted, fault):
    fault_env, settings, with_traffic, cause = FAULTS[fault]
    version = VERSIONS[fault]
    before = read_ledger(local_env)
    # Between cases the stable release is still the promoted one.
    assert stable_version(before) == promoted and before["active_color"] == "green"
    assert served_versions(local_env) == {promoted}

    args = dict(FAST, app_env=fault_env)
    args.update(settings)
    started = time.monotonic()
    if with_traffic:
        with Traffic(local_env, rate=40, seconds=120) as traffic:
            run = canary(local_env, version, **args)
        note = "; background traffic %s" % traffic.summary
    else:
        run = canary(local_env, version, **args)
        note = ""
    print("\n%s canary %s: rc %d in %.1f s%s" % (fault, version, run.rc, time.monotonic() - started, note))

    assert run.rc != 0
    assert served_versions(local_env) == {promoted}
    weights = read_weights(local_env)
    assert (weights["green"], weights["stable"], weights["canary"]) == ("100", "green", "")

    ledger = read_ledger(local_env)
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
    run = canary(local_env, "4.2.0", "--check", canary_steps=[10, 50, 100], canary_step_pause_s=7)
    assert run.rc == 0
    assert run.changed_tasks() == []
    plan = run.results_of("Show the plan")
    assert len(plan) == 1
    text = "\n".join(plan[0]["msg"])
    print("\n" + text)
    assert "demo %s on green -> 4.2.0 on blue" % promoted in text
    assert "steps 10 % -> 50 % -> 100 %, 7 s pause each" in text
    assert "check mode: nothing was changed" in text


@pytest.mark.parametrize("steps, problem", [
    ([50, 25], "canary_steps must be strictly increasing"),
    ([0, 10], "each of canary_steps must be from 1 to 100"),
    ([10, 150], "each of canary_steps must be from 1 to 100"),
    ([], "canary_steps must not be empty"),
])
def test_invalid_steps_are_refused_with_one_sentence(local_env, promoted, unchanged, steps, problem):
    run = canary(local_env, "4.3.0", canary_steps=steps)
    assert run.rc != 0
    # One sentence (a rescue that re-raises it may repeat it, nothing else).
    assert set(run.failure_messages()) == {"%s (got steps %s)." % (problem, json.dumps(steps))}, run.failure_messages()


# --- 4. a concurrent deployment ---------------------------------------------------------------------------------------

OTHER = {"run_id": "other", "controller": "other-host", "pid": 1, "user": "x"}


def lock_module(env, action, holder):
    return env.module("lb-local", "leanvibe.deploy.deployment_state", {
        "path": ledger_path(env), "app": "demo", "environment": "local", "action": action, "holder": holder})


def test_canary_is_refused_while_another_run_holds_the_lock(local_env, promoted):
    rc, out = lock_module(local_env, "lock", OTHER)
    assert rc == 0, out
    try:
        assert read_ledger(local_env)["lock"]["holder"] == OTHER
        before = local_env.snapshot()
        run = canary(local_env, "4.1.0", canary_steps=[50, 100], **FAST)
        assert run.rc != 0
        messages = set(run.failure_messages())
        assert len(messages) == 1, messages
        assert "held by run other (pid 1 on host other-host, user x)" in messages.pop(), run.failure_messages()
        assert local_env.snapshot() == before
        assert served_versions(local_env) == {promoted}
    finally:
        rc, out = lock_module(local_env, "unlock", OTHER)
    assert rc == 0, out
    ledger = read_ledger(local_env)
    assert ledger["lock"] is None and ledger["in_progress"] is None


# --- 5. kill -9 in the middle of a step -------------------------------------------------------------------------------

def test_killed_run_is_recorded_as_interrupted_and_a_rerun_converges(local_env, promoted):
    version = "4.0.0"
    before = read_ledger(local_env)
    canary_color = "blue" if before["active_color"] == "green" else "green"
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "local"),
           os.path.join(REPO, "playbooks", "canary.yml"), "-e", "@" + local_env.vars_file,
           "-e", json.dumps({"app_version": version, "canary_steps": [10, 100], "canary_step_pause_s": 20,
                             "canary_abort_delay_s": 0})]
    with open(local_env.path("killed-canary.log"), "w", encoding="utf-8") as log:
        # A session of its own, so that whatever the killed run leaves behind can be found and ended.
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        in_step = None
        while time.monotonic() < deadline and proc.poll() is None:
            ledger = read_ledger(local_env)
            weights = read_weights(local_env)
            if ledger["in_progress"] and weights.get("canary") == canary_color and weights.get(canary_color) == "10":
                in_step = ledger
                break
            time.sleep(0.2)
        assert in_step is not None, "the canary did not reach its first step (rc %s); see %s" % (
            proc.poll(), local_env.path("killed-canary.log"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers of the killed run, if any are left
        except ProcessLookupError:
            pass
    killed = in_step["in_progress"]
    assert killed["version"] == version and killed["holder"]["pid"] == proc.pid
    # Killed mid-step: the lock and the deployment in progress stay behind, traffic stays split.
    after_kill = read_ledger(local_env)
    assert after_kill["lock"]["holder"]["run_id"] == killed["holder"]["run_id"]
    assert after_kill["in_progress"]["id"] == killed["id"]

    run = canary(local_env, version, canary_steps=[10, 100], **FAST)
    assert run.rc == 0, run.failure_messages()
    assert served_versions(local_env) == {version}

    ledger = read_ledger(local_env)
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
