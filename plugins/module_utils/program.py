# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A long-lived program (a service such as the monitoring dashboard) kept running by the supervisord of a base dir.

Layout under the base dir::

    programs/<name>.json         what the program runs (compared on the next run; environment names, not values)
    logs/<name>.log              the program's output
    supervisor/                  the supervisord that keeps it up (shared with the app slots of that base dir)
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    ValidationError,
    atomic_write,
    read_text,
    validate_plain_path,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.slot import check_health, env_digest, log_since
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import (
    Supervisor,
    SupervisorError,
    program_info,
    restore_program,
    wait_healthy,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import elapsed_ms

MANAGED_BY = "leanvibe.deploy.supervised_program"
STATES = ("started", "stopped", "restarted", "absent")
# How the program is run; fixed, so that the module stays thin: SIGTERM, 15 s to finish, then SIGKILL;
# up once it stays up 1 s; a start that fails at once retried 3 times with backoff; restarted after any exit.
DRAIN_TIMEOUT = 15
START_SECONDS = 1
START_RETRIES = 3

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_RE = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?")


class ProgramError(Exception):
    """The program could not be brought to the wanted state; the message is one sentence (plus log tail).

    ``reason`` is the sentence alone and ``log_tail`` the log's last lines, as result keys for callers to route on.
    """

    def __init__(self, reason, log_file=None, log_tail=None):
        message = reason if log_tail is None else "%s Last lines of %s:\n%s" % (reason, log_file, log_tail)
        super().__init__(message)
        self.reason = reason
        self.log_file = log_file
        self.log_tail = log_tail

    def result_keys(self):
        keys = {"reason": self.reason}
        if self.log_tail is not None:
            keys["log_tail"] = self.log_tail
        return keys


def validate_program_name(name):
    if not name or not _NAME_RE.fullmatch(str(name)):
        raise ValidationError(
            "name %r is not valid: use letters, digits, '_' or '-', starting with a letter or digit, at most 64 characters." % (name,))
    return str(name)


def validate_argv(argv):
    argv = [str(arg) for arg in (argv or [])]
    if not argv or not argv[0].strip():
        raise ValidationError("argv must name the program to run, as a list of arguments.")
    if any("\0" in arg for arg in argv):
        raise ValidationError("argv must not contain a NUL character.")
    return argv


def validate_env(env):
    if env is not None and not isinstance(env, dict):
        raise ValidationError("env must be a mapping of variable names to values.")
    clean = dict((str(k), "" if v is None else str(v)) for k, v in (env or {}).items())
    for key, value in clean.items():
        if not _ENV_NAME_RE.fullmatch(key):
            raise ValidationError("environment variable name %r is not valid." % key)
        if "\0" in value:
            raise ValidationError("environment variable %s must not contain a NUL character." % key)
    return clean


def validate_health_url(url):
    if url is None or url == "":
        return None
    if not _URL_RE.fullmatch(str(url)):
        raise ValidationError("health_url %r is not an http:// or https:// URL." % (url,))
    return str(url)


def public_view(state, running):
    """What diff mode shows of a program definition: environment names, never values (they may be secrets)."""
    if not state:
        return {"running": False}
    view = dict((key, state.get(key)) for key in ("argv", "fingerprint", "python", "health_url"))
    view["env_keys"] = state.get("env_keys", [])
    view["running"] = running
    return view


class ProgramSpec:
    """Validated arguments of one supervised program."""

    def __init__(self, params, check_mode=False):
        self.name = validate_program_name(params.get("name"))
        self.base_dir = validate_plain_path(params.get("base_dir"), "base_dir")
        self.state = params.get("state") or "started"
        if self.state not in STATES:
            raise ValidationError("state %r is unknown: it must be one of %s." % (self.state, ", ".join(STATES)))
        self.python = validate_plain_path(params.get("python") or sys.executable, "python")
        if self.state not in ("started", "restarted"):
            return
        self.argv = validate_argv(params.get("argv"))
        self.env = validate_env(params.get("env"))
        fingerprint = params.get("fingerprint")
        self.fingerprint = "" if fingerprint is None else str(fingerprint)
        self.health_url = validate_health_url(params.get("health_url"))
        timeout = params.get("health_timeout")
        self.health_timeout = 30 if timeout is None else timeout
        if self.health_timeout < 0:
            raise ValidationError("health_timeout must not be negative.")
        # supervisord runs this interpreter (it needs the supervisor package). In check mode it may be one that an
        # earlier task would only have installed.
        if not check_mode and not (os.path.isfile(self.python) and os.access(self.python, os.X_OK)):
            raise ValidationError("python %s is not an executable file on the host." % self.python)

    def path(self, *parts):
        return os.path.join(self.base_dir, *parts)

    @property
    def state_file(self):
        return self.path("programs", "%s.json" % self.name)

    @property
    def log_file(self):
        return self.path("logs", "%s.log" % self.name)


def read_program_state(spec):
    text = read_text(spec.state_file)
    if text is None:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        raise ValidationError("program state file %s is corrupt; fix or remove it." % spec.state_file)
    return state


class ProgramManager:
    def __init__(self, spec, supervisor=None):
        self.spec = spec
        self.supervisor = supervisor or Supervisor(spec.base_dir, spec.python)

    def process_info(self):
        return program_info(self.supervisor, self.spec.name)

    @staticmethod
    def is_running(info):
        return bool(info) and info.get("statename") == "RUNNING"

    def current_texts(self):
        return tuple(read_text(path) for path in self.supervisor.program_files(self.spec.name))

    def check_owner(self):
        """Refuse a program of the same name that another module (an app slot) defined in this supervisord."""
        section = self.current_texts()[0]
        if section is not None and section.splitlines()[:1] != ["; Managed by %s. Do not edit by hand." % MANAGED_BY]:
            raise ValidationError("program %s under %s is not managed by %s; choose another name." % (self.spec.name, self.spec.base_dir, MANAGED_BY))

    def desired_state(self):
        spec = self.spec
        return {
            "name": spec.name,
            "argv": spec.argv,
            "env_sha256": env_digest(spec.env),
            "env_keys": sorted(spec.env),
            "fingerprint": spec.fingerprint,
            "python": spec.python,
            "health_url": spec.health_url,
        }

    def program_spec(self):
        spec = self.spec
        return {
            "command": spec.argv,
            "directory": spec.base_dir,
            "env": spec.env,
            "log_file": spec.log_file,
            "drain_timeout": DRAIN_TIMEOUT,
            "start_retries": START_RETRIES,
            "start_seconds": START_SECONDS,
            "autorestart": "true",
        }

    def render(self):
        return self.supervisor.render(self.spec.name, self.program_spec(), managed_by=MANAGED_BY)

    def start(self, restart=False, check_mode=False):
        """Run the program as specified; (re)start it when its definition or fingerprint changed, or when `restart`."""
        spec = self.spec
        self.check_owner()
        current = read_program_state(spec)
        info = self.process_info()
        running = self.is_running(info)
        desired = self.desired_state()
        texts = self.render()
        same = bool(current) and all(current.get(key) == value for key, value in desired.items()) and self.current_texts() == texts
        result = {
            "name": spec.name,
            "log_file": spec.log_file,
            "health_url": spec.health_url,
            "before": public_view(current, running),
            "after": public_view(desired, True),
        }
        if same and running and not restart:
            healthy = True if spec.health_url is None else check_health(spec.health_url)[0]
            if healthy:
                result.update(changed=False, pid=info.get("pid"))
                return result
        result["changed"] = True
        if check_mode:
            return result

        for folder in ("programs", "logs"):
            os.makedirs(spec.path(folder), mode=0o750, exist_ok=True)
        previous_program = self.current_texts()
        self.supervisor.ensure_running()
        log_offset = os.path.getsize(spec.log_file) if os.path.exists(spec.log_file) else 0
        started = time.monotonic()
        try:
            self.supervisor.replace_program(spec.name, texts)
            ok, detail = self.wait_healthy(spec.health_timeout)
        except (SupervisorError, OSError) as exc:
            ok, detail = False, str(exc)
        if not ok:
            log_tail = self.log_since(log_offset)
            self.restore(previous_program, running)
            raise ProgramError("program %s did not become %s within %ss (%s); the program was put back as it was." % (
                spec.name, "healthy at %s" % spec.health_url if spec.health_url else "running", spec.health_timeout, detail),
                log_file=spec.log_file, log_tail=log_tail)
        info = self.process_info() or {}
        atomic_write(spec.state_file, json.dumps(desired, indent=2, sort_keys=True) + "\n", mode=0o640)
        result["pid"] = info.get("pid")
        result["health"] = {"url": spec.health_url, "elapsed_ms": elapsed_ms(started)}
        return result

    def wait_healthy(self, timeout):
        """(ok, detail): RUNNING in supervisord and, with a health URL, answering 200 there."""
        url = self.spec.health_url
        return wait_healthy(self.supervisor, self.spec.name, timeout, check=(lambda: check_health(url, timeout=2.0)) if url else None)

    def log_since(self, offset):
        return log_since(self.spec.log_file, offset)

    def restore(self, previous_program, was_running):
        """Put the previous definition (section and exec spec texts) back; start it again only if it ran."""
        try:
            restore_program(self.supervisor, self.spec.name, previous_program, was_running)
        except (SupervisorError, OSError):
            pass

    def stop(self, remove=False, check_mode=False):
        """Stop the program gracefully and take it out of supervisord; `remove` also forgets its definition."""
        spec = self.spec
        self.check_owner()
        current = read_program_state(spec)
        info = self.process_info()
        running = self.is_running(info) or bool(info and info.get("statename") in ("STARTING", "BACKOFF"))
        has_program = os.path.exists(self.supervisor.program_file(spec.name))
        changed = running or has_program or (remove and current is not None)
        result = {
            "name": spec.name,
            "log_file": spec.log_file,
            "before": public_view(current, running),
            "after": {} if remove else public_view(current, False),
            "changed": changed,
        }
        if check_mode or not changed:
            return result
        self.supervisor.remove_program(spec.name)
        if remove and os.path.exists(spec.state_file):
            os.unlink(spec.state_file)
        return result


def manage(params, check_mode=False, supervisor=None):
    """Bring the program named in `params` to its state; the module's result (with `before` and `after`)."""
    spec = ProgramSpec(params, check_mode=check_mode)
    manager = ProgramManager(spec, supervisor)
    if spec.state in ("started", "restarted"):
        result = manager.start(restart=spec.state == "restarted", check_mode=check_mode)
    else:
        result = manager.stop(remove=spec.state == "absent", check_mode=check_mode)
    result["state"] = spec.state
    return result
