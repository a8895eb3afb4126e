# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment ledger of one app in one environment, and the identity of a deploy run.

The ledger is a JSON file on the primary LB host (schema 1)::

    {"schema": 1, "app": "demo", "environment": "local",
     "active_color": "green", "versions": {"blue": "1.0.0", "green": "2.0.0"}, "weights": {"blue": 0, "green": 100},
     "in_progress": null | {"id", "type", "version", "from_version", "started", "canary_color", "holder", "steps": [...]},
     "lock": null | {"holder": {"run_id", "controller", "pid", "user"}, "acquired", "heartbeat", "stale_after_s"},
     "history": [{"id", "environment", "version", "from_version", "type", "started", "finished", "duration_s",
                  "outcome", "reasons", "autonomous", "run_id", "steps",
                  "rollback" (rolled back only): {"detected", "started", "restored", "duration_ms"}}]}

Every change is a read-modify-write under an exclusive ``fcntl.flock`` on ``<path>.lock``, written atomically (temp
file in the same folder, fsync, rename, fsync of the folder) with mode 0640; readers take a shared lock. A corrupt
ledger is refused with one sentence and never overwritten. Times are ISO 8601 UTC with milliseconds; ids sort by time.

The run identity (``run_identity``) names the ansible-playbook process that holds the deploy lock: its pid is found by
walking up from the current process while the parent has the same command line (forked workers share it), and its
run id is derived from that pid, its start time and the boot id, so every worker of one run computes the same id.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import time
import uuid

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    COLORS,
    ValidationError,
    atomic_write,
    validate_app_name,
    validate_color,
    validate_version,
    validate_weights,
)

SCHEMA = 1
DEFAULT_STALE_AFTER_S = 900
DEFAULT_HISTORY_LIMIT = 20
LOCK_WAIT_S = 30.0
FILE_MODE = 0o640
ACTIONS = ("info", "lock", "unlock", "begin", "step", "finish", "record")
TYPES = ("deploy", "promote", "rollback")
OUTCOMES = ("promoted", "deployed", "rolled_back", "failed", "interrupted")
HOLDER_KEYS = ("run_id", "controller", "pid", "user")

_ENVIRONMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


# Suboptions of a module's `holder` option: the identity the run_identity lookup returns.
HOLDER_OPTIONS = dict(
    run_id=dict(type="str", required=True),
    controller=dict(type="str"),
    pid=dict(type="int"),
    user=dict(type="str"),
    started=dict(type="str"),
)


class LedgerError(Exception):
    """The ledger cannot do what was asked; the message is one sentence for the user."""


class LockConflict(LedgerError):
    """Another run holds the deployment lock; `lock` is that lock (holder, acquired, heartbeat, stale_after_s)."""

    def __init__(self, message, lock):
        super().__init__(message)
        self.lock = lock


# --- time and ids ---------------------------------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    """ISO 8601 UTC with milliseconds, for example 2026-11-27T04:58:12.345Z."""
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_iso(text):
    """An aware datetime from an ISO 8601 time; a time without zone is UTC. Raises ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError("%r is not an ISO 8601 time" % (text,))
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def new_id(moment=None):
    """A sortable id: UTC time to the second, then 6 random hex digits (20261127T045812Z-3fa9c1)."""
    moment = (moment or utcnow()).astimezone(datetime.timezone.utc)
    return "%s-%s" % (moment.strftime("%Y%m%dT%H%M%SZ"), os.urandom(3).hex())


def _seconds(start, end):
    return round(max(0.0, (end - start).total_seconds()), 3)


# --- validation -----------------------------------------------------------------------------------------------------

def validate_environment(environment):
    if not environment or not _ENVIRONMENT_RE.fullmatch(str(environment)):
        raise ValidationError(
            "environment %r is not valid: use letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "at most 64 characters." % (environment,))
    return str(environment)


def validate_ledger_path(path):
    if not path or not os.path.isabs(str(path)):
        raise ValidationError("ledger path must be absolute, not %r." % (path,))
    if any(part == ".." for part in str(path).split(os.sep)):
        raise ValidationError("ledger path must not contain '..': %r." % (path,))
    path = os.path.normpath(str(path))
    if os.path.isdir(path):
        raise ValidationError("ledger path %s is a folder; give the path of the ledger file." % path)
    return path


def validate_holder(holder):
    """The lock identity of a run: run_id (required), controller, pid, user."""
    if not isinstance(holder, dict):
        raise ValidationError("holder must be a mapping with run_id, controller, pid and user.")
    run_id = holder.get("run_id")
    if not run_id or not _RUN_ID_RE.fullmatch(str(run_id)):
        raise ValidationError("holder run_id %r is not valid: use letters, digits, '.', '_', ':' or '-'." % (run_id,))
    pid = holder.get("pid")
    if pid is not None:
        if isinstance(pid, bool):
            raise ValidationError("holder pid must be a process id, not %r." % (pid,))
        try:
            pid = int(str(pid))
        except ValueError:
            raise ValidationError("holder pid must be a process id, not %r." % (pid,))
        if pid < 1:
            raise ValidationError("holder pid must be a positive process id, not %d." % pid)
    return {"run_id": str(run_id), "controller": _opt_str(holder.get("controller")), "pid": pid,
            "user": _opt_str(holder.get("user"))}


def _opt_str(value):
    return None if value is None or value == "" else str(value)


def _opt_version(value, what):
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        return validate_version(value)
    except ValidationError as exc:
        raise ValidationError("%s: %s" % (what, exc))


def validate_deployment(deployment):
    if not isinstance(deployment, dict):
        raise ValidationError("deployment must be a mapping with type, version, from_version and canary_color.")
    kind = deployment.get("type") or "deploy"
    if kind not in TYPES:
        raise ValidationError("deployment type %r is unknown: it must be one of %s." % (kind, ", ".join(TYPES)))
    # "None" is what a template makes of a missing version; the ledger would record it as null.
    version = _opt_version(deployment.get("version"), "deployment version")
    if version is None:
        raise ValidationError("deployment needs the version being deployed.")
    clean = {
        "type": kind,
        "version": version,
        "from_version": _opt_version(deployment.get("from_version"), "deployment from_version"),
        "canary_color": None,
        "started": None,
    }
    if deployment.get("canary_color"):
        clean["canary_color"] = validate_color(deployment["canary_color"], "canary color")
    if deployment.get("started"):
        try:
            clean["started"] = iso(parse_iso(str(deployment["started"])))
        except ValueError:
            raise ValidationError("deployment started %r is not an ISO 8601 time." % (deployment["started"],))
    return clean


def validate_updates(active_color=None, versions=None, weights=None):
    """State updates of finish and record: {active_color, versions, weights}, only the given ones."""
    clean = {}
    if active_color is not None:
        clean["active_color"] = validate_color(active_color, "active color")
    if versions is not None:
        if not isinstance(versions, dict):
            raise ValidationError("versions must map each color to the version it runs.")
        clean["versions"] = {}
        for color, version in versions.items():
            validate_color(color, "versions color")
            clean["versions"][color] = _opt_version(version, "version of %s" % color)
    if weights is not None:
        clean["weights"] = validate_weights(weights)
    return clean


def validate_reasons(reasons):
    if reasons is None:
        return []
    if isinstance(reasons, str):
        reasons = [reasons]
    if not isinstance(reasons, (list, tuple)):
        raise ValidationError("reasons must be a list of sentences.")
    return [str(reason) for reason in reasons]


def validate_step(step):
    """{weight, verdicts}: keys other than weight and verdicts are verdicts too."""
    if not isinstance(step, dict):
        raise ValidationError("step must be a mapping with the weight and the verdicts of the step.")
    weight = step.get("weight")
    if isinstance(weight, bool) or weight is None:
        raise ValidationError("step weight must be a whole number from 0 to 100, not %r." % (weight,))
    try:
        value = int(str(weight).strip())
    except ValueError:
        raise ValidationError("step weight must be a whole number from 0 to 100, not %r." % (weight,))
    if not 0 <= value <= 100:
        raise ValidationError("step weight is %d, outside 0 to 100." % value)
    verdicts = step.get("verdicts")
    if verdicts is None:
        verdicts = {}
    if not isinstance(verdicts, dict):
        raise ValidationError("step verdicts must be a mapping, for example {probes: pass, analysis: pass}.")
    verdicts = copy.deepcopy(verdicts)
    for key, item in step.items():
        if key not in ("weight", "verdicts"):
            verdicts[key] = copy.deepcopy(item)
    try:
        json.dumps(verdicts)
    except (TypeError, ValueError):
        raise ValidationError("step verdicts must hold only JSON values.")
    return {"weight": value, "verdicts": verdicts}


# --- the document ---------------------------------------------------------------------------------------------------

def empty_ledger(app, environment):
    return {"schema": SCHEMA, "app": app, "environment": environment, "active_color": None, "versions": {},
            "weights": {}, "in_progress": None, "lock": None, "history": []}


def _need(condition, detail):
    if not condition:
        raise ValueError(detail)


def _check_time(value, what):
    try:
        parse_iso(value)
    except (TypeError, ValueError):
        raise ValueError("%s %r is not an ISO 8601 time" % (what, value))


def check_document(doc):
    """Raise ValueError(detail) unless `doc` is a schema 1 ledger."""
    _need(isinstance(doc, dict), "not a JSON object")
    _need(doc.get("schema") == SCHEMA, "schema is %r, not %d" % (doc.get("schema"), SCHEMA))
    for key in ("app", "environment"):
        _need(isinstance(doc.get(key), str), "%s is not a string" % key)
    _need(doc.get("active_color") is None or doc.get("active_color") in COLORS,
          "active_color %r is not blue, green or null" % (doc.get("active_color"),))
    versions = doc.get("versions")
    _need(isinstance(versions, dict), "versions is not an object")
    for color, version in versions.items():
        _need(color in COLORS, "versions has an unknown color %r" % color)
        _need(version is None or isinstance(version, str), "version of %s is not a string" % color)
    weights = doc.get("weights")
    _need(isinstance(weights, dict), "weights is not an object")
    for color, weight in weights.items():
        _need(color in COLORS, "weights has an unknown color %r" % color)
        _need(isinstance(weight, int) and not isinstance(weight, bool), "weight of %s is not a whole number" % color)
    current = doc.get("in_progress")
    if current is not None:
        _need(isinstance(current, dict), "in_progress is not an object")
        for key in ("id", "type", "version", "started"):
            _need(isinstance(current.get(key), str), "in_progress %s is not a string" % key)
        _check_time(current["started"], "in_progress started")
        _need(isinstance(current.get("steps"), list), "in_progress steps is not a list")
        _need(all(isinstance(step, dict) for step in current["steps"]), "in_progress steps are not objects")
        _need(isinstance(current.get("holder"), dict), "in_progress holder is not an object")
    lock = doc.get("lock")
    if lock is not None:
        _need(isinstance(lock, dict), "lock is not an object")
        _need(isinstance(lock.get("holder"), dict) and isinstance(lock["holder"].get("run_id"), str),
              "lock holder has no run_id")
        _check_time(lock.get("acquired"), "lock acquired")
        _check_time(lock.get("heartbeat"), "lock heartbeat")
        stale = lock.get("stale_after_s")
        _need(isinstance(stale, int) and not isinstance(stale, bool), "lock stale_after_s is not a whole number")
    history = doc.get("history")
    _need(isinstance(history, list), "history is not a list")
    for index, entry in enumerate(history):
        _need(isinstance(entry, dict), "history entry %d is not an object" % index)
        for key in ("id", "type", "outcome", "started", "finished"):
            _need(isinstance(entry.get(key), str), "history entry %d: %s is not a string" % (index, key))
        _need(isinstance(entry.get("reasons", []), list), "history entry %d: reasons is not a list" % index)


def lasting(doc):
    """What a change is judged by: everything but the lock (and with it the heartbeat)."""
    content = copy.deepcopy(doc)
    content.pop("lock", None)
    return content


def view(doc, history_limit=DEFAULT_HISTORY_LIMIT):
    """The ledger as modules return it: the newest `history_limit` entries, newest last."""
    shown = copy.deepcopy(doc)
    limit = max(0, int(history_limit))
    shown["history"] = shown["history"][-limit:] if limit else []
    return shown


def render(doc):
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def describe_holder(holder):
    holder = holder or {}
    return "run %s (pid %s on host %s, user %s)" % (
        holder.get("run_id") or "?", holder.get("pid") if holder.get("pid") is not None else "?",
        holder.get("controller") or "?", holder.get("user") or "?")


def stale_at(lock):
    return parse_iso(lock["heartbeat"]) + datetime.timedelta(seconds=lock["stale_after_s"])


def lock_is_stale(lock, now):
    return lock is not None and now > stale_at(lock)


def holds(doc, holder):
    lock = doc.get("lock")
    return bool(lock) and bool(holder) and lock["holder"].get("run_id") == holder["run_id"]


def conflict_message(doc, lock, advice="wait, or re-run with force=true"):
    return "deployment lock of %s in %s is held by %s since %s; it goes stale at %s; %s." % (
        doc["app"], doc["environment"], describe_holder(lock["holder"]), lock["acquired"], iso(stale_at(lock)), advice)


def require_lock(doc, holder, action):
    """begin, step and finish run only for the holder of the lock."""
    lock = doc.get("lock")
    if lock is None:
        raise LedgerError("%s needs the deployment lock of %s in %s, which nobody holds; take it first with action=lock."
                          % (action, doc["app"], doc["environment"]))
    if not holds(doc, holder):
        raise LockConflict("%s needs the deployment lock of %s in %s, but it is held by %s since %s (heartbeat %s)."
                           % (action, doc["app"], doc["environment"], describe_holder(lock["holder"]), lock["acquired"],
                              lock["heartbeat"]), lock)


def acquire(doc, holder, now, stale_after_s=DEFAULT_STALE_AFTER_S, force=False, holder_dead=False):
    """Take or refresh the lock for `holder`. Returns the lock taken over from another run, or None."""
    if stale_after_s is None or int(stale_after_s) < 1:
        raise ValidationError("stale_after_s must be at least 1 second.")
    lock = doc.get("lock")
    if lock is not None and holds(doc, holder):
        lock["heartbeat"] = iso(now)
        lock["stale_after_s"] = int(stale_after_s)
        lock["holder"] = dict(holder)
        return None
    taken_over = None
    if lock is not None:
        if not (force or holder_dead or lock_is_stale(lock, now)):
            raise LockConflict(conflict_message(doc, lock), lock)
        taken_over = lock
    doc["lock"] = {"holder": dict(holder), "acquired": iso(now), "heartbeat": iso(now), "stale_after_s": int(stale_after_s)}
    return taken_over


def release(doc, holder):
    """Release the holder's own lock: 'released', 'free' (nobody held it) or 'not_ours' (left alone)."""
    lock = doc.get("lock")
    if lock is None:
        return "free"
    if not holds(doc, holder):
        return "not_ours"
    doc["lock"] = None
    return "released"


def _heartbeat(doc, now):
    if doc.get("lock"):
        doc["lock"]["heartbeat"] = iso(now)


def _stopped_reason(current):
    steps = current.get("steps") or []
    run_id = (current.get("holder") or {}).get("run_id") or "?"
    if not steps:
        return "run %s stopped without finishing, before any step passed its gate" % run_id
    # Steps are recorded once judged: the run may have stopped while the next step held the traffic.
    return "run %s stopped without finishing, after step %d (weight %s %%) passed its gate" % (run_id, len(steps), steps[-1].get("weight"))


def close_in_progress(doc, outcome, reasons, autonomous, now):
    """Move in_progress into history with `outcome`; returns the entry."""
    current = doc["in_progress"]
    entry = {
        "id": current["id"],
        "environment": doc["environment"],
        "version": current.get("version"),
        "from_version": current.get("from_version"),
        "type": current.get("type"),
        "started": current["started"],
        "finished": iso(now),
        "duration_s": _seconds(parse_iso(current["started"]), now),
        "outcome": outcome,
        "reasons": list(reasons),
        "autonomous": bool(autonomous),
        "run_id": (current.get("holder") or {}).get("run_id"),
        "steps": copy.deepcopy(current.get("steps") or []),
    }
    doc["history"].append(entry)
    doc["in_progress"] = None
    return entry


def begin(doc, holder, deployment, now):
    """Start a deployment for the lock holder; an unfinished one is closed as interrupted first (returned)."""
    require_lock(doc, holder, "begin")
    interrupted = None
    if doc.get("in_progress"):
        interrupted = close_in_progress(doc, "interrupted", [_stopped_reason(doc["in_progress"])], True, now)
    doc["in_progress"] = {
        "id": new_id(now),
        "type": deployment["type"],
        "version": deployment["version"],
        "from_version": deployment["from_version"],
        "started": iso(now),
        "canary_color": deployment["canary_color"],
        "holder": dict(holder),
        "steps": [],
    }
    _heartbeat(doc, now)
    return interrupted


def add_step(doc, holder, step, now):
    require_lock(doc, holder, "step")
    if not doc.get("in_progress"):
        raise LedgerError("step needs a deployment in progress of %s in %s; start one with action=begin."
                          % (doc["app"], doc["environment"]))
    record = {"weight": step["weight"], "at": iso(now), "verdicts": step["verdicts"]}
    doc["in_progress"]["steps"].append(record)
    _heartbeat(doc, now)
    return record


def apply_updates(doc, updates):
    if "active_color" in updates:
        doc["active_color"] = updates["active_color"]
    if "versions" in updates:
        versions = dict(doc.get("versions") or {})
        versions.update(updates["versions"])
        doc["versions"] = dict((color, versions[color]) for color in COLORS if color in versions)
    if "weights" in updates:
        doc["weights"] = dict(updates["weights"])


def finish(doc, holder, outcome, reasons, autonomous, updates, now):
    require_lock(doc, holder, "finish")
    if not doc.get("in_progress"):
        raise LedgerError("finish needs a deployment in progress of %s in %s, and there is none."
                          % (doc["app"], doc["environment"]))
    entry = close_in_progress(doc, outcome, reasons, autonomous, now)
    apply_updates(doc, updates)
    _heartbeat(doc, now)
    return entry


def record(doc, deployment, outcome, reasons, autonomous, updates, now, holder=None):
    """Append a complete history entry without the lock (emergency paths, first deploys)."""
    started = parse_iso(deployment["started"]) if deployment.get("started") else now
    entry = {
        "id": new_id(started),
        "environment": doc["environment"],
        "version": deployment["version"],
        "from_version": deployment["from_version"],
        "type": deployment["type"],
        "started": iso(started),
        "finished": iso(now),
        "duration_s": _seconds(started, now),
        "outcome": outcome,
        "reasons": list(reasons),
        "autonomous": bool(autonomous),
        "run_id": holder["run_id"] if holder else None,
        "steps": [],
    }
    doc["history"].append(entry)
    apply_updates(doc, updates)
    return entry


def known_versions(doc):
    """Every version the ledger has seen: in a color, in progress, or in a history entry."""
    seen = set(version for version in (doc.get("versions") or {}).values() if version)
    for entry in list(doc.get("history") or []) + ([doc["in_progress"]] if doc.get("in_progress") else []):
        for key in ("version", "from_version"):
            if entry.get(key):
                seen.add(entry[key])
    return seen


# --- the file -------------------------------------------------------------------------------------------------------

def folder_is_read_only(folder):
    """Whether `folder` sits on a file system mounted read-only (then no permission would help)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


class Ledger:
    """The ledger file of one app in one environment, with its flock file `<path>.lock`."""

    def __init__(self, path, app, environment, lock_wait_s=LOCK_WAIT_S):
        self.path = validate_ledger_path(path)
        self.app = validate_app_name(app)
        self.environment = validate_environment(environment)
        self.lock_path = self.path + ".lock"
        self.lock_wait_s = lock_wait_s

    @property
    def folder(self):
        return os.path.dirname(self.path)

    def exists(self):
        return os.path.exists(self.path)

    def empty(self):
        return empty_ledger(self.app, self.environment)

    def check_folder(self, write):
        if not os.path.isdir(self.folder):
            raise LedgerError("folder %s of ledger %s does not exist; create it first (playbooks/site.yml does)."
                              % (self.folder, self.path))
        if write and not os.access(self.folder, os.W_OK | os.X_OK):
            if folder_is_read_only(self.folder):
                raise LedgerError("folder %s of ledger %s is on a read-only file system, so the ledger cannot be written."
                                  % (self.folder, self.path))
            raise LedgerError("folder %s of ledger %s is not writable by this user." % (self.folder, self.path))

    def corrupt(self, detail):
        return LedgerError("ledger %s is corrupt (%s); fix it or move it away." % (self.path, detail))

    def _load(self):
        """The document on disk (validated), or None when there is no file."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError("could not read ledger %s: %s." % (self.path, exc.strerror or exc))
        try:
            doc = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise self.corrupt("not UTF-8")
        except ValueError as exc:
            raise self.corrupt("not JSON: %s" % exc)
        try:
            check_document(doc)
        except ValueError as exc:
            raise self.corrupt(str(exc))
        if doc["app"] != self.app or doc["environment"] != self.environment:
            raise LedgerError("ledger %s belongs to app %s in %s, not to %s in %s; use the ledger of this app."
                              % (self.path, doc["app"], doc["environment"], self.app, self.environment))
        return doc

    @contextlib.contextmanager
    def _flock(self, exclusive):
        """Hold flock on `<path>.lock`: exclusive for writers (the file is created), shared for readers.

        A reader finds no lock file when no writer ever ran; the rename makes a read without it safe anyway.
        """
        fd = None
        try:
            if exclusive:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            else:
                fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError as exc:
            if exclusive:
                raise LedgerError("could not open the lock file %s: %s." % (self.lock_path, exc.strerror or exc))
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                raise LedgerError("could not open the lock file %s: %s." % (self.lock_path, exc.strerror or exc))
        if fd is None:
            yield
            return
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            deadline = time.monotonic() + self.lock_wait_s
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise LedgerError("could not lock %s: %s." % (self.lock_path, exc.strerror or exc))
                    if time.monotonic() >= deadline:
                        raise LedgerError("could not lock ledger %s within %g s: another task keeps %s locked."
                                          % (self.path, self.lock_wait_s, self.lock_path))
                    time.sleep(0.002)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def read(self):
        """The ledger (an empty one when there is no file yet), under a shared lock."""
        self.check_folder(write=False)
        with self._flock(exclusive=False):
            doc = self._load()
        return doc if doc is not None else self.empty()

    def update(self, change, check_mode=False):
        """Read-modify-write: `change(doc)` edits the document and returns a result.

        Returns (before, after, result, written); `before` is None when there was no file. Nothing is written in
        check mode, when `change` raises, or when the document is the same.
        """
        self.check_folder(write=not check_mode)
        if check_mode:
            with self._flock(exclusive=False):
                current = self._load()
            doc = copy.deepcopy(current) if current is not None else self.empty()
            result = change(doc)
            return current, doc, result, False
        with self._flock(exclusive=True):
            current = self._load()
            doc = copy.deepcopy(current) if current is not None else self.empty()
            result = change(doc)
            written = doc != (current if current is not None else self.empty())
            if written:
                try:
                    # Never write what the next read would refuse as corrupt.
                    check_document(doc)
                except ValueError as exc:
                    raise LedgerError("ledger %s was not written: the change would make it invalid (%s)." % (self.path, exc))
                try:
                    atomic_write(self.path, render(doc), mode=FILE_MODE)
                except OSError as exc:
                    raise LedgerError("could not write ledger %s: %s." % (self.path, exc.strerror or exc))
        return current, doc, result, written


# --- the module's actions -------------------------------------------------------------------------------------------

def _base_result(doc, history_limit, now):
    lock = doc.get("lock")
    return {"ledger": view(doc, history_limit), "lock": copy.deepcopy(lock), "in_progress": copy.deepcopy(doc.get("in_progress")),
            "lock_stale": bool(lock) and lock_is_stale(lock, now)}


def run_action(ledger, action, params, check_mode=False, now=None):
    """Run one action of the deployment_state module; returns its result (changed, ledger, ..., msg, diff).

    `params` holds the module's options. Raises ValidationError for bad input, LockConflict when another run holds
    the lock, LedgerError for anything else; nothing is written then.
    """
    now = now or utcnow()
    if action not in ACTIONS:
        raise ValidationError("action %r is unknown: it must be one of %s." % (action, ", ".join(ACTIONS)))
    limit = params.get("history_limit")
    limit = DEFAULT_HISTORY_LIMIT if limit is None else limit
    if limit < 0:
        raise ValidationError("history_limit must not be negative.")
    where = "%s in %s" % (ledger.app, ledger.environment)

    if action == "info":
        doc = ledger.read()
        result = _base_result(doc, limit, now)
        result.update(changed=False, msg="ledger of %s: %s." % (where, _summary(doc) if ledger.exists() else "no ledger yet"))
        return result

    holder = None
    if action in ("lock", "unlock", "begin", "step", "finish"):
        if not params.get("holder"):
            raise ValidationError("action %s needs holder, the lock identity of the run (run_id, controller, pid, user)." % action)
    if params.get("holder"):
        holder = validate_holder(params["holder"])
    outcome = params.get("outcome")
    if action in ("finish", "record"):
        if outcome not in OUTCOMES:
            raise ValidationError("action %s needs outcome, one of %s." % (action, ", ".join(OUTCOMES)))
    updates = validate_updates(params.get("active_color"), params.get("versions"), params.get("weights"))
    if updates and action not in ("finish", "record"):
        raise ValidationError("active_color, versions and weights are applied by finish and record only, not by %s." % action)
    reasons = validate_reasons(params.get("reasons"))
    autonomous = True if params.get("autonomous") is None else bool(params["autonomous"])
    deployment = step = None
    if action in ("begin", "record"):
        if not params.get("deployment"):
            raise ValidationError("action %s needs deployment with type, version and from_version." % action)
        deployment = validate_deployment(params["deployment"])
    if action == "step":
        if params.get("step") is None:
            raise ValidationError("action step needs step, with the weight and the verdicts of the step.")
        step = validate_step(params["step"])
    stale_after_s = params.get("stale_after_s")
    stale_after_s = DEFAULT_STALE_AFTER_S if stale_after_s is None else stale_after_s

    notes = {}

    def change(doc):
        if action == "lock":
            notes["taken_over"] = acquire(doc, holder, now, stale_after_s, bool(params.get("force")),
                                          bool(params.get("holder_dead")))
            return None
        if action == "unlock":
            notes["release"] = release(doc, holder)
            return None
        if action == "begin":
            notes["interrupted"] = begin(doc, holder, deployment, now)
            return None
        if action == "step":
            return add_step(doc, holder, step, now)
        if action == "finish":
            return finish(doc, holder, outcome, reasons, autonomous, updates, now)
        return record(doc, deployment, outcome, reasons, autonomous, updates, now, holder)

    before, after, value, _written = ledger.update(change, check_mode)
    # A missing ledger reads as an empty one: taking the lock of a new ledger changes nothing lasting.
    lasting_before = lasting(before if before is not None else ledger.empty())
    changed = lasting_before != lasting(after)
    result = _base_result(after, limit, now)
    result["changed"] = changed
    result["msg"] = _message(action, where, notes, value, after, check_mode)
    if action == "lock":
        result["taken_over_from"] = notes["taken_over"]["holder"] if notes["taken_over"] else None
    if action == "unlock" and notes["release"] == "not_ours":
        result["warning"] = "the deployment lock of %s is held by %s, not by run %s; it was left alone." % (
            where, describe_holder(after["lock"]["holder"]), holder["run_id"])
    if action == "begin":
        result["interrupted"] = notes["interrupted"]
    if action in ("finish", "record"):
        result["entry"] = value
    if action == "step":
        result["step"] = value
    result["diff"] = {"before": render(lasting_before),
                      "after": render(lasting(after)), "before_header": ledger.path, "after_header": ledger.path}
    return result


def _summary(doc):
    versions = ", ".join("%s %s" % (color, doc["versions"][color]) for color in COLORS if doc["versions"].get(color))
    parts = ["active color %s" % (doc.get("active_color") or "none"), "versions: %s" % (versions or "none")]
    if doc.get("in_progress"):
        parts.append("deployment of %s in progress" % doc["in_progress"]["version"])
    if doc.get("lock"):
        parts.append("locked by %s" % describe_holder(doc["lock"]["holder"]))
    parts.append("%d history entries" % len(doc["history"]))
    return "; ".join(parts)


def _message(action, where, notes, value, doc, check_mode):
    would = "would be " if check_mode else ""
    if action == "lock":
        if notes["taken_over"]:
            return "deployment lock of %s %staken over from %s." % (where, would, describe_holder(notes["taken_over"]["holder"]))
        return "deployment lock of %s %sheld by %s." % (where, would, describe_holder(doc["lock"]["holder"]))
    if action == "unlock":
        return {"released": "deployment lock of %s %sreleased." % (where, would),
                "free": "deployment lock of %s was not held; nothing to release." % where,
                "not_ours": "deployment lock of %s is held by another run; it was left alone." % where}[notes["release"]]
    if action == "begin":
        text = "deployment of %s to %s %sstarted" % (doc["in_progress"]["version"], where, would)
        if notes["interrupted"]:
            text += "; the unfinished deployment %s was closed as interrupted" % notes["interrupted"]["id"]
        return text + "."
    if action == "step":
        return "step at weight %d %% of %s %srecorded." % (value["weight"], where, would)
    return "%s of %s %s %srecorded as %s." % (value["type"], value["version"], where, would, value["outcome"])


# --- run identity ---------------------------------------------------------------------------------------------------

def _proc_read(proc_root, pid, name):
    try:
        with open(os.path.join(proc_root, str(pid), name), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def proc_stat(pid, proc_root="/proc"):
    """(ppid, start time in clock ticks since boot) from /proc/<pid>/stat, or None."""
    data = _proc_read(proc_root, pid, "stat")
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_cmdline(pid, proc_root="/proc"):
    return _proc_read(proc_root, pid, "cmdline")


def main_process(pid=None, proc_root="/proc"):
    """The pid of the main ansible-playbook process: up from `pid` while the parent has the same command line."""
    pid = os.getpid() if pid is None else pid
    cmdline = proc_cmdline(pid, proc_root)
    if not cmdline:
        return pid
    for _step in range(256):
        stat = proc_stat(pid, proc_root)
        if stat is None or stat[0] <= 1:
            break
        if proc_cmdline(stat[0], proc_root) != cmdline:
            break
        pid = stat[0]
    return pid


def _boot_id(proc_root):
    data = _proc_read(proc_root, "sys/kernel/random", "boot_id")
    return data.decode("ascii", "replace").strip() if data else ""


def _boot_time(proc_root):
    try:
        with open(os.path.join(proc_root, "stat"), "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_id_for(pid, start_ticks, boot_id="", hostname=""):
    """A uuid4-shaped hex id, the same for every process that derives it from the same main process."""
    seed = "leanvibe-run|%s|%s|%s|%s" % (hostname, boot_id, pid, start_ticks)
    return uuid.UUID(bytes=hashlib.sha256(seed.encode("utf-8")).digest()[:16], version=4).hex


def _user():
    try:
        import pwd  # pylint: disable=import-outside-toplevel
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or str(os.getuid())


def run_identity(proc_root="/proc", pid=None, hostname=None):
    """{run_id, controller, pid, user, started} of the ansible-playbook run this process belongs to.

    Without a /proc tree the process group stands for the run (best effort: workers share it) and started is None.
    """
    hostname = hostname or socket.gethostname()
    start = os.getpid() if pid is None else pid
    if proc_stat(start, proc_root) is None:
        group = os.getpgid(0) if pid is None else pid
        return {"run_id": run_id_for(group, "pgid", "", hostname), "controller": hostname, "pid": group,
                "user": _user(), "started": None}
    main = main_process(start, proc_root)
    ticks = proc_stat(main, proc_root)[1]
    boot = _boot_id(proc_root)
    started = None
    btime = _boot_time(proc_root)
    if btime is not None:
        hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        seconds = btime + float(ticks) / hertz
        started = iso(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))
    return {"run_id": run_id_for(main, ticks, boot, hostname), "controller": hostname, "pid": main, "user": _user(),
            "started": started}


def holder_alive_locally(holder, proc_root="/proc", hostname=None):
    """Whether the run that holds a lock still runs, judged on this machine.

    True: its process runs here (same pid and same start time, so not a recycled pid). False: the holder ran on this
    machine and its process is gone. None: the holder ran on another controller, so this machine cannot tell.
    """
    if not isinstance(holder, dict):
        return None
    hostname = hostname or socket.gethostname()
    if holder.get("controller") != hostname:
        return None
    try:
        pid = int(str(holder.get("pid")))
    except ValueError:
        return False
    if pid < 1:
        return False
    stat = proc_stat(pid, proc_root)
    if stat is None:
        if os.path.exists(os.path.join(proc_root, "stat")):
            return False  # a /proc tree without this pid: the process is gone
        try:
            os.kill(pid, 0)
        except OSError as exc:
            return exc.errno == errno.EPERM
        return True
    if not holder.get("run_id"):
        return True
    return run_id_for(pid, stat[1], _boot_id(proc_root), hostname) == holder["run_id"]
