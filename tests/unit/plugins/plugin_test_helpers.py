"""Fakes shared by the plugin unit tests: a loopback health server, a fake supervisord, small path helpers."""

import json
import os
import shlex
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import LAUNCHER, render_exec, render_program


def free_port():
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HealthServer:
    """A loopback HTTP server whose answer (status, body) the test sets; started on demand on a given port."""

    def __init__(self):
        self.status = 200
        self.body = b"{}"
        self.paths = []
        self.server = None
        self.thread = None

    def serve(self, status=200, body=None, version=None):
        self.status = status
        if body is None:
            body = json.dumps({"status": "healthy", "version": version}) if version is not None else "{}"
        self.body = body.encode("utf-8") if isinstance(body, str) else body

    def start(self, port=0):
        if self.server is not None:
            return self.port
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.paths.append(self.path)
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()
        return self.port

    @property
    def port(self):
        return self.server.server_address[1]

    def url(self, path="/health"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


class FakeSupervisor:
    """Stands in for supervisor.Supervisor: program files are real files in tmp_path, processes are dicts.

    `render` is the real one (module_utils.supervisor.render_program / render_exec). Starting a program reads its
    section the way supervisord would (`command=` split with shlex, which must be `python launcher exec_file`), then
    reads the exec JSON that command names, as the launcher does, and lets the argv decide what happens: by default the
    program's health server starts serving the version given after `--version`, unless that version is in `broken`
    (then it answers 503).
    """

    def __init__(self, base_dir, health=None, port=None):
        self.dir = os.path.join(str(base_dir), "supervisor")
        self.programs_dir = os.path.join(self.dir, "programs")
        self.launcher = os.path.join(self.dir, "launch.py")
        self.python = "/opt/leanvibe/python"
        self.health = health
        self.port = port
        self.processes = {}
        self.calls = []
        self.started = []
        self.broken = set()
        self.start_state = "RUNNING"
        self.info_error = None
        self._next_pid = 4000

    def program_file(self, name):
        return os.path.join(self.programs_dir, "%s.conf" % name)

    def exec_file(self, name):
        return os.path.join(self.programs_dir, "%s.json" % name)

    def program_files(self, name):
        return (self.program_file(name), self.exec_file(name))

    def render(self, name, spec, managed_by="leanvibe.deploy.slot_release"):
        return render_program(name, spec, self.python, self.launcher, self.exec_file(name), managed_by=managed_by), render_exec(spec)

    def read_program(self, name):
        """(section text, exec text) on disk now, None for a missing file."""
        return tuple(read_bytes_or_none(path, text=True) for path in self.program_files(name))

    def info(self, name):
        self.calls.append(("info", name))
        if self.info_error is not None:
            raise self.info_error
        process = self.processes.get(name)
        return dict(process) if process else None

    def ensure_running(self):
        self.calls.append(("ensure_running",))
        os.makedirs(self.programs_dir, mode=0o700, exist_ok=True)
        with open(self.launcher, "w", encoding="utf-8") as handle:
            handle.write(LAUNCHER)
        return False

    def stop(self, name):
        """supervisord stops the old process before it rereads the program: its listener goes away."""
        process = self.processes.get(name)
        if process and process["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            process["statename"] = "STOPPED"
            if self.health is not None:
                self.health.stop()

    def replace_program(self, name, texts):
        self.calls.append(("replace_program", name, tuple(texts)))
        self.stop(name)
        self.write_program(name, texts)
        self._start(name)

    def write_program(self, name, texts):
        os.makedirs(self.programs_dir, exist_ok=True)
        for path, text in zip(self.program_files(name), texts):
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(path, 0o600)

    def remove_program(self, name):
        self.calls.append(("remove_program", name))
        for path in self.program_files(name):
            if os.path.exists(path):
                os.unlink(path)
        self.processes.pop(name, None)
        if self.health is not None:
            self.health.stop()  # the process is gone, and so is its listener

    def kill(self, name, state="EXITED"):
        """The process died: supervisord shows `state`, nothing answers the health URL."""
        self.processes[name]["statename"] = state
        if self.health is not None:
            self.health.stop()

    def calls_named(self, what):
        return [call for call in self.calls if call[0] == what]

    @staticmethod
    def setting(conf_text, key):
        for line in conf_text.splitlines():
            if line.startswith(key + "="):
                return line[len(key) + 1:]
        return None

    def _start(self, name):
        with open(self.program_file(name), encoding="utf-8") as handle:
            section = handle.read()
        command = shlex.split(self.setting(section, "command"))
        if command != [self.python, self.launcher, self.exec_file(name)]:
            raise AssertionError("command= of %s is not `python launcher exec_file`: %r" % (name, command))
        with open(command[2], encoding="utf-8") as handle:
            spec = json.load(handle)  # what the launcher execs
        args = spec["argv"]
        self.started.append((name, args, spec["env"]))
        version = args[args.index("--version") + 1] if "--version" in args else None
        log_file = self.setting(section, "stdout_logfile")
        with open(log_file, "a", encoding="utf-8") as handle:
            handle.write("starting %s version %s\n" % (name, version))
            if version in self.broken:
                handle.write("Traceback: version %s cannot start\n" % version)
        self._next_pid += 1
        self.processes[name] = {"name": name, "statename": self.start_state, "pid": self._next_pid}
        if self.health is not None:
            if version in self.broken:
                self.health.serve(status=503, body="broken")
            else:
                self.health.serve(version=version)
            self.health.start(self.port)


def read_bytes_or_none(path, text=False):
    """The file's bytes (or UTF-8 text), None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    return data.decode("utf-8") if text else data


def tree(path):
    """Every path under `path` (relative, sorted), to compare a folder before and after."""
    found = []
    for root, dirs, files in os.walk(str(path)):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(root, name), str(path)))
    return sorted(found)


def run_module(main, capsys, args, check=False, diff=False, raw=False):
    """Run a module's main() with `args`; return its JSON result (with `raw`, also `_raw`: the printed text).

    The exit code must match the result: 1 when it failed, 0 otherwise.
    """
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            main()
    out = capsys.readouterr().out
    result = json.loads(out)
    assert exc.value.code == (1 if result.get("failed") else 0)
    if raw:
        result["_raw"] = out
    return result


class FakeAdmin:
    """nginx's in-memory weights behind the admin socket; `get_error`/`put_error` make the endpoint fail."""

    def __init__(self, live=None):
        self.live = live
        self.puts = []
        self.gets = 0
        self.get_error = None
        self.put_error = None
        self.reload_loads_file = True

    def get(self, app):
        self.gets += 1
        if self.get_error is not None:
            raise self.get_error
        return self.live

    def put(self, app, doc):
        self.puts.append(doc)
        if self.put_error is not None:
            raise self.put_error
        self.live = doc
        return doc


class FakeRunCommand:
    """module.run_command stand-in: records argv, answers `nginx -t` with `test_rc` and anything else with success."""

    def __init__(self):
        self.commands = []
        self.test_rc = (0, "", "")

    def __call__(self, args, **kwargs):
        self.commands.append(list(args))
        if "-t" in args:
            return self.test_rc
        return (0, "", "")
