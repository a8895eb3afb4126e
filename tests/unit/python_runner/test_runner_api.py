"""leanvibe_runner.api with ansible_runner.run faked: options -> extravars, events, background runs, cancelling."""

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

import ansible_runner
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import (Gate, Stream, canary_plan, load_events, make_project, poll,  # noqa: E402
                                 refuse_real_runs, validate)

import leanvibe_runner  # noqa: E402
from leanvibe_runner import api  # noqa: E402
from leanvibe_runner.codes import ExitCode, UsageError  # noqa: E402
from leanvibe_runner.events import RunEvent  # noqa: E402
from leanvibe_runner.result import RunResult  # noqa: E402


@pytest.fixture(autouse=True)
def no_real_runs(monkeypatch, tmp_path):
    """No test here may start ansible-playbook, or leave temporary dirs outside tmp_path."""
    monkeypatch.setattr(ansible_runner, "run", refuse_real_runs)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.delenv("LEANVIBE_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def run(project, command, inventory="local", **options):
    options.setdefault("project_dir", project)
    options.setdefault("artifact_dir", project.parent / "art")
    return api.run(command, inventory, **options)


# -- options -> ansible_runner.run ---------------------------------------------------------------------------
def test_canary_options_become_extravars(project, fake):
    runner = fake(load_events("canary_promoted.json"))
    result = run(project, "canary", version="2.2.0", steps="10,25,50,100", extravars=["canary_step_pause_s=0"])
    kwargs = runner.kwargs
    art = (project.parent / "art").resolve()
    assert kwargs["extravars"] == {"canary_step_pause_s": "0", "app_version": "2.2.0",
                                   "canary_steps": [10, 25, 50, 100], "canary_abort_file": str(art / "abort")}
    assert kwargs["playbook"] == "playbooks/canary.yml"
    assert kwargs["project_dir"] == str(project.resolve())
    assert kwargs["inventory"] == str((project / "inventories" / "local").resolve())
    assert kwargs["private_data_dir"] == str(art)
    assert kwargs["cmdline"] is None
    assert kwargs["quiet"] is True
    assert isinstance(result, RunResult)
    assert (result.status, result.exit_code) == ("promoted", ExitCode.OK)
    assert result.artifact_dir == str(art / "artifacts" / "fake-ident")
    assert result.inventory == kwargs["inventory"]
    assert result.duration_s >= 0
    validate(result)


def test_canary_without_steps_leaves_them_to_the_playbook(project, fake):
    runner = fake()
    leanvibe_runner.canary("local", "2.2.0", project_dir=project, artifact_dir=project.parent / "art")
    assert "canary_steps" not in runner.kwargs["extravars"]
    assert runner.kwargs["extravars"]["app_version"] == "2.2.0"


def test_canary_removes_an_old_abort_file(project, fake):
    art = project.parent / "art"
    art.mkdir()
    (art / "abort").write_text("left over\n", encoding="utf-8")
    seen = {}
    runner = fake(during=lambda cancel, handler: seen.update(exists=(art / "abort").exists()))
    run(project, "canary", version="2.2.0")
    assert runner.called and seen == {"exists": False}


def test_check_mode(project, fake):
    runner = fake()
    run(project, "canary", version="2.2.0", check=True)
    assert runner.kwargs["cmdline"] == "--check --diff"


def test_rollback_options(project, fake):
    runner = fake()
    leanvibe_runner.rollback("staging", target_version="2.0.0", emergency=True, reason="5xx after deploy",
                             project_dir=project, artifact_dir=project.parent / "art")
    kwargs = runner.kwargs
    assert kwargs["playbook"] == "playbooks/rollback.yml"
    assert kwargs["inventory"] == str((project / "inventories" / "staging").resolve())
    assert kwargs["extravars"] == {"target_version": "2.0.0", "emergency": True, "rollback_reason": "5xx after deploy"}


def test_rollback_defaults_and_version_as_target(project, fake):
    runner = fake()
    run(project, "rollback")
    assert runner.kwargs["extravars"] == {"emergency": False}
    runner = fake()
    run(project, "rollback", version="1.9.0")
    assert runner.kwargs["extravars"] == {"target_version": "1.9.0", "emergency": False}


@pytest.mark.parametrize("options, expected", [({}, "comprehensive"), ({"mode": "quick"}, "quick"),
                                               ({"mode": "standard"}, "standard"),
                                               ({"mode": "critical-path-only"}, "critical-path-only")])
def test_probe_mode(project, fake, options, expected):
    runner = fake()
    run(project, "probe", **options)
    assert runner.kwargs["playbook"] == "playbooks/probes.yml"
    assert runner.kwargs["extravars"] == {"probe_mode": expected}


@pytest.mark.parametrize("command, options, expected", [
    ("status", {}, 5), ("status", {"limit": 1}, 1), ("history", {}, 20), ("history", {"limit": 1000}, 1000)])
def test_history_limit(project, fake, command, options, expected):
    runner = fake()
    run(project, command, **options)
    assert runner.kwargs["playbook"] == "playbooks/status.yml"
    assert runner.kwargs["extravars"] == {"history_limit": expected}


def test_history_function_defaults_to_20(project, fake):
    runner = fake()
    leanvibe_runner.history("local", project_dir=project, artifact_dir=project.parent / "art")
    assert runner.kwargs["extravars"]["history_limit"] == 20


def test_blue_green_options(project, fake):
    runner = fake()
    leanvibe_runner.blue_green("local", "3.0.0", project_dir=project, artifact_dir=project.parent / "art")
    assert runner.kwargs["playbook"] == "playbooks/blue_green.yml"
    assert runner.kwargs["extravars"] == {"app_version": "3.0.0"}  # no abort file: only the canary reads one


def test_environment_of_the_run(project, fake):
    runner = fake()
    run(project, "status")
    envvars = runner.kwargs["envvars"]
    assert envvars["ANSIBLE_CONFIG"] == str(project / "ansible.cfg")
    assert envvars["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert envvars["ANSIBLE_NOCOLOR"] == "1"


def test_no_ansible_cfg_no_ansible_config(tmp_path, fake):
    bare = make_project(tmp_path / "bare", ansible_cfg=False)
    runner = fake()
    run(bare, "status")
    assert "ANSIBLE_CONFIG" not in runner.kwargs["envvars"]


def test_default_artifact_dir_is_a_new_temporary_dir(project, fake, tmp_path):
    runner = fake()
    result = api.run("status", "local", project_dir=project)
    private = Path(runner.kwargs["private_data_dir"])
    assert private.parent == tmp_path / "tmp"
    assert private.name.startswith("leanvibe-deploy-status-")
    assert result.artifact_dir.startswith(str(private))


def test_extravars_the_runner_sets_itself_are_not_silently_replaced(project, fake):
    runner = fake()
    result = run(project, "probe", extravars=["probe_mode=quick"])
    assert result.exit_code == ExitCode.USAGE or runner.kwargs["extravars"]["probe_mode"] == "quick"


# -- events ------------------------------------------------------------------------------------------------
def test_on_event_gets_run_events_from_started_to_finished(project, fake):
    runner = fake(load_events("canary_rolled_back.json"), rc=2, status="failed")
    events = []
    result = run(project, "canary", version="2.3.0", on_event=events.append)
    assert all(isinstance(event, RunEvent) for event in events)
    assert events[0].kind == "started"
    assert events[0].data["artifact_dir"] == str((project.parent / "art").resolve())
    assert events[-1].kind == "finished"
    assert events[-1].message == "canary: rolled_back (exit 1)"
    assert events[-1].data == result.to_dict()
    shown = [event.kind for event in events if event.kind != "task"]
    assert shown == ["started", "plan", "phase", "probes", "step", "analysis", "probes", "gate", "rollback", "phase",
                     "failure", "finished"]
    assert all(answer is True for answer in runner.handler_returns)  # keeps ansible-runner's artifacts
    assert (result.status, result.exit_code, result.rolled_back) == ("rolled_back", ExitCode.FAILED_CLEAN, True)
    validate(result)


def test_a_run_without_on_event(project, fake):
    fake(load_events("status_not_serving.json"))
    result = run(project, "status")
    assert (result.status, result.exit_code) == ("not_serving", ExitCode.NEEDS_HUMAN)


# -- usage errors start nothing ------------------------------------------------------------------------------
@pytest.mark.parametrize("command, inventory, options, message", [
    ("deploy", "local", {}, "unknown command 'deploy'"),
    ("canary", "local", {}, "canary needs the version to deploy"),
    ("blue-green", "local", {}, "blue-green needs the version"),
    ("canary", "local", {"version": "../etc"}, 'version must be letters'),
    ("canary", "local", {"version": "2.0.0", "steps": "50,10"}, "strictly increasing"),
    ("canary", "local", {"version": "2.0.0", "extravars": ["app_version=1"]}, "app_version"),
    ("canary", "local", {"version": "2.0.0", "extravars": ["@/nonexistent/vars.yml"]}, "cannot be read"),
    ("canary", "qa", {"version": "2.0.0"}, "inventory qa not found"),
    ("canary", None, {"version": "2.0.0"}, "an inventory is required"),
    ("status", "local", {"version": "2.0.0"}, "status takes no version"),
    ("rollback", "local", {"steps": "10"}, "only canary takes steps"),
    ("rollback", "local", {"target_version": "a b"}, 'target version must be letters'),
    ("probe", "local", {"mode": "deep"}, "probe mode 'deep' is not one of"),
    ("history", "local", {"limit": 0}, "history limit"),
    ("history", "local", {"limit": 1001}, "history limit"),
    ("history", "local", {"limit": True}, "history limit"),
    ("status", "local", {"limit": "5"}, "history limit"),
    ("status", "local", {"check": True}, "--check does not apply"),
    ("probe", "local", {"check": True}, "--check does not apply"),
])
def test_usage_errors_return_exit_2_without_running(project, fake, command, inventory, options, message):
    runner = fake()
    events = []
    result = run(project, command, inventory, on_event=events.append, **options)
    assert not runner.called
    assert isinstance(result, RunResult)
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert len(result.reasons) == 1 and message in result.reasons[0]
    assert result.artifact_dir is None
    assert [event.kind for event in events] == ["finished"]
    assert events[0].message.startswith("%s: invalid: " % command)
    validate(result)


def test_usage_error_in_the_background(project):
    handle = run(project, "canary", background=True)  # no version; the refusing fake stays in place
    assert isinstance(handle, api.RunHandle)
    result = handle.wait(5)
    assert handle.done
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)


# -- background runs ---------------------------------------------------------------------------------------
def test_background_run_returns_a_handle(project, fake):
    gate = Gate()
    fake(load_events("canary_promoted.json"), during=lambda cancel, handler: gate.wait())
    handle = run(project, "canary", version="2.2.0", background=True)
    assert isinstance(handle, api.RunHandle)
    assert handle.wait(0.05) is None
    assert not handle.done
    gate.open()
    result = handle.wait(10)
    assert handle.done
    assert (result.status, result.exit_code) == ("promoted", ExitCode.OK)
    assert handle.wait() is result


def test_background_run_hands_errors_to_wait(project, fake):
    def explode(cancel, handler):
        raise RuntimeError("ansible-runner broke")
    fake(during=explode)
    handle = run(project, "status", background=True)
    with pytest.raises(RuntimeError, match="ansible-runner broke"):
        handle.wait(10)
    assert handle.done


def test_background_run_cancel_stops_a_status_run(project, fake):
    answers = []
    started = threading.Event()

    def loop(cancel, handler):
        started.set()
        for _attempt in range(1000):
            answers.append(cancel())
            if answers[-1]:
                return
            threading.Event().wait(0.01)

    fake(during=loop, rc=254, status="canceled")
    handle = run(project, "status", background=True)
    assert started.wait(10)
    handle.cancel()
    result = handle.wait(10)
    assert answers[-1] is True and answers.count(True) == 1
    assert (result.status, result.exit_code, result.cancelled) == ("cancelled", ExitCode.FAILED_CLEAN, True)
    assert "cancelled by the caller" in result.reasons
    validate(result)


def test_background_run_polls_the_callers_cancel_too(project, fake):
    asked = threading.Event()
    answers = []
    fake(during=lambda cancel, handler: answers.extend(poll(cancel, 3)), rc=254, status="canceled")
    handle = run(project, "status", background=True, cancel=lambda: asked.set() or True)
    result = handle.wait(10)
    assert asked.is_set()
    assert answers == [True, True, True]
    assert result.status == "cancelled"


# -- cancelling --------------------------------------------------------------------------------------------
def test_cancel_of_a_started_canary_writes_the_abort_file_and_waits(project, fake):
    art = (project.parent / "art").resolve()
    cancel_now = threading.Event()
    seen = {}

    def during(cancel, handler):
        seen["before"] = poll(cancel, 2)  # nothing asked yet
        cancel_now.set()
        seen["after"] = poll(cancel, 5)  # the soft abort: ansible-playbook keeps running
        seen["abort_file"] = (art / "abort").read_text(encoding="utf-8")
        for event in Stream().publish(phase="rolled_back", status="rolled_back", rolled_back=True,
                                      reasons=["gate failed at 25 %: aborted by the operator"], rollback_ms=21).events:
            handler(event)

    started = canary_plan(Stream()).publish(phase="started").events
    runner = fake(started, rc=2, status="failed", during=during)
    events = []
    result = run(project, "canary", version="2.3.0", cancel=cancel_now.is_set, on_event=events.append)
    assert runner.kwargs["extravars"]["canary_abort_file"] == str(art / "abort")
    assert seen == {"before": [False, False], "after": [False] * 5, "abort_file": "aborted by the caller\n"}
    aborting = [event for event in events if event.message.startswith("aborting")]
    assert len(aborting) == 1 and aborting[0].kind == "phase"
    assert aborting[0].data == {"abort_file": str(art / "abort")}
    assert (result.status, result.exit_code, result.cancelled) == ("rolled_back", ExitCode.FAILED_CLEAN, True)
    assert result.reasons == ["gate failed at 25 %: aborted by the operator", "cancelled by the caller"]
    validate(result)


def test_cancel_of_the_recorded_canary_that_aborted_at_its_first_gate(project, fake):
    events = load_events("canary_aborted.json")
    split = next(i for i, event in enumerate(events) if event["event_data"].get("task") == "Publish that the "
                 "deployment started" and event["event"] == "runner_on_ok") + 1
    cancel_now = threading.Event()
    answers = []

    def during(cancel, handler):
        cancel_now.set()
        answers.extend(poll(cancel, 3))

    fake(events[:split], rc=2, status="failed", during=during, after=events[split:])
    result = run(project, "canary", version="2.0.3", cancel=cancel_now.is_set)
    assert answers == [False, False, False]
    assert (project.parent / "art" / "abort").is_file()
    assert (result.status, result.exit_code, result.cancelled, result.rolled_back) == (
        "rolled_back", ExitCode.FAILED_CLEAN, True, True)
    assert result.reasons == ["gate failed at 50 %: aborted by the operator", "cancelled by the caller"]
    assert [(step.weight, step.verdict, step.reasons) for step in result.steps] == [
        (50, "fail", ["aborted by the operator"])]
    assert result.rollback_ms == 7
    validate(result)


def test_cancel_of_a_started_canary_kills_it_after_the_grace_period(project, fake, monkeypatch):
    monkeypatch.setattr(api, "ABORT_GRACE_S", -1.0)
    answers = []
    runner = fake(canary_plan(Stream()).publish(phase="started").events, rc=254, status="canceled",
                  during=lambda cancel, handler: answers.extend(poll(cancel, 3)))
    result = run(project, "canary", version="2.3.0", cancel=lambda: True)
    assert runner.called
    assert answers == [False, True, True]
    assert (project.parent / "art" / "abort").exists()
    assert (result.status, result.exit_code) == ("unknown", ExitCode.NEEDS_HUMAN)
    assert result.reasons[-1] == "cancelled by the caller"


def test_cancel_of_a_canary_before_its_plan_stops_it_at_once(project, fake):
    answers = []
    events = []
    fake(during=lambda cancel, handler: answers.append(cancel()), rc=254, status="canceled")
    result = run(project, "canary", version="2.3.0", cancel=lambda: True, on_event=events.append)
    assert answers == [True]
    assert not (project.parent / "art" / "abort").exists()
    assert "cancelling: stopping ansible-playbook" in [event.message for event in events]
    assert (result.status, result.exit_code) == ("cancelled", ExitCode.FAILED_CLEAN)
    assert "cancelled by the caller" in result.reasons


def test_cancel_of_a_status_run_returns_true_at_once(project, fake):
    asked = []
    answers = []
    fake(load_events("status_not_serving.json")[:3], rc=254, status="canceled",
         during=lambda cancel, handler: answers.extend(poll(cancel, 3)))
    result = run(project, "status", cancel=lambda: asked.append(1) or True)
    assert answers == [True, True, True]
    assert len(asked) == 1  # the caller is asked until it says yes, then no more
    assert not (project.parent / "art" / "abort").exists()
    assert (result.status, result.exit_code, result.cancelled) == ("cancelled", ExitCode.FAILED_CLEAN, True)


def test_no_cancel_callable_never_cancels(project, fake):
    answers = []
    fake(during=lambda cancel, handler: answers.extend(poll(cancel, 3)))
    result = run(project, "status")
    assert answers == [False, False, False]
    assert result.cancelled is False


# -- find_project_dir --------------------------------------------------------------------------------------
@pytest.fixture
def no_fallbacks(monkeypatch, tmp_path):
    """Neither this checkout nor an installed collection: only the argument and the environment count."""
    monkeypatch.setattr(api, "__file__", str(tmp_path / "nowhere" / "a" / "b" / "api.py"))
    monkeypatch.setitem(sys.modules, "ansible_collections.leanvibe.deploy", None)  # import -> ImportError


def test_find_project_dir_explicit(project, no_fallbacks):
    assert api.find_project_dir(project) == project.resolve()
    assert api.find_project_dir(str(project)) == project.resolve()


def test_find_project_dir_from_the_environment(project, no_fallbacks, monkeypatch):
    monkeypatch.setenv("LEANVIBE_PROJECT_DIR", str(project))
    assert api.find_project_dir() == project.resolve()


def test_find_project_dir_explicit_wins_over_the_environment(project, tmp_path, monkeypatch):
    other = make_project(tmp_path / "other")
    monkeypatch.setenv("LEANVIBE_PROJECT_DIR", str(other))
    assert api.find_project_dir(project) == project.resolve()
    assert api.find_project_dir() == other.resolve()


def test_find_project_dir_missing(tmp_path, no_fallbacks, monkeypatch):
    monkeypatch.setenv("LEANVIBE_PROJECT_DIR", str(tmp_path / "not-a-project"))
    with pytest.raises(UsageError, match="cannot find the leanvibe.deploy playbooks"):
        api.find_project_dir()


def test_find_project_dir_refuses_a_wrong_explicit_dir_without_falling_back(tmp_path):
    # This checkout would be found as a fallback; an explicit dir must not silently fall back to it.
    with pytest.raises(UsageError, match="project dir .*also-missing holds no playbooks/canary.yml"):
        api.find_project_dir(tmp_path / "also-missing")


def test_find_project_dir_falls_back_to_this_checkout():
    found = api.find_project_dir()
    assert (found / "playbooks" / "canary.yml").is_file()


def test_run_with_a_missing_project_is_a_usage_error(tmp_path, no_fallbacks):
    result = api.run("status", "local", project_dir=tmp_path / "missing")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert "holds no playbooks/canary.yml" in result.reasons[0]


def test_scrub_artifacts_drops_extra_vars_and_redacts_secret_environment(tmp_path):
    private = tmp_path / "private"
    (private / "env").mkdir(parents=True)
    (private / "env" / "extravars").write_text('{"app_api_key": "hunter2"}', encoding="utf-8")
    artifact = private / "artifacts" / "run1"
    artifact.mkdir(parents=True)
    env = {"PATH": "/usr/bin", "AWX_OAUTH_TOKEN": "tok-123", "VAULT_PASSWORD": "pw", "MY_API_KEY": "k", "EMPTY_SECRET": ""}
    (artifact / "command").write_text(json.dumps({"command": ["ansible-playbook"], "cwd": "/", "env": env}), encoding="utf-8")

    api.scrub_artifacts(private, artifact)

    assert not (private / "env" / "extravars").exists()
    scrubbed = json.loads((artifact / "command").read_text(encoding="utf-8"))
    assert scrubbed["env"] == {"PATH": "/usr/bin", "AWX_OAUTH_TOKEN": api.REDACTED, "VAULT_PASSWORD": api.REDACTED,
                               "MY_API_KEY": api.REDACTED, "EMPTY_SECRET": ""}
    assert scrubbed["command"] == ["ansible-playbook"]
    assert (artifact / "command").stat().st_mode & 0o777 == 0o600


def test_a_hard_cancel_keeps_answering_true_on_every_later_poll(monkeypatch, tmp_path):
    # ansible-runner polls the cancel callback until the child is gone and keeps only the last answer.
    answers = []

    def fake_run(**kwargs):
        for _poll in range(5):
            answers.append(kwargs["cancel_callback"]())
        return type("Runner", (), {"rc": 254, "status": "canceled",
                                   "config": type("Config", (), {"artifact_dir": str(tmp_path / "artifacts" / "x")})()})()

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    result = api.run("canary", "local", version="2.0.0", cancel=lambda: True, artifact_dir=tmp_path)
    assert answers == [True] * 5
    assert result.cancelled is True and result.status == "cancelled"
