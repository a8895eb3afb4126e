"""leanvibe-deploy and the leanvibe_runner API end to end: real ansible-runner, nginx, demo slots and HTTP.

The module's environment comes from site.yml (1.0.0 on blue). The tests run in order: the CLI promotes 2.0.0,
a faulty canary rolls back (exit 1), bad input starts nothing (exit 2), a held lock refuses (exit 4), the API
aborts a canary mid-step, and ansible-runner's own CLI runs canary.yml with the repository as its project.
"""

import json
import os
import re
import subprocess
import time

import jsonschema
import pytest

from conftest import BIN, OTHER_HOLDER, REPO, Traffic, stable_version

import leanvibe_runner
from leanvibe_runner import ExitCode

CLI = os.path.join(BIN, "leanvibe-deploy")
SCHEMA = leanvibe_runner.result_schema()


def cli(env, *args, timeout=300):
    """leanvibe-deploy <args> against the test environment, outside a terminal: (rc, stdout, stderr)."""
    argv = [CLI] + list(args)
    if len(args) > 0 and args[0] in ("canary", "blue-green", "rollback", "probe", "status", "history"):
        argv += ["-i", "local", "-e", "@" + env.vars_file]
    proc = subprocess.run(argv, cwd="/", env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def json_result(stdout):
    result = json.loads(stdout)
    jsonschema.validate(result, SCHEMA)
    return result


def api_options(env, **settings):
    return {"extravars": ["@" + env.vars_file, settings]}


# --- exit 0: promoted ---------------------------------------------------------------------------------------------------

def test_cli_canary_promotes_and_prints_the_json_result(local_env, tmp_path):
    artifact_dir = tmp_path / "runner"
    rc, out, err = cli(local_env, "canary", "--version", "2.0.0", "--steps", "50,100", "-e", "canary_step_pause_s=1",
                       "-e", "canary_abort_delay_s=0", "--json", "--artifact-dir", str(artifact_dir))
    assert rc == 0, err[-3000:]
    result = json_result(out)
    assert (result["status"], result["exit_code"], result["version"], result["from_version"]) == ("promoted", 0, "2.0.0", "1.0.0")
    assert [(s["weight"], s["verdict"], s["probes"]) for s in result["steps"]] == [(50, "pass", "pass"), (100, "pass", "pass")]
    assert result["rolled_back"] is False and result["reasons"] == []
    assert local_env.served_versions() == {"2.0.0"}
    # ansible-runner's artifacts are where the caller asked, with every event.
    assert result["artifact_dir"].startswith(str(artifact_dir))
    assert len(os.listdir(os.path.join(result["artifact_dir"], "job_events"))) > 50
    # Progress goes to stderr in --json mode, plain lines outside a terminal.
    assert re.search(r"gate at 50 %: PASS", err) and re.search(r"step 2/2: 100 %", err), err


def test_cli_canary_of_the_serving_release_changes_nothing(local_env, unchanged):
    rc, out, err = cli(local_env, "canary", "--version", "2.0.0", "--json")
    assert rc == 0, err
    result = json_result(out)
    assert result["status"] == "unchanged" and result["steps"] == []


# --- exit 1: rolled back ------------------------------------------------------------------------------------------------

def test_cli_faulty_canary_exits_1_rolled_back_with_its_reasons(local_env):
    before = local_env.read_ledger()
    with Traffic(local_env, rate=40, seconds=120):
        rc, out, err = cli(local_env, "canary", "--version", "2.0.2", "--steps", "25,50,100", "-e",
                           json.dumps({"app_env": {"LEANVIBE_FAULT_LATENCY_MS": "400"}, "canary_step_pause_s": 3,
                                       "canary_abort_delay_s": 0, "canary_analysis": {"min_requests": 10}}), "--json")
    assert rc == 1, err[-3000:]
    result = json_result(out)
    assert (result["status"], result["rolled_back"], result["from_version"]) == ("rolled_back", True, "2.0.0")
    assert result["reasons"] and re.search(r"p95", result["reasons"][0]), result["reasons"]
    assert result["steps"][-1]["verdict"] == "fail" and result["steps"][-1]["analysis"] == "fail"
    assert isinstance(result["rollback_ms"], int) and result["rollback_ms"] >= 0
    assert local_env.served_versions() == {"2.0.0"}
    ledger = local_env.read_ledger()
    assert ledger["history"][-1]["outcome"] == "rolled_back" and len(ledger["history"]) == len(before["history"]) + 1
    assert ledger["lock"] is None and stable_version(ledger) == "2.0.0"

    # An AWX workflow hands the failed node's set_stats to its rollback node: that rollback must not go one
    # release further back.
    events_dir = os.path.join(result["artifact_dir"], "job_events")
    events = [json.load(open(os.path.join(events_dir, name), encoding="utf-8")) for name in os.listdir(events_dir)]
    published = [e["event_data"]["artifact_data"] for e in events if e.get("event") == "playbook_on_stats"][0]
    assert published["leanvibe_result"]["phase"] == "rolled_back"
    before_rollback = local_env.observe()
    rollback = local_env.playbook("rollback.yml", "-e", json.dumps(dict(published, emergency=True)))
    assert rollback.changed == 0
    local_env.assert_unchanged(before_rollback)
    assert local_env.served_versions() == {"2.0.0"}


# --- exit 2: bad input, nothing started ---------------------------------------------------------------------------------

BAD_INPUT = {
    "unknown subcommand": (["deploy-everything", "-i", "local"], r"invalid choice: 'deploy-everything'"),
    "unknown option": (["canary", "--version", "3.0.0", "--turbo"], r"unrecognized arguments: --turbo"),
    "missing inventory": (["status", "-i", "/nonexistent/inventory"], r"inventory /nonexistent/inventory not found"),
    "version with a path separator": (["canary", "--version", "../x"], r'version must be letters.*\(got "\.\./x"\)' ),
    "version with a space": (["blue-green", "--version", "2 0"], r'version must be letters.*\(got "2 0"\)' ),
    "missing version": (["canary"], r"required: --version"),
    "steps not increasing": (["canary", "--version", "3.0.0", "--steps", "50,10"], r"strictly increasing"),
    "weight out of range": (["canary", "--version", "3.0.0", "--steps", "50,150"], r"from 1 to 100"),
    "unreadable extra vars": (["canary", "--version", "3.0.0", "-e", "@/nonexistent/vars.yml"], r"cannot be read"),
    "extra vars that are not a mapping": (["probe", "-e", "[1, 2]"], r"KEY=VALUE pairs, @FILE or a JSON object"),
    "reserved variable": (["canary", "--version", "3.0.0", "-e", "app_version=9"], r"not with -e"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_bad_input_exits_2_with_one_line_and_starts_nothing(local_env, tmp_path, unchanged, case):
    args, message = BAD_INPUT[case]
    artifact_dir = tmp_path / "never-created"
    argv = [CLI] + args + ["-e", "@" + local_env.vars_file, "--artifact-dir", str(artifact_dir)]
    if args[0] != "deploy-everything" and "-i" not in args:
        argv += ["-i", "local"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("leanvibe-deploy: error: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert proc.stdout == ""
    # No ansible-runner run started: its private data dir was never made.
    assert not artifact_dir.exists()


def test_cli_bad_input_with_json_prints_an_invalid_result(local_env, unchanged):
    rc, out, err = cli(local_env, "canary", "--version", "a/b", "--json")
    assert rc == 2
    result = json_result(out)
    assert (result["status"], result["exit_code"]) == ("invalid", 2)
    assert "without path separators" in result["reasons"][0]
    assert len(err.splitlines()) == 1


# --- exit 4: another deployment holds the lock -----------------------------------------------------------------------

def test_cli_exits_4_while_another_run_holds_the_lock(local_env):
    rc, out = local_env.deployment_state("lock", holder=OTHER_HOLDER)
    assert rc == 0, out
    try:
        before = local_env.observe()
        rc, out, err = cli(local_env, "canary", "--version", "4.0.0", "--steps", "100", "--json")
        assert rc == 4, err[-3000:]
        result = json_result(out)
        assert result["status"] == "locked" and result["lock_held_by"]["controller"] == "other-host"
        local_env.assert_unchanged(before)
        assert local_env.served_versions() == {"2.0.0"}
    finally:
        rc, out = local_env.deployment_state("unlock", holder=OTHER_HOLDER)
    assert rc == 0, out


# --- the Python API: callbacks, background, cancel -------------------------------------------------------------------

def test_api_cancel_aborts_a_canary_mid_step_through_its_rollback(local_env):
    events = []
    handle = leanvibe_runner.canary("local", "2.0.3", steps=[50, 100], background=True, on_event=events.append,
                                    **api_options(local_env, canary_step_pause_s=60, canary_abort_delay_s=0))
    assert isinstance(handle, leanvibe_runner.RunHandle)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(e.kind == "step" for e in events) and not handle.done:
        time.sleep(0.2)
    assert any(e.kind == "step" for e in events), [e.message for e in events]
    assert handle.done is False
    # The step is paused for 60 s; the cancel must cut it short and roll back.
    cancelled_at = time.monotonic()
    handle.cancel()
    result = handle.wait(timeout=120)
    assert result is not None, "the run did not end after the cancel"
    assert time.monotonic() - cancelled_at < 45
    assert (result.exit_code, result.status, result.rolled_back, result.cancelled) == (ExitCode.FAILED_CLEAN, "rolled_back", True, True)
    assert any("aborted by the operator" in reason for reason in result.reasons), result.reasons
    assert local_env.served_versions() == {"2.0.0"}
    assert local_env.read_weights()["canary"] == ""
    kinds = [e.kind for e in events]
    for kind in ("started", "plan", "phase", "step", "gate", "rollback", "finished"):
        assert kind in kinds, kinds
    assert kinds.index("plan") < kinds.index("step") < kinds.index("gate") < kinds.index("rollback") < kinds.index("finished")
    jsonschema.validate(result.to_dict(), SCHEMA)


def test_api_cancel_before_changes_stops_the_run(local_env, unchanged):
    result = leanvibe_runner.status("local", cancel=lambda: True, **api_options(local_env))
    assert (result.exit_code, result.status, result.cancelled) == (ExitCode.FAILED_CLEAN, "cancelled", True)


# --- ansible-runner's own CLI, the repository as the project ---------------------------------------------------------

def test_ansible_runner_cli_runs_canary_yml_with_the_repo_as_project(local_env, tmp_path):
    private = tmp_path / "runner"
    extra = json.dumps({"app_version": "2.0.4", "canary_steps": [100], "canary_step_pause_s": 1, "canary_abort_delay_s": 0})
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-runner"), "run", str(private), "-p", "playbooks/canary.yml", "--project-dir", REPO,
         "--inventory", os.path.join(REPO, "inventories", "local"),
         "--cmdline", "-e @%s -e '%s'" % (local_env.vars_file, extra)],
        env=dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", "")), capture_output=True, text=True,
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert local_env.served_versions() == {"2.0.4"}
    # The playbook's published result is in the run's artifacts, as AWX passes it on to a workflow.
    events_dir = next((private / "artifacts").iterdir()) / "job_events"
    events = [json.loads(path.read_text(encoding="utf-8")) for path in events_dir.iterdir()]
    published = [event["event_data"]["artifact_data"] for event in events if event.get("event") == "playbook_on_stats"]
    assert published and published[0]["leanvibe_result"]["status"] == "promoted", published


def test_api_status_and_history_read_the_ledger(local_env):
    result = leanvibe_runner.status("local", **api_options(local_env))
    assert (result.exit_code, result.status, result.version) == (ExitCode.OK, "serving", local_env.served_version())
    assert result.details["active_color"] in ("blue", "green") and result.details["lock"] is None
    history = leanvibe_runner.history("local", limit=2, **api_options(local_env))
    assert history.exit_code == ExitCode.OK and len(history.details["history"]) == 2
    assert history.details["history"][-1]["version"] == "2.0.4"
    rc, out, err = cli(local_env, "history", "--limit", "3")
    assert rc == 0, err
    assert re.search(r"2\.0\.0\s+-> 2\.0\.2\s+rolled_back", out), out
