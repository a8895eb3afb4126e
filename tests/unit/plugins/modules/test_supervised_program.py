"""The supervised_program module end to end through main(), with a fake supervisord and a loopback health server."""

import functools
import os

import pytest

from plugin_test_helpers import run_module
from ansible_collections.leanvibe.deploy.plugins.module_utils import program as program_mod
from ansible_collections.leanvibe.deploy.plugins.modules import supervised_program


SECRET = "s3cret-value"
NAME = "leanvibe-monitor"


@pytest.fixture
def env(program_env, monkeypatch):
    """program_env with the module's ProgramManager wired to the fake supervisor."""
    monkeypatch.setattr(program_mod, "Supervisor", lambda base_dir, *args, **kwargs: program_env.supervisor)
    return program_env


run = functools.partial(run_module, supervised_program.main, raw=True)


def args_of(program_env, **overrides):
    values = program_env.params(**overrides)
    return {key: value for key, value in values.items() if value is not None}


def test_first_run(capsys, env):
    result = run(capsys, args_of(env))
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert (result["name"], result["state"]) == (NAME, "started")
    assert result["pid"] == env.supervisor.processes[NAME]["pid"]
    assert result["log_file"] == os.path.join(env.base_dir, "logs", NAME + ".log")
    assert result["health_url"] == env.health_url
    assert result["health"]["url"] == env.health_url
    assert "before" not in result and "after" not in result and "diff" not in result
    assert SECRET not in result["_raw"]
    assert env.supervisor.started[0][2] == {"LEANVIBE_TOKEN": SECRET}


def test_second_run_not_changed(capsys, env):
    run(capsys, args_of(env))
    result = run(capsys, args_of(env))
    assert result["changed"] is False
    assert "health" not in result
    assert len(env.supervisor.calls_named("replace_program")) == 1


def test_fingerprint_change_restarts(capsys, env):
    run(capsys, args_of(env))
    result = run(capsys, args_of(env, fingerprint="sha1:bbbb"))
    assert result["changed"] is True
    assert len(env.supervisor.calls_named("replace_program")) == 2
    assert run(capsys, args_of(env, fingerprint="sha1:bbbb"))["changed"] is False


def test_restarted_always_changes(capsys, env):
    run(capsys, args_of(env))
    assert run(capsys, args_of(env, state="restarted"))["changed"] is True
    assert run(capsys, args_of(env, state="restarted"))["changed"] is True
    assert len(env.supervisor.calls_named("replace_program")) == 3


def test_check_mode_reports_change_and_writes_nothing(capsys, env):
    result = run(capsys, args_of(env), check=True)
    assert result["changed"] is True
    assert not os.path.exists(env.base_dir)
    assert env.supervisor.calls == [("info", NAME)]


def test_check_mode_on_running_program(capsys, env, snapshot_tree):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    assert run(capsys, args_of(env), check=True)["changed"] is False
    assert run(capsys, args_of(env, env={"LEANVIBE_TOKEN": "rotated"}), check=True)["changed"] is True
    assert run(capsys, args_of(env, state="restarted"), check=True)["changed"] is True
    assert snapshot_tree(env.base_dir) == before
    assert len(env.supervisor.calls_named("replace_program")) == 1


def test_diff_mode_shows_definition_without_env_values(capsys, env):
    result = run(capsys, args_of(env), diff=True)
    diff = result["diff"]
    assert diff["before"] == {"running": False}
    assert diff["after"] == {"argv": env.params()["argv"], "fingerprint": "sha1:aaaa", "python": env.params()["python"],
                             "health_url": env.health_url, "env_keys": ["LEANVIBE_TOKEN"], "running": True}
    assert diff["before_header"] == diff["after_header"] == "program %s" % NAME
    assert SECRET not in result["_raw"]
    second = run(capsys, args_of(env, fingerprint="sha1:bbbb", env={"LEANVIBE_TOKEN": "other-" + SECRET}), diff=True)
    assert (second["diff"]["before"]["fingerprint"], second["diff"]["after"]["fingerprint"]) == ("sha1:aaaa", "sha1:bbbb")
    assert SECRET not in second["_raw"]
    assert "diff" not in run(capsys, args_of(env, fingerprint="sha1:bbbb", env={"LEANVIBE_TOKEN": "other-" + SECRET}), diff=True)


@pytest.mark.parametrize("overrides,message", [
    ({"name": "bad name"}, "name 'bad name' is not valid: use letters, digits, '_' or '-'"),
    ({"name": "a:b"}, "name 'a:b' is not valid"),
    ({"base_dir": "relative/dir"}, "base_dir must be an absolute path, not 'relative/dir'."),
    ({"base_dir": "/tmp/a b"}, "base_dir '/tmp/a b' may only contain letters, digits and . _ / + @ -."),
    ({"python": "/tmp/py#thon"}, "python '/tmp/py#thon' may only contain letters, digits and . _ / + @ -."),
    ({"python": "/nonexistent/python3"}, "python /nonexistent/python3 is not an executable file on the host."),
    ({"argv": []}, "argv must name the program to run, as a list of arguments."),
    ({"argv": ["/bin/app", "a\0b"]}, "argv must not contain a NUL character."),
    ({"env": {"BAD-NAME": "x"}}, "environment variable name 'BAD-NAME' is not valid."),
    ({"env": {"KEY": "a\0b"}}, "environment variable KEY must not contain a NUL character."),
    ({"health_url": "127.0.0.1:5000/healthz"}, "health_url '127.0.0.1:5000/healthz' is not an http:// or https:// URL."),
    ({"health_timeout": -5}, "health_timeout must not be negative."),
    ({"state": "running"}, "value of state must be one of: started, stopped, restarted, absent, got: running"),
])
def test_bad_input_fails_with_one_message_and_touches_nothing(capsys, env, snapshot_tree, overrides, message):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    calls = len(env.supervisor.calls)
    result = run(capsys, args_of(env, **overrides))
    assert result["failed"] is True
    assert result["msg"].startswith(message), result["msg"]
    assert "\n" not in result["msg"]
    assert SECRET not in result["_raw"]
    assert snapshot_tree(env.base_dir) == before
    assert len(env.supervisor.calls) == calls  # not even a look at supervisord


def test_missing_argv_when_started_or_restarted(capsys, env):
    for state in ("started", "restarted"):
        result = run(capsys, args_of(env, argv=None, state=state))
        assert result["failed"] is True
        assert "argv" in result["msg"]
    assert not os.path.exists(env.base_dir)


def test_unhealthy_restart_fails_with_log_tail_and_keeps_previous(capsys, env):
    run(capsys, args_of(env))
    env.supervisor.broken.add("2")
    argv = env.params()["argv"][:-1] + ["2"]
    result = run(capsys, args_of(env, argv=argv, health_timeout=1))
    assert result["failed"] is True
    assert result["msg"].startswith("program %s did not become healthy at %s within 1s (HTTP 503); the program was put back as it was."
                                    % (NAME, env.health_url))
    assert result["msg"].endswith("starting %s version 2\nTraceback: version 2 cannot start" % NAME)
    assert SECRET not in result["_raw"]
    assert run(capsys, args_of(env))["changed"] is False  # the previous definition still serves, healthy


def test_program_of_another_module_is_refused(capsys, env):
    sup = env.supervisor
    spec = {"command": ["/bin/app"], "directory": env.base_dir, "env": {}, "log_file": "/tmp/x.log", "drain_timeout": 15,
            "start_retries": 3, "start_seconds": 1}
    sup.write_program(NAME, sup.render(NAME, spec))
    result = run(capsys, args_of(env))
    assert result["failed"] is True
    assert result["msg"] == "program %s under %s is not managed by leanvibe.deploy.supervised_program; choose another name." % (NAME, env.base_dir)


def test_missing_supervisor_library(capsys, env, monkeypatch):
    monkeypatch.setattr(supervised_program, "HAS_SUPERVISOR", False)
    result = run(capsys, args_of(env))
    assert result["failed"] is True
    assert "supervisor" in result["msg"]
    assert not os.path.exists(env.base_dir)


def test_stopped_then_absent(capsys, env):
    run(capsys, args_of(env))
    base = {"name": NAME, "base_dir": env.base_dir}
    stopped = run(capsys, dict(base, state="stopped"), diff=True)
    assert stopped["changed"] is True
    assert stopped["diff"]["before"]["running"] is True
    assert stopped["diff"]["after"]["running"] is False
    assert not os.path.exists(env.supervisor.program_file(NAME))
    assert os.path.exists(os.path.join(env.base_dir, "programs", NAME + ".json"))
    assert run(capsys, dict(base, state="stopped"))["changed"] is False

    absent = run(capsys, dict(base, state="absent"), diff=True)
    assert absent["changed"] is True
    assert absent["diff"]["after"] == {}
    assert not os.path.exists(os.path.join(env.base_dir, "programs", NAME + ".json"))
    assert run(capsys, dict(base, state="absent"))["changed"] is False


def test_stop_check_mode(capsys, env, snapshot_tree):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    result = run(capsys, {"name": NAME, "base_dir": env.base_dir, "state": "absent"}, check=True)
    assert result["changed"] is True
    assert snapshot_tree(env.base_dir) == before


def test_env_values_are_no_log(capsys, env):
    result = run(capsys, args_of(env, env={"LEANVIBE_TOKEN": SECRET, "PEM": "-----BEGIN-----\nabc\n-----END-----\n"}), diff=True)
    assert result["changed"] is True
    assert SECRET not in result["_raw"] and "abc" not in result["_raw"]
    assert result["diff"]["after"]["env_keys"] == ["LEANVIBE_TOKEN", "PEM"]
