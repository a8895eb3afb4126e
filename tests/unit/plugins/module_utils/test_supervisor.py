"""Program sections, exec specs, the launcher, supervisord config and the XML-RPC client of module_utils/supervisor.py.

No supervisord runs: the XML-RPC proxy is a fake object, and rendered config is checked with supervisor's own
config parser and process code (the same code supervisord uses to read it and to build the program's argv). The
launcher is real: it runs in a subprocess with the exec spec render_exec wrote, and the program it execs reports the
environment and argv it got.
"""

import json
import os
import stat
import subprocess
import sys
import xmlrpc.client

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from ansible_collections.leanvibe.deploy.plugins.module_utils import supervisor as supervisor_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import (
    LAUNCHER,
    Supervisor,
    SupervisorError,
    render_exec,
    render_program,
)

# Values supervisord's config format cannot carry: quotes, backslashes, inline comments, %-interpolation, newlines.
AWKWARD_VALUES = [
    "plain",
    "",
    'say "hi"',
    "C:\\dir\\",
    "back\\\\slash \\n not a newline",
    "pass #1",
    "a ;b",
    "a#b;c",
    "50%",
    "%(here)s %(ENV_HOME)s",
    "it's",
    "ends'",
    "'",
    '"',
    "line1\nline2",
    "\n",
    "trailing newline\n",
    "cr\rhere",
    "crlf\r\nhere",
    "ünïcödé ✓ 日本",
    "k=v,w=x",
    "  spaced  ",
    "$HOME ${PATH} `id` $(id)",
    "[section]\nkey=value",
]

PROBE = ("import json,os,sys; print(json.dumps({'env': {k: os.environ.get(k) for k in sys.argv[1].split(',') if k}, "
         "'argv': sys.argv[2:]}))")


def program_spec(tmp_path, **overrides):
    spec = {
        "command": ["/opt/venv/bin/python", "-m", "demo", "--port", "9001"],
        "directory": str(tmp_path),
        "env": {},
        "log_file": str(tmp_path / "green.log"),
        "drain_timeout": 15,
        "start_retries": 3,
        "start_seconds": 1,
    }
    spec.update(overrides)
    return spec


def write_program(tmp_path, spec, name="demo_green"):
    """Lay out a base dir as Supervisor.ensure_running and replace_program do; return the Supervisor."""
    sup = Supervisor(str(tmp_path / "base"), python=sys.executable)
    os.makedirs(sup.programs_dir)
    for path, text in ((sup.conf, sup.render_conf()), (sup.launcher, LAUNCHER)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    for path, text in zip(sup.program_files(name), sup.render(name, spec)):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return sup


def parse_with_supervisor(sup):
    """Load supervisord.conf and its programs with supervisor's parser; return (process config, argv supervisord would exec)."""
    options = ServerOptions()
    options.configfile = sup.conf
    options.process_config(do_usage=False)
    (group,) = options.process_group_configs
    (process,) = group.process_configs
    _filename, argv = process.make_process().get_execv_args()
    return process, argv


def run_program(argv, env_keys):
    """Run `argv` (a launcher command line) and return what the probe program reports: {'env': ..., 'argv': ...}."""
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert sorted(report["env"]) == sorted(env_keys)
    return report


def probe_spec(tmp_path, env, args=()):
    return program_spec(tmp_path, command=[sys.executable, "-c", PROBE, ",".join(sorted(env))] + list(args), env=env)


# --- render_program -----------------------------------------------------------------------


def test_render_program_settings(tmp_path):
    spec = program_spec(tmp_path, drain_timeout=20, start_retries=5, start_seconds=2, env={"API_KEY": "s3cret"})
    text = render_program("demo_green", spec, "/opt/py", "/b/supervisor/launch.py", "/b/supervisor/programs/demo_green.json")
    lines = text.splitlines()
    assert lines[0].startswith("; Managed by leanvibe.deploy.slot_release")
    assert lines[1] == "[program:demo_green]"
    settings = dict(line.split("=", 1) for line in lines[2:])
    assert settings["command"] == "/opt/py /b/supervisor/launch.py /b/supervisor/programs/demo_green.json"
    assert settings["directory"] == str(tmp_path)
    assert settings["stopwaitsecs"] == "20"
    assert settings["startretries"] == "5"
    assert settings["startsecs"] == "2"
    assert settings["stdout_logfile"] == str(tmp_path / "green.log")
    assert (settings["autorestart"], settings["stopsignal"], settings["redirect_stderr"]) == ("unexpected", "TERM", "true")
    assert (settings["stopasgroup"], settings["killasgroup"]) == ("true", "true")
    assert "environment" not in settings
    assert "s3cret" not in text and "API_KEY" not in text and "-m demo" not in text  # argv and env live in the exec spec
    assert text.endswith("\n")


def test_render_program_names_its_owner_and_restart_policy(tmp_path):
    spec = program_spec(tmp_path, autorestart="true")
    text = render_program("monitor", spec, "/opt/py", "/b/launch.py", "/b/monitor.json", managed_by="leanvibe.deploy.supervised_program")
    lines = text.splitlines()
    assert lines[0] == "; Managed by leanvibe.deploy.supervised_program. Do not edit by hand."
    assert "autorestart=true" in lines
    default = render_program("monitor", program_spec(tmp_path), "/opt/py", "/b/launch.py", "/b/monitor.json").splitlines()
    assert default[0] == "; Managed by leanvibe.deploy.slot_release. Do not edit by hand."
    assert "autorestart=unexpected" in default


def test_render_program_any_exit_restart_is_accepted_by_supervisor(tmp_path):
    sup = write_program(tmp_path, program_spec(tmp_path, autorestart="true"))
    process = parse_with_supervisor(sup)[0]
    assert process.autorestart is RestartUnconditionally


# --- render_exec --------------------------------------------------------------------------


def test_render_exec_holds_argv_as_text_and_env():
    spec = {"command": ["/bin/app", "--port", 9001, "two words", ""], "env": {"ZED": "last", "API_KEY": 'p%ss "w" \\d\n'}}
    text = render_exec(spec)
    assert json.loads(text) == {"argv": ["/bin/app", "--port", "9001", "two words", ""], "env": {"ZED": "last", "API_KEY": 'p%ss "w" \\d\n'}}
    assert text.endswith("}\n")
    assert text == render_exec(dict(spec, env={"API_KEY": 'p%ss "w" \\d\n', "ZED": "last"}))  # stable: keys sorted


@pytest.mark.parametrize("env", [None, {}])
def test_render_exec_without_env(env):
    assert json.loads(render_exec({"command": ["/bin/true"], "env": env})) == {"argv": ["/bin/true"], "env": {}}
    assert json.loads(render_exec({"command": ["/bin/true"]})) == {"argv": ["/bin/true"], "env": {}}


# --- supervisord reads the section; the launcher delivers argv and env unchanged ---------


def test_supervisor_parses_rendered_program(tmp_path):
    env = {"PLAIN": "v", "PERCENT": "50%", "HASH": "a #b"}
    sup = write_program(tmp_path, program_spec(tmp_path, env=env, drain_timeout=9, start_retries=4, start_seconds=3))
    process, argv = parse_with_supervisor(sup)
    assert argv == [sys.executable, sup.launcher, sup.exec_file("demo_green")]
    assert process.name == "demo_green"
    assert process.environment == {}  # nothing from the spec's env in supervisord's config
    assert process.stopwaitsecs == 9
    assert process.startretries == 4
    assert process.startsecs == 3
    assert process.directory == str(tmp_path)
    assert process.redirect_stderr is True
    assert process.stdout_logfile == str(tmp_path / "green.log")
    assert process.autorestart is not True  # `unexpected`, not always
    assert process.exitcodes == [0]


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_env_value_reaches_the_program_unchanged(tmp_path, value):
    env = {"SECRET": value, "OTHER": "x"}
    sup = write_program(tmp_path, probe_spec(tmp_path, env))
    _process, argv = parse_with_supervisor(sup)
    assert argv == [sys.executable, sup.launcher, sup.exec_file("demo_green")]
    assert run_program(argv, env)["env"] == env


@pytest.mark.parametrize("arg", AWKWARD_VALUES)
def test_command_arg_reaches_the_program_unchanged(tmp_path, arg):
    args = ["--motd", arg, "two words", arg]
    sup = write_program(tmp_path, probe_spec(tmp_path, {}, args))
    _process, argv = parse_with_supervisor(sup)
    assert argv == [sys.executable, sup.launcher, sup.exec_file("demo_green")]
    assert run_program(argv, {})["argv"] == args


def test_all_awkward_env_values_at_once_and_inherited_env_kept(tmp_path):
    env = {"VALUE_%d" % index: value for index, value in enumerate(AWKWARD_VALUES)}
    spec = probe_spec(tmp_path, dict(env, PATH_PROBE="x"), AWKWARD_VALUES)
    spec["command"][3] += ",PATH"
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    exec_file = tmp_path / "spec.json"
    exec_file.write_text(render_exec(spec), encoding="utf-8")
    report = run_program([sys.executable, str(launcher), str(exec_file)], list(env) + ["PATH_PROBE", "PATH"])
    assert report["argv"] == AWKWARD_VALUES
    assert report["env"]["PATH"] == os.environ["PATH"]  # the launcher adds to the environment supervisord gives it
    del report["env"]["PATH"]
    assert report["env"] == dict(env, PATH_PROBE="x")


def test_launcher_execs_in_place(tmp_path):
    """The launcher replaces itself with the program (same pid), so supervisord's stop signal reaches the program."""
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    exec_file = tmp_path / "spec.json"
    exec_file.write_text(render_exec({"command": [sys.executable, "-c", "import os; print(os.getpid())"]}), encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(launcher), str(exec_file)], stdout=subprocess.PIPE, text=True)
    out, _err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert int(out) == process.pid


def test_launcher_program_exit_status_is_the_programs(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    exec_file = tmp_path / "spec.json"
    exec_file.write_text(render_exec({"command": [sys.executable, "-c", "raise SystemExit(7)"]}), encoding="utf-8")
    completed = subprocess.run([sys.executable, str(launcher), str(exec_file)], capture_output=True, timeout=30, check=False)
    assert completed.returncode == 7


# --- Supervisor: paths and config ---------------------------------------------------------


def test_supervisor_paths(tmp_path):
    sup = Supervisor(str(tmp_path), python="/opt/py")
    assert sup.dir == str(tmp_path / "supervisor")
    assert sup.conf == str(tmp_path / "supervisor" / "supervisord.conf")
    assert sup.socket == str(tmp_path / "supervisor" / "supervisor.sock")
    assert sup.program_file("demo_blue") == str(tmp_path / "supervisor" / "programs" / "demo_blue.conf")
    assert sup.exec_file("demo_blue") == str(tmp_path / "supervisor" / "programs" / "demo_blue.json")
    assert sup.program_files("demo_blue") == (sup.program_file("demo_blue"), sup.exec_file("demo_blue"))
    assert sup.launcher == str(tmp_path / "supervisor" / "launch.py")
    assert sup.python == "/opt/py"
    assert Supervisor(str(tmp_path)).python == sys.executable


def test_supervisor_render_uses_its_python_launcher_and_exec_file(tmp_path):
    sup = Supervisor(str(tmp_path), python="/opt/py")
    spec = program_spec(tmp_path, env={"KEY": "v"})
    section, exec_text = sup.render("demo_blue", spec)
    assert section == render_program("demo_blue", spec, "/opt/py", sup.launcher, sup.exec_file("demo_blue"))
    assert exec_text == render_exec(spec)
    assert "command=/opt/py %s %s\n" % (sup.launcher, sup.exec_file("demo_blue")) in section
    assert not sup.exec_file("demo_blue").endswith(".conf")  # `[include] files = programs/*.conf` must not pick the JSON up


def test_render_conf_text(tmp_path):
    sup = Supervisor(str(tmp_path))
    text = sup.render_conf()
    lines = text.splitlines()
    for expected in ["[unix_http_server]", "file=%s" % sup.socket, "chmod=0700", "[supervisord]", "pidfile=%s" % sup.pid_file,
                     "logfile=%s" % sup.log_file, "childlogdir=%s" % sup.dir, "[rpcinterface:supervisor]",
                     "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                     "serverurl=unix://%s" % sup.socket, "[include]", "files = programs/*.conf"]:
        assert expected in lines
    assert lines.index("file=%s" % sup.socket) > lines.index("[unix_http_server]")
    assert "inet_http_server" not in text  # no TCP control port


def test_render_conf_is_accepted_by_supervisor(tmp_path):
    sup = write_program(tmp_path, program_spec(tmp_path))
    _process, argv = parse_with_supervisor(sup)
    assert argv[0] == sys.executable
    options = ServerOptions()
    options.configfile = sup.conf
    options.process_config(do_usage=False)
    assert options.pidfile == sup.pid_file
    assert options.logfile == sup.log_file
    (server,) = options.configroot.supervisord.server_configs
    assert server["file"] == sup.socket
    assert server["chmod"] == 0o700


# --- Supervisor: XML-RPC with a fake proxy ------------------------------------------------


def fault(text, code=10):
    return xmlrpc.client.Fault(code, text)


class FakeRpcNamespace:
    def __init__(self):
        self.calls = []
        self.state = "RUNNING"
        self.processes = {}
        self.faults = {}

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        if name in self.faults:
            raise self.faults[name]

    def getState(self):
        self._call("getState")
        return {"statename": self.state}

    def getProcessInfo(self, name):
        self._call("getProcessInfo", name)
        if name not in self.processes:
            raise fault("BAD_NAME: %s" % name)
        return dict(self.processes[name])

    def stopProcess(self, name, wait):
        self._call("stopProcess", name, wait)
        self.processes[name]["statename"] = "STOPPED"

    def reloadConfig(self):
        self._call("reloadConfig")

    def removeProcessGroup(self, name):
        self._call("removeProcessGroup", name)

    def addProcessGroup(self, name):
        self._call("addProcessGroup", name)

    def shutdown(self):
        self._call("shutdown")


class FakeProxy:
    def __init__(self):
        self.supervisor = FakeRpcNamespace()


@pytest.fixture
def sup(tmp_path, monkeypatch):
    """A Supervisor whose socket 'exists' and whose XML-RPC proxy is a fake."""
    instance = Supervisor(str(tmp_path))
    os.makedirs(instance.programs_dir)
    with open(instance.socket, "w"):
        pass
    proxy = FakeProxy()
    monkeypatch.setattr(instance, "rpc", lambda: proxy)
    instance.fake = proxy.supervisor
    return instance


def names(calls):
    return [call[0] for call in calls]


def test_ping_without_socket_does_not_call_rpc(tmp_path, monkeypatch):
    instance = Supervisor(str(tmp_path))

    def no_rpc():
        raise AssertionError("rpc must not be used without a socket")

    monkeypatch.setattr(instance, "rpc", no_rpc)
    assert instance.ping() is False
    assert instance.info("demo_blue") is None


def test_ping_states(sup):
    assert sup.ping() is True
    sup.fake.state = "SHUTDOWN"
    assert sup.ping() is False
    sup.fake.faults["getState"] = OSError(111, "Connection refused")
    assert sup.ping() is False
    sup.fake.faults["getState"] = fault("SHUTDOWN_STATE")
    assert sup.ping() is False


def test_info(sup):
    sup.fake.processes["demo_blue"] = {"statename": "RUNNING", "pid": 321}
    assert sup.info("demo_blue") == {"statename": "RUNNING", "pid": 321}
    assert sup.info("demo_green") is None
    sup.fake.faults["getProcessInfo"] = fault("FAILED: something else")
    with pytest.raises(SupervisorError, match="supervisord: FAILED: something else"):
        sup.info("demo_blue")


@pytest.mark.parametrize("state,stops", [("RUNNING", True), ("STARTING", True), ("BACKOFF", True), ("STOPPED", False),
                                         ("FATAL", False), ("EXITED", False)])
def test_stop_only_stops_live_processes(sup, state, stops):
    sup.fake.processes["demo_blue"] = {"statename": state}
    sup.stop("demo_blue")
    assert (("stopProcess", "demo_blue", True) in sup.fake.calls) is stops


def test_stop_unknown_program_is_noop(sup):
    sup.stop("demo_blue")
    assert "stopProcess" not in names(sup.fake.calls)


def test_stop_tolerates_not_running_but_not_other_faults(sup):
    sup.fake.processes["demo_blue"] = {"statename": "RUNNING"}
    sup.fake.faults["stopProcess"] = fault("NOT_RUNNING")
    sup.stop("demo_blue")
    sup.fake.faults["stopProcess"] = fault("FAILED: could not kill")
    with pytest.raises(SupervisorError, match="could not stop demo_blue: FAILED: could not kill"):
        sup.stop("demo_blue")


TEXTS = ("[program:demo_blue]\ncommand=/opt/py launch.py demo_blue.json\n", '{"argv": ["/bin/true"], "env": {"KEY": "s3cret\\r\\n"}}\n')


def read_file(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8")


def test_replace_program_stops_writes_and_reloads_group(sup):
    sup.fake.processes["demo_blue"] = {"statename": "RUNNING"}
    sup.replace_program("demo_blue", TEXTS)
    for path, text in zip(sup.program_files("demo_blue"), TEXTS):
        assert read_file(path) == text
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the exec spec holds environment secrets
    order = [call for call in names(sup.fake.calls) if call not in ("getState", "getProcessInfo")]
    assert order == ["stopProcess", "reloadConfig", "removeProcessGroup", "addProcessGroup"]


def test_replace_program_first_time_ignores_bad_name_on_remove(sup):
    sup.fake.faults["removeProcessGroup"] = fault("BAD_NAME: demo_blue")
    sup.replace_program("demo_blue", TEXTS)
    assert ("addProcessGroup", "demo_blue") in sup.fake.calls


def test_replace_program_refused(sup):
    sup.fake.faults["addProcessGroup"] = fault("CANT_REREAD: bad config")
    with pytest.raises(SupervisorError, match="supervisord refused program demo_blue: CANT_REREAD: bad config"):
        sup.replace_program("demo_blue", TEXTS)
    sup.fake.faults = {"removeProcessGroup": fault("STILL_RUNNING")}
    with pytest.raises(SupervisorError, match="STILL_RUNNING"):
        sup.replace_program("demo_blue", TEXTS)


def test_replace_program_writes_both_files_before_supervisord_rereads(sup):
    seen = []

    def reload_config():
        seen.append(tuple(read_file(path) for path in sup.program_files("demo_blue")))

    sup.fake.reloadConfig = reload_config
    sup.replace_program("demo_blue", TEXTS)
    assert seen == [TEXTS]


def test_remove_program(sup):
    sup.fake.processes["demo_blue"] = {"statename": "RUNNING"}
    for path, text in zip(sup.program_files("demo_blue"), TEXTS):
        with open(path, "w") as handle:
            handle.write(text)
    sup.remove_program("demo_blue")
    assert not os.path.exists(sup.program_file("demo_blue"))
    assert not os.path.exists(sup.exec_file("demo_blue"))
    assert os.listdir(sup.programs_dir) == []
    order = [call for call in names(sup.fake.calls) if call not in ("getState", "getProcessInfo")]
    assert order == ["stopProcess", "reloadConfig", "removeProcessGroup"]


def test_remove_program_when_supervisord_is_down(tmp_path):
    instance = Supervisor(str(tmp_path))
    os.makedirs(instance.programs_dir)
    for path in instance.program_files("demo_blue"):
        with open(path, "w") as handle:
            handle.write("x")
    instance.remove_program("demo_blue")  # no socket: no RPC at all
    assert os.listdir(instance.programs_dir) == []


def test_remove_program_without_files_is_fine(sup):
    sup.remove_program("demo_blue")
    assert os.listdir(sup.programs_dir) == []
    assert ("removeProcessGroup", "demo_blue") in sup.fake.calls


def test_wait_started(sup, monkeypatch):
    states = iter(["STARTING", "BACKOFF", "RUNNING"])

    def info(name):
        return {"statename": next(states)}

    monkeypatch.setattr(sup, "info", info)
    monkeypatch.setattr(supervisor_mod.time, "sleep", lambda seconds: None)
    assert sup.wait_started("demo_blue", 5) == {"statename": "RUNNING"}


def test_wait_started_gives_up_at_timeout(sup, monkeypatch):
    monkeypatch.setattr(sup, "info", lambda name: {"statename": "STARTING"})
    assert sup.wait_started("demo_blue", 0.05) == {"statename": "STARTING"}


def test_shutdown(sup):
    sup.shutdown()
    assert ("shutdown",) in sup.fake.calls


# --- ensure_running -----------------------------------------------------------------------


class FakePopen:
    calls = []

    def __init__(self, argv, **kwargs):
        FakePopen.calls.append((argv, kwargs))


def test_ensure_running_writes_conf_and_does_not_spawn_when_up(tmp_path, monkeypatch):
    instance = Supervisor(str(tmp_path), python="/opt/py")
    monkeypatch.setattr(instance, "ping", lambda: True)
    FakePopen.calls = []
    monkeypatch.setattr(supervisor_mod.subprocess, "Popen", FakePopen)
    assert instance.ensure_running() is False
    assert FakePopen.calls == []
    assert read_file(instance.conf) == instance.render_conf()
    assert read_file(instance.launcher) == LAUNCHER
    for path in (instance.conf, instance.launcher):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(instance.programs_dir).st_mode) == 0o700
    inodes = [os.stat(path).st_ino for path in (instance.conf, instance.launcher)]
    instance.ensure_running()
    assert [os.stat(path).st_ino for path in (instance.conf, instance.launcher)] == inodes  # unchanged files are not rewritten


def test_ensure_running_repairs_a_changed_launcher(tmp_path, monkeypatch):
    instance = Supervisor(str(tmp_path), python="/opt/py")
    monkeypatch.setattr(instance, "ping", lambda: True)
    instance.ensure_running()
    with open(instance.launcher, "w") as handle:
        handle.write("import os; os.system('evil')\n")
    instance.ensure_running()
    assert read_file(instance.launcher) == LAUNCHER
    assert stat.S_IMODE(os.stat(instance.launcher).st_mode) == 0o600


def test_ensure_running_spawns_detached_supervisord(tmp_path, monkeypatch):
    instance = Supervisor(str(tmp_path), python="/opt/py")
    answers = iter([False, False, True])
    monkeypatch.setattr(instance, "ping", lambda: next(answers))
    FakePopen.calls = []
    monkeypatch.setattr(supervisor_mod.subprocess, "Popen", FakePopen)
    assert instance.ensure_running(timeout=5) is True
    ((argv, kwargs),) = FakePopen.calls
    assert argv == ["/opt/py", "-m", "supervisor.supervisord", "-c", instance.conf]
    assert kwargs["start_new_session"] is True
    assert kwargs["cwd"] == instance.dir


def test_ensure_running_timeout(tmp_path, monkeypatch):
    instance = Supervisor(str(tmp_path), python="/opt/py")
    monkeypatch.setattr(instance, "ping", lambda: False)
    FakePopen.calls = []
    monkeypatch.setattr(supervisor_mod.subprocess, "Popen", FakePopen)
    with pytest.raises(SupervisorError, match="did not start within 0 s; see %s" % instance.log_file):
        instance.ensure_running(timeout=0.1)
    assert len(FakePopen.calls) == 1
