"""Program spec validation and ProgramManager (module_utils/program.py): a long-lived program under supervisord.

supervisord is replaced by plugin_test_helpers.FakeSupervisor; the program is a loopback http.server that the fake
starts on the test's port, answering 200 unless the version after `--version` in its argv is in `broken` (503).
"""

import json
import os
import stat
import sys

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import program as program_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.program import (
    MANAGED_BY,
    ProgramError,
    ProgramManager,
    ProgramSpec,
    manage,
    public_view,
    read_program_state,
    validate_argv,
    validate_env,
    validate_health_url,
    validate_program_name,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.slot import check_health, env_digest
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import Supervisor, SupervisorError

from plugin_test_helpers import FakeSupervisor, free_port

NAME = "leanvibe-monitor"
SECRET = "s3cret-value"


def make_manager(program_env, check_mode=False, **overrides):
    return ProgramManager(ProgramSpec(program_env.params(**overrides), check_mode=check_mode), program_env.supervisor)


def start(program_env, restart=False, check_mode=False, **overrides):
    return make_manager(program_env, check_mode=check_mode, **overrides).start(restart=restart, check_mode=check_mode)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def with_version(program_env, version):
    return program_env.params()["argv"][:-1] + [version]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["leanvibe-monitor", "monitor", "a", "Mon_1", "0x", "a" * 64])
def test_validate_program_name_accepts(name):
    assert validate_program_name(name) == name


@pytest.mark.parametrize("name", ["", None, "-lead", "_lead", "a b", "a:b", "a/b", "a.b", "a%b", "a\n", "a" * 65, "mon;x"])
def test_validate_program_name_rejects(name):
    with pytest.raises(ValidationError, match="name .* is not valid: use letters, digits, '_' or '-'"):
        validate_program_name(name)


def test_validate_argv():
    assert validate_argv(["/bin/app", 5, ""]) == ["/bin/app", "5", ""]
    for argv in (None, [], [""], ["  "]):
        with pytest.raises(ValidationError, match="^argv must name the program to run, as a list of arguments.$"):
            validate_argv(argv)
    with pytest.raises(ValidationError, match="^argv must not contain a NUL character.$"):
        validate_argv(["/bin/app", "a\0b"])


def test_validate_env():
    assert validate_env(None) == {}
    assert validate_env({"A": 1, "B": None, "PEM": "x\ny"}) == {"A": "1", "B": "", "PEM": "x\ny"}
    with pytest.raises(ValidationError, match="^environment variable name 'BAD-NAME' is not valid.$"):
        validate_env({"BAD-NAME": "x"})
    with pytest.raises(ValidationError, match="^environment variable KEY must not contain a NUL character.$"):
        validate_env({"KEY": "a\0b"})
    with pytest.raises(ValidationError, match="^env must be a mapping"):
        validate_env(["A=1"])


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000/healthz", "https://mon.example.internal/healthz?x=1", "http://[::1]:5000"])
def test_validate_health_url_accepts(url):
    assert validate_health_url(url) == url


def test_validate_health_url_empty_is_none():
    assert validate_health_url(None) is None
    assert validate_health_url("") is None


@pytest.mark.parametrize("url", ["127.0.0.1:5000/healthz", "ftp://host/x", "http://", "http://host/a b", "http://host/\n"])
def test_validate_health_url_rejects(url):
    with pytest.raises(ValidationError, match="is not an http:// or https:// URL.$"):
        validate_health_url(url)


def test_program_spec_defaults_and_paths(program_env):
    params = program_env.params()
    for key in ("env", "fingerprint", "health_url", "health_timeout", "python", "state"):
        params.pop(key)
    spec = ProgramSpec(params)
    assert (spec.name, spec.base_dir, spec.state) == (NAME, program_env.base_dir, "started")
    assert (spec.env, spec.fingerprint, spec.health_url, spec.health_timeout) == ({}, "", None, 30)
    assert spec.python == sys.executable
    assert spec.state_file == os.path.join(program_env.base_dir, "programs", NAME + ".json")
    assert spec.log_file == os.path.join(program_env.base_dir, "logs", NAME + ".log")


def test_program_spec_base_dir_is_normalised(program_env):
    assert ProgramSpec(program_env.params(base_dir=program_env.base_dir + "//")).base_dir == program_env.base_dir


@pytest.mark.parametrize("overrides,fragment", [
    ({"name": "bad name"}, "name 'bad name' is not valid"),
    ({"base_dir": "relative"}, "base_dir must be an absolute path, not 'relative'."),
    ({"base_dir": "/opt/../etc"}, "base_dir must not contain '..'"),
    ({"base_dir": "/tmp/a b"}, "base_dir '/tmp/a b' may only contain letters, digits and . _ / + @ -."),
    ({"python": "/opt/py thon"}, "python '/opt/py thon' may only contain letters, digits and . _ / + @ -."),
    ({"python": "/nonexistent/python3"}, "python /nonexistent/python3 is not an executable file on the host."),
    ({"state": "running"}, "state 'running' is unknown: it must be one of started, stopped, restarted, absent."),
    ({"argv": []}, "argv must name the program to run"),
    ({"argv": None}, "argv must name the program to run"),
    ({"env": {"1X": "y"}}, "environment variable name '1X' is not valid."),
    ({"health_url": "localhost:5000"}, "health_url 'localhost:5000' is not an http:// or https:// URL."),
    ({"health_timeout": -1}, "health_timeout must not be negative."),
])
def test_program_spec_rejects(program_env, overrides, fragment):
    with pytest.raises(ValidationError) as exc:
        ProgramSpec(program_env.params(**overrides))
    assert str(exc.value).startswith(fragment)
    assert "\n" not in str(exc.value)


def test_program_spec_check_mode_accepts_a_python_not_yet_installed(program_env):
    assert ProgramSpec(program_env.params(python="/opt/later/python"), check_mode=True).python == "/opt/later/python"


@pytest.mark.parametrize("state", ["stopped", "absent"])
def test_program_spec_stop_needs_no_argv_but_a_valid_identity(program_env, state):
    spec = ProgramSpec({"name": NAME, "base_dir": program_env.base_dir, "state": state})
    assert spec.state == state
    with pytest.raises(ValidationError, match="name 'x y' is not valid"):
        ProgramSpec({"name": "x y", "base_dir": program_env.base_dir, "state": state})
    with pytest.raises(ValidationError, match="base_dir '/a b' may only contain"):
        ProgramSpec({"name": NAME, "base_dir": "/a b", "state": state})


def test_public_view_hides_env_values():
    state = {"name": NAME, "argv": ["/bin/app"], "env_sha256": env_digest({"K": SECRET}), "env_keys": ["K"], "fingerprint": "f",
             "python": "/opt/py", "health_url": None}
    view = public_view(state, True)
    assert view == {"argv": ["/bin/app"], "fingerprint": "f", "python": "/opt/py", "health_url": None, "env_keys": ["K"], "running": True}
    assert SECRET not in json.dumps(view)
    assert public_view(None, True) == {"running": False}


def test_read_program_state(program_env):
    spec = ProgramSpec(program_env.params())
    assert read_program_state(spec) is None
    os.makedirs(os.path.dirname(spec.state_file))
    for corrupt in ("{not json", "[1, 2]"):
        with open(spec.state_file, "w") as handle:
            handle.write(corrupt)
        with pytest.raises(ValidationError, match="^program state file %s is corrupt; fix or remove it.$" % spec.state_file):
            read_program_state(spec)


# --- start --------------------------------------------------------------------------------


def test_start_first_time(program_env):
    manager = make_manager(program_env)
    result = manager.start()
    spec = manager.spec
    sup = program_env.supervisor
    assert result["changed"] is True
    assert result["name"] == NAME
    assert result["pid"] == sup.processes[NAME]["pid"]
    assert result["log_file"] == spec.log_file
    assert result["health"]["url"] == program_env.health_url and result["health"]["elapsed_ms"] >= 0
    assert result["before"] == {"running": False}
    assert result["after"]["env_keys"] == ["LEANVIBE_TOKEN"]
    (started,) = sup.started
    assert started == (NAME, program_env.params()["argv"], {"LEANVIBE_TOKEN": SECRET})
    section, exec_text = sup.read_program(NAME)
    assert section.splitlines()[0] == "; Managed by %s. Do not edit by hand." % MANAGED_BY
    assert "[program:%s]" % NAME in section.splitlines()
    assert FakeSupervisor.setting(section, "directory") == program_env.base_dir
    assert FakeSupervisor.setting(section, "autorestart") == "true"  # a long-lived program comes back after any exit
    assert FakeSupervisor.setting(section, "stdout_logfile") == spec.log_file
    assert SECRET not in section and json.loads(exec_text)["env"] == {"LEANVIBE_TOKEN": SECRET}
    for path in sup.program_files(NAME):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    state = read_json(spec.state_file)
    assert state == {"name": NAME, "argv": program_env.params()["argv"], "env_sha256": env_digest({"LEANVIBE_TOKEN": SECRET}),
                     "env_keys": ["LEANVIBE_TOKEN"], "fingerprint": "sha1:aaaa", "python": sys.executable, "health_url": program_env.health_url}
    assert SECRET not in json.dumps(state)
    assert stat.S_IMODE(os.stat(spec.state_file).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(spec.path("logs")).st_mode) & 0o007 == 0
    assert ("ensure_running",) in sup.calls


def test_start_unchanged_when_running_and_healthy(program_env):
    start(program_env)
    result = start(program_env)
    assert result["changed"] is False
    assert result["pid"] == program_env.supervisor.processes[NAME]["pid"]
    assert "health" not in result
    assert result["before"] == result["after"]
    assert len(program_env.supervisor.calls_named("replace_program")) == 1
    assert program_env.health.paths.count("/healthz") >= 2  # the second run asked the health URL


@pytest.mark.parametrize("overrides", [
    {"fingerprint": "sha1:bbbb"},
    {"env": {"LEANVIBE_TOKEN": "rotated"}},
    {"env": {"LEANVIBE_TOKEN": SECRET, "EXTRA": "1"}},
    {"argv": ["/opt/venv/bin/python", "-m", "leanvibe_monitor", "--config", "/etc/other.json", "--version", "1"]},
    {"health_url": None},
])
def test_start_restarts_on_any_change(program_env, overrides):
    start(program_env)
    result = start(program_env, **overrides)
    assert result["changed"] is True
    assert len(program_env.supervisor.calls_named("replace_program")) == 2
    assert start(program_env, **overrides)["changed"] is False


def test_start_restarts_when_program_files_were_edited(program_env):
    start(program_env)
    section_path = program_env.supervisor.program_file(NAME)
    with open(section_path, "a") as handle:
        handle.write("environment=X=1\n")
    assert start(program_env)["changed"] is True
    assert "environment=X=1" not in program_env.supervisor.read_program(NAME)[0]


def test_start_restarts_a_dead_program(program_env):
    start(program_env)
    program_env.supervisor.kill(NAME, "FATAL")
    result = start(program_env)
    assert result["changed"] is True
    assert result["before"]["running"] is False


def test_start_restarts_a_running_but_unhealthy_program(program_env):
    start(program_env)
    program_env.health.serve(status=500, body="oops")
    assert start(program_env)["changed"] is True
    assert check_health(program_env.health_url) == (True, "HTTP 200")


def test_start_without_health_url_only_needs_running(program_env):
    result = start(program_env, health_url=None)
    assert result["changed"] is True
    assert result["health"] == {"url": None, "elapsed_ms": result["health"]["elapsed_ms"]}
    program_env.health.serve(status=500)
    assert start(program_env, health_url=None)["changed"] is False  # nothing asks a health URL


def test_restart_always_restarts(program_env):
    start(program_env)
    first_pid = program_env.supervisor.processes[NAME]["pid"]
    result = start(program_env, restart=True)
    assert result["changed"] is True
    assert result["pid"] != first_pid
    assert len(program_env.supervisor.calls_named("replace_program")) == 2


def test_check_mode_first_time_touches_nothing(program_env):
    result = start(program_env, check_mode=True)
    assert result["changed"] is True
    assert result["after"]["running"] is True
    assert not os.path.exists(program_env.base_dir)
    assert program_env.supervisor.calls_named("replace_program") == []
    assert program_env.supervisor.calls_named("ensure_running") == []


@pytest.mark.parametrize("restart", [False, True])
def test_check_mode_on_running_program_touches_nothing(program_env, snapshot_tree, restart):
    start(program_env)
    before = snapshot_tree(program_env.base_dir)
    pid = program_env.supervisor.processes[NAME]["pid"]
    result = start(program_env, restart=restart, check_mode=True, fingerprint="sha1:cccc")
    assert result["changed"] is True
    assert (result["before"]["fingerprint"], result["after"]["fingerprint"]) == ("sha1:aaaa", "sha1:cccc")
    assert snapshot_tree(program_env.base_dir) == before
    assert program_env.supervisor.processes[NAME]["pid"] == pid
    assert start(program_env, check_mode=True)["changed"] is False


def test_start_treats_supervisor_error_as_not_running(program_env):
    program_env.supervisor.info_error = SupervisorError("socket refused")
    manager = make_manager(program_env)
    assert manager.process_info() is None
    assert manager.start(check_mode=True)["before"] == {"running": False}


def test_start_corrupt_state_file_fails_before_any_change(program_env):
    start(program_env)
    spec = make_manager(program_env).spec
    with open(spec.state_file, "w") as handle:
        handle.write("{")
    with pytest.raises(ValidationError, match="is corrupt"):
        start(program_env, fingerprint="new")
    assert len(program_env.supervisor.calls_named("replace_program")) == 1


def test_start_refuses_a_program_of_another_module(program_env, snapshot_tree):
    sup = program_env.supervisor
    spec = {"command": ["/bin/app"], "directory": program_env.base_dir, "env": {}, "log_file": "/tmp/x.log",
            "drain_timeout": 15, "start_retries": 3, "start_seconds": 1}
    sup.write_program(NAME, sup.render(NAME, spec))  # as slot_release writes a slot's program
    before = snapshot_tree(program_env.base_dir)
    for state in ("started", "stopped", "absent"):
        with pytest.raises(ValidationError) as exc:
            manage(program_env.params(state=state), supervisor=sup)
        assert str(exc.value) == "program %s under %s is not managed by %s; choose another name." % (NAME, program_env.base_dir, MANAGED_BY)
    assert snapshot_tree(program_env.base_dir) == before
    assert sup.calls_named("replace_program") == [] and sup.calls_named("remove_program") == []


# --- failures put the previous definition back --------------------------------------------


def test_unhealthy_restart_restores_previous_program_and_raises_with_log_tail(program_env):
    start(program_env)
    spec = make_manager(program_env).spec
    sup = program_env.supervisor
    program_before = sup.read_program(NAME)
    state_before = read_json(spec.state_file)
    sup.broken.add("2")
    with pytest.raises(ProgramError) as exc:
        start(program_env, argv=with_version(program_env, "2"), health_timeout=0.3)
    message = str(exc.value)
    assert message.startswith("program %s did not become healthy at %s within 0.3s (HTTP 503); the program was put back as it was."
                              % (NAME, program_env.health_url))
    log_part = message.split("Last lines of %s:\n" % spec.log_file, 1)[1]
    assert log_part.splitlines() == ["starting %s version 2" % NAME, "Traceback: version 2 cannot start"]
    # The same parts as result keys, for callers that route on them rather than on the message's text.
    assert exc.value.result_keys() == {"reason": message.split(" Last lines of ", 1)[0], "log_tail": log_part}
    assert exc.value.log_file == spec.log_file
    replaces = sup.calls_named("replace_program")
    assert len(replaces) == 3 and replaces[2][2] == program_before
    assert sup.read_program(NAME) == program_before
    assert sup.processes[NAME]["statename"] == "RUNNING"
    assert read_json(spec.state_file) == state_before
    assert check_health(program_env.health_url) == (True, "HTTP 200")  # the previous definition serves again
    assert start(program_env)["changed"] is False


def test_first_start_unhealthy_removes_program(program_env):
    program_env.supervisor.broken.add("1")
    with pytest.raises(ProgramError, match="HTTP 503"):
        start(program_env, health_timeout=0.3)
    spec = make_manager(program_env).spec
    assert program_env.supervisor.read_program(NAME) == (None, None)
    assert ("remove_program", NAME) in program_env.supervisor.calls
    assert not os.path.exists(spec.state_file)


def test_fatal_process_fails_fast(program_env):
    program_env.supervisor.start_state = "FATAL"
    with pytest.raises(ProgramError, match=r"within 30s \(process FATAL\)"):
        start(program_env, health_timeout=30)
    with pytest.raises(ProgramError, match=r"did not become running within 30s \(process FATAL\)"):
        start(program_env, health_timeout=30, health_url=None)


def test_still_starting_times_out(program_env):
    program_env.supervisor.start_state = "STARTING"
    with pytest.raises(ProgramError, match=r"\(healthy but still starting\)"):
        start(program_env, health_timeout=0.3)
    with pytest.raises(ProgramError, match=r"did not become running within 0.3s \(process STARTING\)"):
        start(program_env, health_timeout=0.3, health_url=None)


def test_health_url_where_nothing_answers(program_env):
    url = "http://127.0.0.1:%d/healthz" % free_port()
    with pytest.raises(ProgramError, match=r"did not become healthy at %s within 0.3s \(.*[Cc]onnection refused.*\)" % url):
        start(program_env, health_timeout=0.3, health_url=url)
    assert program_env.supervisor.read_program(NAME) == (None, None)


def test_restore_does_not_restart_a_previously_stopped_program(program_env):
    start(program_env)
    sup = program_env.supervisor
    sup.kill(NAME, "FATAL")
    program_before = sup.read_program(NAME)
    sup.broken.add("2")
    with pytest.raises(ProgramError):
        start(program_env, argv=with_version(program_env, "2"), health_timeout=0.3)
    assert ("remove_program", NAME) in sup.calls
    assert len(sup.calls_named("replace_program")) == 2  # the failed one only, no restart of the old
    assert NAME not in sup.processes
    assert sup.read_program(NAME) == program_before
    for path in sup.program_files(NAME):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


class _RefusingSupervisor(FakeSupervisor):
    """supervisord refuses the new program after the old process was stopped, as the real one does."""

    def replace_program(self, name, texts):
        if '"2"' in texts[1]:
            self.calls.append(("replace_program", name, tuple(texts)))
            self.stop(name)
            self.write_program(name, texts)
            raise SupervisorError("supervisord refused program %s: CANT_REREAD" % name)
        super().replace_program(name, texts)


def test_supervisor_refusal_puts_program_back(program_env):
    refusing = _RefusingSupervisor(program_env.base_dir, program_env.health, program_env.port)
    program_env.supervisor = refusing
    start(program_env)
    program_before = refusing.read_program(NAME)
    with pytest.raises(ProgramError) as exc:
        start(program_env, argv=with_version(program_env, "2"))
    assert str(exc.value).startswith("program %s did not become healthy at %s within 1s (supervisord refused program %s: CANT_REREAD); "
                                     "the program was put back as it was." % (NAME, program_env.health_url, NAME))
    assert refusing.read_program(NAME) == program_before
    assert refusing.processes[NAME]["statename"] == "RUNNING"
    assert check_health(program_env.health_url) == (True, "HTTP 200")


# --- stop and absent ----------------------------------------------------------------------


def stop_params(program_env, state):
    return {"name": NAME, "base_dir": program_env.base_dir, "state": state, "python": sys.executable}


def test_stopped_removes_program_and_keeps_definition(program_env):
    start(program_env)
    sup = program_env.supervisor
    result = manage(stop_params(program_env, "stopped"), supervisor=sup)
    assert result["changed"] is True and result["state"] == "stopped"
    assert result["before"]["running"] is True and result["after"]["running"] is False
    assert result["after"]["fingerprint"] == "sha1:aaaa"
    assert sup.read_program(NAME) == (None, None)
    assert NAME not in sup.processes
    assert os.path.exists(make_manager(program_env).spec.state_file)
    assert manage(stop_params(program_env, "stopped"), supervisor=sup)["changed"] is False
    assert start(program_env)["changed"] is True  # and it starts again


def test_absent_forgets_definition_keeps_log(program_env):
    start(program_env)
    spec = make_manager(program_env).spec
    result = manage(stop_params(program_env, "absent"), supervisor=program_env.supervisor)
    assert result["changed"] is True
    assert result["after"] == {}
    assert not os.path.exists(spec.state_file)
    assert os.path.exists(spec.log_file)
    assert manage(stop_params(program_env, "absent"), supervisor=program_env.supervisor)["changed"] is False


def test_absent_after_stopped_removes_definition(program_env):
    start(program_env)
    manage(stop_params(program_env, "stopped"), supervisor=program_env.supervisor)
    assert manage(stop_params(program_env, "absent"), supervisor=program_env.supervisor)["changed"] is True


@pytest.mark.parametrize("state", ["stopped", "absent"])
def test_stop_check_mode_changes_nothing(program_env, snapshot_tree, state):
    start(program_env)
    before = snapshot_tree(program_env.base_dir)
    result = manage(stop_params(program_env, state), check_mode=True, supervisor=program_env.supervisor)
    assert result["changed"] is True
    assert snapshot_tree(program_env.base_dir) == before
    assert program_env.supervisor.calls_named("remove_program") == []


@pytest.mark.parametrize("state", ["STARTING", "BACKOFF"])
def test_stop_counts_starting_processes_as_running(program_env, state):
    start(program_env)
    program_env.supervisor.processes[NAME]["statename"] = state
    assert manage(stop_params(program_env, "stopped"), supervisor=program_env.supervisor)["before"]["running"] is True


def test_stop_on_nothing_is_unchanged(program_env):
    result = manage(stop_params(program_env, "absent"), supervisor=program_env.supervisor)
    assert result["changed"] is False
    assert result["before"] == {"running": False}
    assert not os.path.exists(program_env.base_dir)


def test_default_supervisor_lives_under_base_dir_with_the_given_python(program_env):
    manager = ProgramManager(ProgramSpec(program_env.params()))
    assert isinstance(manager.supervisor, Supervisor)
    assert manager.supervisor.dir == os.path.join(program_env.base_dir, "supervisor")
    assert manager.supervisor.python == sys.executable
    assert program_mod.Supervisor is Supervisor
