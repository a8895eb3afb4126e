"""The slot_release module end to end through main(), with a fake supervisord and a loopback health server."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plugin_test_helpers import run_module
from ansible_collections.leanvibe.deploy.plugins.module_utils import slot as slot_mod
from ansible_collections.leanvibe.deploy.plugins.modules import slot_release


SECRET = "s3cret-value"


@pytest.fixture
def env(slot_env, monkeypatch):
    """slot_env with the module's SlotManager wired to the fake supervisor."""
    monkeypatch.setattr(slot_mod, "Supervisor", lambda base_dir, *args, **kwargs: slot_env.supervisor)
    return slot_env


run = functools.partial(run_module, slot_release.main, raw=True)


def args_of(slot_env, **overrides):
    values = slot_env.params(**overrides)
    return {key: value for key, value in values.items() if value is not None}


def test_first_deploy(capsys, env):
    result = run(capsys, args_of(env))
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert (result["slot"], result["version"], result["previous_version"]) == ("green", "1.0.0", None)
    assert result["port"] == env.port
    assert result["release_dir"] == os.path.join(env.base_dir, "releases", "1.0.0")
    assert result["health_url"] == "http://127.0.0.1:%d/health" % env.port
    assert result["pid"] == env.supervisor.processes["demo_green"]["pid"]
    assert result["health"]["url"] == result["health_url"]
    assert "before" not in result and "after" not in result and "diff" not in result
    assert SECRET not in result["_raw"]
    assert os.readlink(os.path.join(env.base_dir, "slots", "green")) == result["release_dir"]


def test_second_run_not_changed(capsys, env):
    run(capsys, args_of(env))
    result = run(capsys, args_of(env))
    assert result["changed"] is False
    assert result["previous_version"] == "1.0.0"
    assert len(env.supervisor.calls_named("replace_program")) == 1


def test_check_mode_reports_change_and_writes_nothing(capsys, env):
    result = run(capsys, args_of(env), check=True)
    assert result["changed"] is True
    assert not os.path.exists(env.base_dir)
    assert env.supervisor.calls_named("replace_program") == []


def test_check_mode_new_version_on_running_slot(capsys, env, snapshot_tree):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    result = run(capsys, args_of(env, version="2.0.0", artifact=env.artifact_v2), check=True)
    assert (result["changed"], result["previous_version"]) == (True, "1.0.0")
    assert snapshot_tree(env.base_dir) == before


def test_diff_mode(capsys, env):
    result = run(capsys, args_of(env), diff=True)
    diff = result["diff"]
    assert diff["before"] == {"running": False}
    assert diff["after"] == {"version": "1.0.0", "port": env.port, "bind": "127.0.0.1",
                             "release_dir": os.path.join(env.base_dir, "releases", "1.0.0"),
                             "env_keys": ["LEANVIBE_API_KEY"], "running": True}
    assert diff["before_header"] == diff["after_header"] == "slot green"
    assert SECRET not in result["_raw"]
    second = run(capsys, args_of(env, version="2.0.0", artifact=env.artifact_v2), diff=True)
    assert second["diff"]["before"]["version"] == "1.0.0"
    assert second["diff"]["after"]["version"] == "2.0.0"
    assert "diff" not in run(capsys, args_of(env, version="2.0.0", artifact=env.artifact_v2), diff=True)


@pytest.mark.parametrize("overrides,message", [
    ({"version": ""}, "version must not be empty."),
    ({"version": "a/b"}, "version 'a/b' must not contain path separators, '..' or spaces."),
    ({"version": "../x"}, "version '../x' must not contain path separators, '..' or spaces."),
    ({"version": "two words"}, "version 'two words' must not contain"),
    ({"app": "Demo-App"}, "app 'Demo-App' is not valid"),
    ({"env": {"BAD-NAME": "x"}}, "environment variable name 'BAD-NAME' is not valid."),
    ({"env": {"KEY": "a\0b"}}, "environment variable KEY must not contain a NUL character."),
    ({"env": {"KEY\n": "x"}}, "environment variable name 'KEY\\n' is not valid."),
    ({"health_path": "health"}, "health_path must start with '/', not 'health'."),
    ({"port": 70000}, "port 70000 is outside 1 to 65535."),
    ({"drain_timeout": -1}, "drain_timeout must not be negative."),
    ({"base_dir": "relative/dir"}, "base_dir must be an absolute path"),
    ({"base_dir": "/tmp/a b"}, "base_dir '/tmp/a b' may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/x#y"}, "base_dir '/tmp/x#y' may only contain letters, digits and . _ / + @ -."),
])
def test_bad_input_fails_with_one_message_and_touches_nothing(capsys, env, snapshot_tree, overrides, message):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    calls = len(env.supervisor.calls_named("replace_program"))
    result = run(capsys, args_of(env, **overrides))
    assert result["failed"] is True
    assert result["msg"].startswith(message)
    assert "\n" not in result["msg"]
    assert snapshot_tree(env.base_dir) == before
    assert len(env.supervisor.calls_named("replace_program")) == calls


def test_multi_line_env_value_deploys_and_reaches_the_program_unchanged(capsys, env):
    values = {"LEANVIBE_API_KEY": SECRET, "PEM": "-----BEGIN-----\nabc\r\n-----END-----\n", "NOTE": 'a #b ;c "d" \\e 50%'}
    result = run(capsys, args_of(env, env=values))
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert [started[2] for started in env.supervisor.started] == [values]
    for value in values.values():
        assert json.dumps(value)[1:-1] not in result["_raw"]  # as the JSON result would spell it
    assert run(capsys, args_of(env, env=values))["changed"] is False


def test_missing_artifact(capsys, env, tmp_path):
    missing = str(tmp_path / "missing.tar.gz")
    result = run(capsys, args_of(env, artifact=missing))
    assert result["failed"] is True
    assert result["msg"] == "artifact %s does not exist on the host." % missing
    assert not os.path.exists(env.base_dir)


def test_artifact_not_a_tar(capsys, env, tmp_path):
    path = tmp_path / "release.tar.gz"
    path.write_bytes(b"\x00" * 10)
    result = run(capsys, args_of(env, artifact=str(path)))
    assert result["failed"] is True
    assert result["msg"] == "artifact %s is not a tar archive." % path


def test_port_in_use(capsys, env, listening_socket):
    port = listening_socket()
    result = run(capsys, args_of(env, port=port))
    assert result["failed"] is True
    assert result["msg"] == "port %d on 127.0.0.1 is already in use by another process." % port
    assert not os.path.exists(env.base_dir)


def test_missing_required_when_started(capsys, env):
    result = run(capsys, args_of(env, command=None))
    assert result["failed"] is True
    assert "command" in result["msg"]
    assert not os.path.exists(env.base_dir)


def test_unknown_slot_rejected_by_choices(capsys, env):
    result = run(capsys, args_of(env, slot="red"))
    assert result["failed"] is True
    assert "slot" in result["msg"]


def test_unhealthy_release_fails_with_log_tail_and_keeps_old_release(capsys, env):
    run(capsys, args_of(env))
    env.supervisor.broken.add("2.0.0")
    result = run(capsys, args_of(env, version="2.0.0", artifact=env.artifact_v2, health_timeout=1))
    assert result["failed"] is True
    assert result["msg"].startswith("slot green did not become healthy with version 2.0.0 within 1s (HTTP 503)")
    assert result["msg"].endswith("starting demo_green version 2.0.0\nTraceback: version 2.0.0 cannot start")
    assert os.readlink(os.path.join(env.base_dir, "slots", "green")) == os.path.join(env.base_dir, "releases", "1.0.0")
    assert run(capsys, args_of(env))["changed"] is False  # the old release still serves, healthy


def test_missing_supervisor_library(capsys, env, monkeypatch):
    monkeypatch.setattr(slot_release, "HAS_SUPERVISOR", False)
    result = run(capsys, args_of(env))
    assert result["failed"] is True
    assert "supervisor" in result["msg"]
    assert not os.path.exists(env.base_dir)


def test_stopped_then_absent(capsys, env):
    run(capsys, args_of(env))
    base = {"app": "demo", "slot": "green", "base_dir": env.base_dir}
    stopped = run(capsys, dict(base, state="stopped"), diff=True)
    assert stopped["changed"] is True
    assert stopped["version"] == "1.0.0"
    assert stopped["diff"]["before"]["running"] is True
    assert stopped["diff"]["after"]["running"] is False
    assert not os.path.exists(env.supervisor.program_file("demo_green"))
    assert os.path.exists(os.path.join(env.base_dir, "slots", "green.json"))
    assert run(capsys, dict(base, state="stopped"))["changed"] is False

    absent = run(capsys, dict(base, state="absent"), diff=True)
    assert absent["changed"] is True
    assert absent["diff"]["after"] == {}
    assert not os.path.exists(os.path.join(env.base_dir, "slots", "green.json"))
    assert os.path.isdir(os.path.join(env.base_dir, "releases", "1.0.0"))
    assert run(capsys, dict(base, state="absent"))["changed"] is False


def test_stop_check_mode(capsys, env, snapshot_tree):
    run(capsys, args_of(env))
    before = snapshot_tree(env.base_dir)
    result = run(capsys, {"app": "demo", "slot": "green", "base_dir": env.base_dir, "state": "absent"}, check=True)
    assert result["changed"] is True
    assert snapshot_tree(env.base_dir) == before


def test_the_old_name_runs_this_module_and_warns(tmp_path):
    """meta/runtime.yml routes leanvibe.deploy.canary_deploy here, with a deprecation warning (real ansible, check mode)."""
    repo = Path(__file__).resolve().parents[4]
    collections = tmp_path / "collections" / "ansible_collections" / "leanvibe"
    collections.mkdir(parents=True)
    (collections / "deploy").symlink_to(repo)
    base_dir = tmp_path / "demo"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    environ.update(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_DEPRECATION_WARNINGS="true",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "--check",
         "-e", "ansible_python_interpreter=%s" % sys.executable, "-m", "leanvibe.deploy.canary_deploy",
         "-a", "app=demo slot=green base_dir=%s state=stopped" % base_dir],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environ, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.split(" => ", 1)[1])
    assert (result["changed"], result["slot"], result["log_file"]) == (False, "green", str(base_dir / "logs" / "green.log"))
    warning = " ".join(proc.stderr.split())
    assert "[DEPRECATION WARNING]: leanvibe.deploy.canary_deploy has been deprecated. Use leanvibe.deploy.slot_release" in warning
    assert "version 1.0.0" in warning
    assert not base_dir.exists()  # check mode
