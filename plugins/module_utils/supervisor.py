# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One supervisord per app base dir supervises the app's slot processes.

supervisord runs without systemd and without root, restarts a crashed process,
retries a failing start with backoff up to a cap, and stops with SIGTERM, a
drain timeout and then SIGKILL. We talk to it over XML-RPC on a unix socket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xmlrpc.client

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import atomic_write, is_plain_path, read_text

try:
    from supervisor.xmlrpc import SupervisorTransport
    HAS_SUPERVISOR = True
    SUPERVISOR_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised where supervisor is absent
    HAS_SUPERVISOR = False
    SUPERVISOR_IMPORT_ERROR = exc

RUNNING_STATES = ("RUNNING",)
FAILED_STATES = ("FATAL", "EXITED", "BACKOFF", "STOPPED", "UNKNOWN")


class SupervisorError(Exception):
    """supervisord could not be reached or refused a request."""


# supervisord's config format has no safe quoting for arbitrary values (inline
# comments, shlex), so a program's argv and environment go to a JSON file that
# this launcher reads before it execs the program (same pid, so supervision holds).
LAUNCHER = """# Managed by leanvibe.deploy: runs a slot's program with the argv and environment of its JSON spec.
import json
import os
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    spec = json.load(handle)
os.environ.update(spec["env"])
os.execvp(spec["argv"][0], spec["argv"])
"""


def render_exec(spec):
    """The JSON spec the launcher execs: argv and environment, kept out of supervisord's config."""
    return json.dumps({"argv": [str(arg) for arg in spec["command"]], "env": dict(spec.get("env") or {})}, indent=2, sort_keys=True) + "\n"


def render_program(name, spec, python, launcher, exec_file, managed_by="leanvibe.deploy.slot_release"):
    """A `[program:x]` section that starts `launcher exec_file` (paths are validated to be plain).

    The first line names the module that owns the program, so that one module never takes over another's program.
    """
    lines = [
        "; Managed by %s. Do not edit by hand." % managed_by,
        "[program:%s]" % name,
        "command=%s %s %s" % (python, launcher, exec_file),
        "directory=%s" % spec["directory"],
        "autostart=true",
        # on-failure restart like the seed's restart_policy: unexpected exits only (a spec may ask for `true`:
        # any exit), a failing start retried `start_retries` times with growing backoff.
        "autorestart=%s" % spec.get("autorestart", "unexpected"),
        "exitcodes=0",
        "startsecs=%d" % spec["start_seconds"],
        "startretries=%d" % spec["start_retries"],
        "stopsignal=TERM",
        "stopwaitsecs=%d" % spec["drain_timeout"],
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile=%s" % spec["log_file"],
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=3",
    ]
    return "\n".join(lines) + "\n"


class Supervisor:
    """The supervisord of one app base dir: config, daemon and XML-RPC client."""

    def __init__(self, base_dir, python=None):
        self.dir = os.path.join(base_dir, "supervisor")
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.socket = os.path.join(self.dir, "supervisor.sock")
        self.pid_file = os.path.join(self.dir, "supervisord.pid")
        self.log_file = os.path.join(self.dir, "supervisord.log")
        self.programs_dir = os.path.join(self.dir, "programs")
        self.launcher = os.path.join(self.dir, "launch.py")
        self.python = python or sys.executable
        if not is_plain_path(self.python):
            raise SupervisorError("the Python path %r has characters that supervisord's config cannot hold." % self.python)

    def program_file(self, name):
        return os.path.join(self.programs_dir, "%s.conf" % name)

    def exec_file(self, name):
        return os.path.join(self.programs_dir, "%s.json" % name)

    def program_files(self, name):
        """What defines a program: its supervisord section and its exec spec."""
        return (self.program_file(name), self.exec_file(name))

    def render(self, name, spec, managed_by="leanvibe.deploy.slot_release"):
        """(section text, exec spec text) of a program."""
        return render_program(name, spec, self.python, self.launcher, self.exec_file(name), managed_by=managed_by), render_exec(spec)

    def render_conf(self):
        return "\n".join([
            "; Managed by leanvibe.deploy. One supervisord per app base dir.",
            "[unix_http_server]",
            "file=%s" % self.socket,
            "chmod=0700",
            "",
            "[supervisord]",
            "pidfile=%s" % self.pid_file,
            "logfile=%s" % self.log_file,
            "logfile_maxbytes=10MB",
            "logfile_backups=3",
            "childlogdir=%s" % self.dir,
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            "serverurl=unix://%s" % self.socket,
            "",
            "[include]",
            "files = programs/*.conf",
            "",
        ])

    def rpc(self):
        transport = SupervisorTransport(None, None, "unix://" + self.socket)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def ping(self):
        if not os.path.exists(self.socket):
            return False
        try:
            return self.rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def ensure_running(self, timeout=15.0):
        os.makedirs(self.programs_dir, mode=0o700, exist_ok=True)
        for path, text in ((self.conf, self.render_conf()), (self.launcher, LAUNCHER)):
            if read_text(path) != text:
                atomic_write(path, text, mode=0o600)
        if self.ping():
            return False
        # Detached from Ansible's pipes and session, so the module returns while supervisord lives on.
        subprocess.Popen(
            [self.python, "-m", "supervisor.supervisord", "-c", self.conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd=self.dir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return True
            time.sleep(0.05)
        raise SupervisorError("supervisord did not start within %d s; see %s." % (timeout, self.log_file))

    def info(self, name):
        """Process info dict, or None when supervisord does not know the program."""
        if not self.ping():
            return None
        try:
            return self.rpc().supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault as fault:
            if "BAD_NAME" in fault.faultString:
                return None
            raise SupervisorError("supervisord: %s" % fault.faultString)

    def stop(self, name):
        """Graceful stop (SIGTERM, drain timeout, SIGKILL), waiting for it to finish."""
        info = self.info(name)
        if info and info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            try:
                self.rpc().supervisor.stopProcess(name, True)
            except xmlrpc.client.Fault as fault:
                if "NOT_RUNNING" not in fault.faultString:
                    raise SupervisorError("supervisord could not stop %s: %s" % (name, fault.faultString))

    def replace_program(self, name, texts):
        """Stop the old process of `name`, write its (section, exec spec) texts and start it."""
        self.stop(name)
        for path, text in zip(self.program_files(name), texts):
            atomic_write(path, text, mode=0o600)
        self._reload_group(name)

    def remove_program(self, name):
        self.stop(name)
        for path in self.program_files(name):
            if os.path.exists(path):
                os.unlink(path)
        if self.ping():
            self._reload_group(name)

    def _reload_group(self, name):
        rpc = self.rpc()
        try:
            rpc.supervisor.reloadConfig()
            try:
                rpc.supervisor.removeProcessGroup(name)
            except xmlrpc.client.Fault as fault:
                if "BAD_NAME" not in fault.faultString:
                    raise
            if os.path.exists(self.program_file(name)):
                rpc.supervisor.addProcessGroup(name)
        except xmlrpc.client.Fault as fault:
            raise SupervisorError("supervisord refused program %s: %s" % (name, fault.faultString))

    def wait_started(self, name, timeout):
        """Wait while supervisord is still STARTING/BACKOFF; return the last info."""
        deadline = time.monotonic() + timeout
        info = self.info(name)
        while info and info["statename"] in ("STARTING", "BACKOFF") and time.monotonic() < deadline:
            time.sleep(0.05)
            info = self.info(name)
        return info

    def shutdown(self):
        if self.ping():
            self.rpc().supervisor.shutdown()


# --- what app slots and long-lived programs share -------------------------------------------------------------------
# Module functions, not methods: they work with any object that has the Supervisor's info/replace/remove calls.

def program_info(supervisor, name):
    """supervisord's info of `name`, or None when it is unknown or supervisord does not answer."""
    try:
        return supervisor.info(name)
    except SupervisorError:
        return None


def wait_healthy(supervisor, name, timeout, check=None):
    """(ok, detail): `name` is RUNNING in supervisord and, when `check` is given, check() answers (True, detail).

    `check` is polled while the process is STARTING too, so that a slow start is not mistaken for a failure; a process
    that is FATAL, EXITED or STOPPED fails at once.
    """
    deadline = time.monotonic() + timeout
    detail = "not started"
    while True:
        state = (program_info(supervisor, name) or {}).get("statename")
        if state in ("FATAL", "EXITED", "STOPPED"):
            return False, "process %s" % state
        if check is None:
            if state == "RUNNING":
                return True, "process RUNNING"
            detail = "process %s" % (state or "unknown to supervisord")
        elif state in ("RUNNING", "STARTING"):
            healthy, detail = check()
            if healthy and state == "RUNNING":
                return True, detail
            if healthy:
                detail = "healthy but still starting"
        if time.monotonic() >= deadline:
            return False, detail
        time.sleep(0.1)


def restore_program(supervisor, name, previous_texts, was_running):
    """Put `name` back on its previous (section, exec spec) texts; start it again only if it ran before."""
    if None not in previous_texts and was_running:
        supervisor.replace_program(name, previous_texts)
        return
    supervisor.remove_program(name)
    for path, text in zip(supervisor.program_files(name), previous_texts):
        if text is not None:
            atomic_write(path, text, mode=0o600)
