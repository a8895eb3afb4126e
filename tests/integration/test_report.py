"""leanvibe-deploy report end to end: the real CLI reads the real ledger of the test environment through
ansible-runner and playbooks/status.yml, after a canary promotion, a faulty canary rolled back automatically and a
rollback by hand; the monitoring URL points at nothing, so uptime has no data points and says why.

The module's environment comes from site.yml (1.0.0 on blue); the tests run in order.
"""

import json
import os
import subprocess
import time

import jsonschema

from conftest import BIN, PORT_BASE, Traffic, read_bytes, write_bytes

import leanvibe_runner

CLI = os.path.join(BIN, "leanvibe-deploy")
SCHEMA = leanvibe_runner.report_schema()
FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}
NOTHING_PORT = PORT_BASE + 9


# --- helpers of this module -------------------------------------------------------------------------------------------

def nothing_listens():
    """A loopback URL where nothing listens: the port of this worker's range that no test binds."""
    return "http://127.0.0.1:%d" % NOTHING_PORT


def cli(env, *args, timeout=300):
    """leanvibe-deploy <args> -i local with the test environment's vars, outside a terminal: (rc, stdout, stderr)."""
    argv = [CLI] + list(args) + ["-i", "local", "-e", "@" + env.vars_file]
    proc = subprocess.run(argv, cwd="/", env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def report(env, *args):
    """`leanvibe-deploy report --json` with the monitor pointed at nothing: the report, checked against its schema."""
    started = time.monotonic()
    rc, out, err = cli(env, "report", "--json", "--monitoring-url", nothing_listens(), *args)
    assert rc == 0, (out[-2000:], err[-3000:])
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    print("\nreport %s: %.1f s" % (" ".join(args), time.monotonic() - started))
    return data


def canary(env, version, **settings):
    """LocalEnv.canary with FAST under `settings` (they may override it)."""
    return env.canary(version, **dict(FAST, **settings))


def timed(entry):
    """Whether a rollback entry carries a duration (rollback.duration_ms, or duration_s of a rollback entry)."""
    return isinstance((entry.get("rollback") or {}).get("duration_ms"), int) or entry["type"] == "rollback"


def assert_uptime_has_no_data(data):
    assert data["monitoring"]["reachable"] is False and "is unreachable" in data["monitoring"]["note"]
    for label in ("24h", "7d", "30d"):
        uptime = data["figures"]["uptime"][label]
        assert (uptime["value"], uptime["data_points"]) == (None, 0), uptime
        assert "is unreachable" in uptime["note"], uptime
        assert uptime["success_rate"] == {"value": None, "unit": "%", "data_points": 0}


# --- the tests --------------------------------------------------------------------------------------------------------

def test_report_of_a_fresh_environment_counts_no_deployment(local_env):
    data = report(local_env)
    assert (data["status"], data["exit_code"], data["environment"], data["app"]) == ("reported", 0, "local", "demo")
    figures = data["figures"]
    assert (figures["deployments"]["value"], figures["deployments"]["initial_releases_excluded"]) == (0, 1)
    assert figures["change_failure_rate"]["value"] is None and figures["autonomous_share"]["value"] is None
    assert figures["rollbacks"]["value"] == 0 and figures["mttr"]["value"] is None
    assert data["ledger"]["entries"] == 1
    assert_uptime_has_no_data(data)


def test_report_after_a_promotion_and_an_automatic_rollback(local_env):
    run = canary(local_env, "2.0.0", canary_steps=[50, 100])
    assert run.rc == 0, run.failure_messages()
    with Traffic(local_env):
        run = canary(local_env, "2.0.2", canary_steps=[25, 50, 100], canary_step_pause_s=3,
                     app_env={"LEANVIBE_FAULT_LATENCY_MS": "400"}, canary_analysis={"min_requests": 10})
    assert run.rc != 0
    history = local_env.read_ledger()["history"]
    assert [(e["version"], e["outcome"], e["autonomous"]) for e in history] == [
        ("1.0.0", "deployed", True), ("2.0.0", "promoted", True), ("2.0.2", "rolled_back", True)]

    data = report(local_env, "--window", "1h")
    figures = data["figures"]
    assert data["window"]["label"] == "1h"
    assert figures["deployments"]["value"] == 2
    assert figures["deployments"]["by_outcome"] == {"promoted": 1, "deployed": 0, "rolled_back": 1, "failed": 0,
                                                    "interrupted": 0}
    assert (figures["autonomous_share"]["value"], figures["autonomous_share"]["data_points"]) == (100.0, 2)
    cfr = figures["change_failure_rate"]
    assert (cfr["value"], cfr["data_points"], cfr["failed"], cfr["breakdown"]["auto_rolled_back"]) == (50.0, 2, 1, 1)
    rollbacks = figures["rollbacks"]
    assert (rollbacks["value"], rollbacks["breakdown"]) == (1, {"automatic": 1, "manual": 0})
    # Entries carry rollback.duration_ms once the ledger records rollback times; older ones are counted untimed.
    expected_timed = 1 if timed(history[-1]) else 0
    print("automatic rollback: %s; report: rollbacks %s, mttr %s s" % (
        history[-1].get("rollback"), rollbacks["duration_ms"], figures["mttr"]["value"]))
    assert rollbacks["duration_ms"]["data_points"] == expected_timed
    if expected_timed:
        assert rollbacks["duration_ms"]["median"] == history[-1]["rollback"]["duration_ms"]
        assert figures["mttr"]["data_points"] == 1 and figures["mttr"]["value"] >= 0
    assert_uptime_has_no_data(data)


def test_report_after_a_rollback_by_hand_of_the_promoted_release(local_env):
    rc, out, err = cli(local_env, "rollback", "--reason", "the report test takes 2.0.0 out", "--json")
    assert rc == 0, err[-3000:]
    assert json.loads(out)["version"] == "1.0.0"
    history = local_env.read_ledger()["history"]
    manual = history[-1]
    assert (manual["type"], manual["from_version"], manual["autonomous"]) == ("rollback", "2.0.0", False)

    data = report(local_env, "--window", "1h")
    figures = data["figures"]
    assert figures["deployments"]["value"] == 2
    # 2.0.0 was promoted, then rolled back by hand: a failure that needed a human.
    cfr = figures["change_failure_rate"]
    assert (cfr["value"], cfr["failed"]) == (100.0, 2)
    assert (cfr["breakdown"]["auto_rolled_back"], cfr["breakdown"]["rolled_back_later_by_hand"]) == (1, 1)
    share = figures["autonomous_share"]
    assert (share["value"], share["autonomous"], share["needed_a_human"]) == (50.0, 1, 1)
    rollbacks = figures["rollbacks"]
    assert (rollbacks["value"], rollbacks["breakdown"]) == (2, {"automatic": 1, "manual": 1})
    assert rollbacks["duration_ms"]["data_points"] == sum(1 for entry in history[-2:] if timed(entry))
    assert figures["mttr"]["data_points"] >= 1 and figures["mttr"]["value"] >= 0

    # The human-readable table says the same.
    rc, out, err = cli(local_env, "report", "-q", "--window", "1h", "--monitoring-url", nothing_listens())
    assert rc == 0, err[-3000:]
    assert out.startswith("report of demo in local: reported (exit 0)")
    assert "100.00 %" in out and "rolled back later by hand 1" in out and "automatic 1, manual 1" in out
    assert out.count("  uptime ") == 3 and "is unreachable" in out


def test_report_windows_out_of_range_are_usage_errors_and_run_nothing(local_env, tmp_path):
    for window in ("0h", "366d", "45m"):
        artifact_dir = tmp_path / ("never-created-%s" % window)
        rc, out, err = cli(local_env, "report", "--window", window, "--artifact-dir", str(artifact_dir))
        assert rc == 2 and out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("leanvibe-deploy: error: window "), err
        assert not artifact_dir.exists()


def test_report_of_an_unreadable_ledger_exits_3(local_env):
    path = local_env.ledger_path
    saved = read_bytes(path)
    try:
        write_bytes(path, b"{not json")
        rc, out, err = cli(local_env, "report", "--json", "-q", "--monitoring-url", nothing_listens())
    finally:
        write_bytes(path, saved)
    assert rc == 3, err[-3000:]
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    assert (data["status"], data["figures"]) == ("unreadable", None)
    assert "corrupt" in data["reasons"][0], data["reasons"]
