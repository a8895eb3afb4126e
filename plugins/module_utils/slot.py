# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A slot (blue or green) of an app on one host: which release it runs, and its process.

Layout under the app's base dir::

    releases/<version>/          unpacked release artifacts
    slots/<color>                symlink to the release the slot runs
    slots/<color>.json           what the slot runs (compared on the next run)
    slots/<color>.pid            pid of the slot's process
    logs/<color>.log             the process's output
    supervisor/                  the supervisord that keeps the processes up
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error

from ansible.module_utils.urls import open_url

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    ValidationError,
    atomic_write,
    read_text,
    validate_absolute_path,
    validate_plain_path,
    validate_app_name,
    validate_color,
    validate_port,
    validate_version,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.health import judge as judge_health
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import (
    Supervisor,
    SupervisorError,
    program_info,
    restore_program,
    wait_healthy,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import elapsed_ms

RELEASE_MARKER = ".leanvibe-release"
_PLACEHOLDERS = ("port", "bind", "release_dir", "version", "slot", "app")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SlotError(Exception):
    """The slot could not be brought to the wanted state; the message is one sentence (plus log tail)."""


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def env_digest(env):
    return hashlib.sha256(json.dumps(env or {}, sort_keys=True).encode("utf-8")).hexdigest()


def render_command(command, values):
    rendered = []
    for arg in command:
        text = str(arg)
        for key in _PLACEHOLDERS:
            text = text.replace("{%s}" % key, str(values[key]))
        rendered.append(text)
    return rendered


def probe_host(bind):
    """Where to reach a process listening on `bind`: wildcard binds answer on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def url_host(host):
    return "[%s]" % host if ":" in host else host


def port_is_free(bind, port):
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind or "0.0.0.0", port))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()
    return True


def check_health(url, version=None, timeout=2.0):
    """(healthy, detail) for one GET of the health URL; a version mismatch is unhealthy."""
    try:
        with open_url(url, timeout=timeout, validate_certs=False, follow_redirects="none", use_proxy=False) as response:
            body = response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, "HTTP %d" % exc.code
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
    return judge_health(status, body, version)


def tail(path, lines=20):
    text = read_text(path) or ""
    return "\n".join(text.splitlines()[-lines:])


def log_since(path, offset, lines=20):
    """The last `lines` lines written to `path` after byte `offset`; the file's last lines when nothing was."""
    text = read_text(path) or ""
    return "\n".join(text[offset:].splitlines()[-lines:]) or tail(path, lines)


class SlotSpec:
    """Validated arguments of one slot deployment."""

    def __init__(self, params, check_mode=False):
        self.app = validate_app_name(params["app"])
        self.slot = validate_color(params["slot"])
        self.base_dir = validate_plain_path(params["base_dir"], "base_dir")
        self.state = params.get("state", "started")
        self.drain_timeout = self._non_negative(params, "drain_timeout", 15)
        if self.state != "started":
            return
        self.version = validate_version(params.get("version"))
        self.artifact = validate_absolute_path(params.get("artifact"), "artifact")
        # In check mode the artifact may be a copy that was only predicted: judge it as new.
        self.artifact_present = os.path.isfile(self.artifact)
        if not self.artifact_present and not check_mode:
            raise ValidationError("artifact %s does not exist on the host." % self.artifact)
        if self.artifact_present and not tarfile.is_tarfile(self.artifact):
            raise ValidationError("artifact %s is not a tar archive." % self.artifact)
        self.port = validate_port(params.get("port"))
        self.bind = params.get("bind") or "127.0.0.1"
        self.command = params.get("command") or []
        if not self.command:
            raise ValidationError("command must name the program that serves the release.")
        self.env = dict((str(k), "" if v is None else str(v)) for k, v in (params.get("env") or {}).items())
        for key, value in self.env.items():
            if not _ENV_NAME_RE.fullmatch(key):
                raise ValidationError("environment variable name %r is not valid." % key)
            if "\0" in value:
                raise ValidationError("environment variable %s must not contain a NUL character." % key)
        self.health_path = params.get("health_path") or "/health"
        if not self.health_path.startswith("/"):
            raise ValidationError("health_path must start with '/', not %r." % self.health_path)
        self.health_timeout = self._non_negative(params, "health_timeout", 30)
        self.expect_version = params.get("health_check_version", True)
        self.start_retries = self._non_negative(params, "start_retries", 3)
        self.start_seconds = self._non_negative(params, "start_seconds", 1)

    @staticmethod
    def _non_negative(params, name, default):
        value = params.get(name)
        value = default if value is None else value
        if value < 0:
            raise ValidationError("%s must not be negative." % name)
        return value

    @property
    def program(self):
        return "%s_%s" % (self.app, self.slot)

    def path(self, *parts):
        return os.path.join(self.base_dir, *parts)

    @property
    def state_file(self):
        return self.path("slots", "%s.json" % self.slot)

    @property
    def log_file(self):
        return self.path("logs", "%s.log" % self.slot)

    def release_dir(self, version):
        return self.path("releases", version)

    def health_url(self):
        return "http://%s:%d%s" % (url_host(probe_host(self.bind)), self.port, self.health_path)


def read_slot_state(spec):
    text = read_text(spec.state_file)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ValidationError("slot state file %s is corrupt; fix or remove it." % spec.state_file)


def public_view(state, running):
    """What diff mode and results show: no environment values, they may be secrets."""
    if not state:
        return {"running": False}
    view = dict((key, state.get(key)) for key in ("version", "port", "bind", "release_dir"))
    view["env_keys"] = state.get("env_keys", [])
    view["running"] = running
    return view


def unpack_release(spec, artifact_sha):
    """Unpack the artifact into releases/<version>, unless that exact artifact is there already."""
    target = spec.release_dir(spec.version)
    marker = os.path.join(target, RELEASE_MARKER)
    if read_text(marker) == artifact_sha + "\n":
        return False
    os.makedirs(spec.path("releases"), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".%s." % spec.version, dir=spec.path("releases"))
    try:
        with tarfile.open(spec.artifact) as archive:
            # The data filter refuses absolute paths, `..`, links out of the tree and device files.
            archive.extractall(staging, filter="data")
        atomic_write(os.path.join(staging, RELEASE_MARKER), artifact_sha + "\n")
        if os.path.exists(target):
            old = target + ".old-%d" % os.getpid()
            os.rename(target, old)
            os.rename(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SlotError("could not unpack %s: %s" % (spec.artifact, exc))
    return True


def point_slot(spec, release_dir):
    link = spec.path("slots", spec.slot)
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(release_dir, tmp)
    os.replace(tmp, link)


class SlotManager:
    def __init__(self, spec, supervisor=None):
        self.spec = spec
        self.supervisor = supervisor or Supervisor(spec.base_dir)

    def process_info(self):
        return program_info(self.supervisor, self.spec.program)

    def is_running(self, info):
        return bool(info) and info.get("statename") == "RUNNING"

    def desired_state(self, artifact_sha):
        spec = self.spec
        release_dir = spec.release_dir(spec.version)
        values = dict(port=spec.port, bind=spec.bind, release_dir=release_dir, version=spec.version, slot=spec.slot, app=spec.app)
        return {
            "app": spec.app,
            "slot": spec.slot,
            "version": spec.version,
            "port": spec.port,
            "bind": spec.bind,
            "release_dir": release_dir,
            "command": render_command(spec.command, values),
            "env_sha256": env_digest(spec.env),
            "env_keys": sorted(spec.env),
            "artifact_sha256": artifact_sha,
            "drain_timeout": spec.drain_timeout,
            "start_retries": spec.start_retries,
            "start_seconds": spec.start_seconds,
        }

    def program_spec(self, desired):
        spec = self.spec
        return {
            "command": desired["command"],
            "directory": desired["release_dir"],
            "env": spec.env,
            "log_file": spec.log_file,
            "drain_timeout": spec.drain_timeout,
            "start_retries": spec.start_retries,
            "start_seconds": spec.start_seconds,
        }

    def deploy(self, check_mode=False):
        spec = self.spec
        current = read_slot_state(spec)
        info = self.process_info()
        running = self.is_running(info)
        artifact_sha = sha256_file(spec.artifact) if spec.artifact_present else None
        desired = self.desired_state(artifact_sha)
        same_config = bool(current) and all(current.get(key) == value for key, value in desired.items())
        result = {
            "slot": spec.slot,
            "version": spec.version,
            "previous_version": (current or {}).get("version"),
            "port": spec.port,
            "release_dir": desired["release_dir"],
            "log_file": spec.log_file,
            "health_url": spec.health_url(),
            "before": public_view(current, running),
            "after": public_view(desired, True),
        }
        if same_config and running:
            healthy, _detail = check_health(spec.health_url(), spec.version if spec.expect_version else None)
            if healthy:
                result.update(changed=False, pid=info.get("pid"))
                return result
        port_is_ours = running and (current or {}).get("port") == spec.port and (current or {}).get("bind") == spec.bind
        if not port_is_ours and not port_is_free(spec.bind, spec.port):
            raise ValidationError("port %d on %s is already in use by another process." % (spec.port, spec.bind))
        result["changed"] = True
        if check_mode:
            return result

        for folder in ("slots", "logs", "releases"):
            os.makedirs(spec.path(folder), exist_ok=True)
        unpack_release(spec, artifact_sha)
        previous_program = [read_text(path) for path in self.supervisor.program_files(spec.program)]
        link = spec.path("slots", spec.slot)
        previous_link = os.readlink(link) if os.path.islink(link) else None
        self.supervisor.ensure_running()
        point_slot(spec, desired["release_dir"])
        log_offset = os.path.getsize(spec.log_file) if os.path.exists(spec.log_file) else 0
        started = time.monotonic()
        try:
            self.supervisor.replace_program(spec.program, self.supervisor.render(spec.program, self.program_spec(desired)))
            ok, detail = self.wait_healthy(spec.health_timeout)
        except (SupervisorError, OSError) as exc:
            ok, detail = False, str(exc)
        if not ok:
            log_tail = self.log_since(log_offset)
            self.restore(previous_program, previous_link, running)
            raise SlotError("slot %s did not become healthy with version %s within %ss (%s); the slot was put back as it was. "
                            "Last lines of %s:\n%s" % (spec.slot, spec.version, spec.health_timeout, detail, spec.log_file, log_tail))
        info = self.process_info() or {}
        atomic_write(spec.state_file, json.dumps(desired, indent=2, sort_keys=True) + "\n")
        atomic_write(spec.path("slots", "%s.pid" % spec.slot), "%s\n" % info.get("pid", ""))
        result.update(pid=info.get("pid"), health={"url": spec.health_url(), "elapsed_ms": elapsed_ms(started)})
        return result

    def wait_healthy(self, timeout):
        spec = self.spec
        return wait_healthy(self.supervisor, spec.program, timeout, check=lambda: check_health(
            spec.health_url(), spec.version if spec.expect_version else None, timeout=2.0))

    def log_since(self, offset):
        return log_since(self.spec.log_file, offset)

    def restore(self, previous_program, previous_link, was_running):
        """Put a slot whose new release failed back on its previous program (section and exec spec texts)."""
        spec = self.spec
        link = spec.path("slots", spec.slot)
        try:
            restore_program(self.supervisor, spec.program, previous_program, was_running)
            if previous_link:
                point_slot(spec, previous_link)
            elif os.path.lexists(link):
                os.unlink(link)
        except (SupervisorError, OSError):
            pass

    def stop(self, remove=False, check_mode=False):
        spec = self.spec
        current = read_slot_state(spec)
        info = self.process_info()
        running = self.is_running(info) or bool(info and info.get("statename") in ("STARTING", "BACKOFF"))
        has_program = os.path.exists(self.supervisor.program_file(spec.program))
        changed = running or has_program or (remove and current is not None)
        result = {
            "slot": spec.slot,
            "version": (current or {}).get("version"),
            "previous_version": (current or {}).get("version"),
            "log_file": spec.log_file,
            "before": public_view(current, running),
            "after": {} if remove else public_view(current, False),
            "changed": changed,
        }
        if check_mode or not changed:
            return result
        self.supervisor.remove_program(spec.program)
        pid_file = spec.path("slots", "%s.pid" % spec.slot)
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        if remove:
            for path in (spec.state_file, spec.path("slots", spec.slot)):
                if os.path.lexists(path):
                    os.unlink(path)
        return result
