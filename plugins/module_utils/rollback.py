# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flip an app's traffic back to an earlier release that is still warm in one of its colors.

The order is chosen for speed: read the ledger and the nginx state (local files), check that every member of the
target color answers its health URL with the target version (concurrently, a couple of seconds at most), flip the
weights (live through the Lua admin socket: milliseconds), and only then write the ledger and run the slower check
through the LB. A release that is not warm is not flipped to: the caller redeploys it and calls again.

Every decision the playbook routes on is a result key: needs_redeploy, already_clean, status, rolled_back, and the
deployment event to announce (None when traffic did not move).
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    COLORS,
    ValidationError,
    other_color,
    read_text,
    validate_app_name,
    validate_release_version,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.deploy_lock import conflict_message, describe_holder, holds, lock_is_stale, validate_holder
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_document import close_in_progress, known_versions, new_id
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError, LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import (
    UPSTREAM_DEFAULTS,
    UpstreamFiles,
    WeightsDoc,
    apply_weights,
    read_state,
    render_upstreams,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.health import check_health
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso, parse_iso, seconds_between, to_ms, utcnow

DEFAULT_REASON = "manual rollback"
EMERGENCY_REASON = "emergency rollback"
# A canary or blue-green run (its published leanvibe_result) that ended in one of these phases left traffic on the
# stable release: rolling back after it would go one release too far.
CLEAN_PHASES = ("rolled_back", "failed_clean", "planned", "checked", "unchanged")
DEPLOY_COMMANDS = ("canary", "blue-green")
DEFAULT_SLOT_TIMEOUT = 2.0
DEFAULT_CHECK_TIMEOUT = 10.0
DEFAULT_CHECK_COUNT = 5
SERVING_OUTCOMES = ("promoted", "deployed")
_SERVER_RE = re.compile(r"^\s*server \S+ max_fails=(\d+) fail_timeout=(\d+)s;", re.MULTILINE)
_KEEPALIVE_RE = re.compile(r"^\s*keepalive (\d+);", re.MULTILINE)


class RollbackError(Exception):
    """The rollback failed after it started; `result` holds what was done (the flip stays)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class RollbackSpec:
    """Validated arguments of one rollback."""

    def __init__(self, params):
        self.app = validate_app_name(params["app"])
        self.environment = params["environment"]
        self.ledger = Ledger(params["ledger"], self.app, self.environment)
        target = params.get("target_version")
        # Empty or null: the previous stable release. Text or a whole number otherwise (YAML's 2.10 is not "2.10").
        self.target_version = None if target in (None, "") else validate_release_version(target, "target_version")
        self.emergency = bool(params.get("emergency"))
        self.reason = str(params.get("reason") or (EMERGENCY_REASON if self.emergency else DEFAULT_REASON))
        previous = params.get("previous_run")
        # Anything but a mapping (nothing was passed on, or something else) says nothing about the run before.
        self.previous_run = previous if isinstance(previous, dict) else None
        self.redeploy_errors = [str(error) for error in params.get("redeploy_errors") or []]
        self.autonomous = bool(params.get("autonomous"))
        self.holder = validate_holder(params["holder"]) if params.get("holder") else None
        self.detected_at = validate_detected_at(params.get("detected_at"))
        self.conf_dir = params["conf_dir"]
        if not self.conf_dir or not os.path.isabs(self.conf_dir):
            raise ValidationError("conf_dir must be an absolute path, not %r." % (self.conf_dir,))
        self.lb_url = (params.get("lb_url") or "").rstrip("/") or None
        if self.lb_url and not self.lb_url.startswith(("http://", "https://")):
            raise ValidationError("lb_url must start with http:// or https://, not %r." % (params["lb_url"],))
        self.slot_timeout = self._positive(params, "slot_timeout", DEFAULT_SLOT_TIMEOUT)
        self.check_timeout = self._positive(params, "check_timeout", DEFAULT_CHECK_TIMEOUT)
        self.check_count = int(self._positive(params, "check_count", DEFAULT_CHECK_COUNT))

    @staticmethod
    def _positive(params, name, default):
        value = params.get(name)
        value = default if value is None else value
        if value <= 0:
            raise ValidationError("%s must be greater than 0." % name)
        return value


def validate_detected_at(value):
    """When the failure was detected, as an aware datetime (None when not given): ISO 8601, or seconds since the epoch."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_iso(text)
        except ValueError:
            raise ValidationError("detected_at must be an ISO 8601 time or seconds since the epoch, not %r." % (value,))
    if not (seconds > 0 and seconds < 1e11):
        raise ValidationError("detected_at must be an ISO 8601 time or seconds since the epoch, not %r." % (value,))
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def already_clean(spec, doc):
    """Why nothing needs to move, or None: without a target version, the canary or blue-green run before this one
    (spec.previous_run, which an AWX workflow passes on from the failed node) already left traffic on the stable
    release."""
    previous = spec.previous_run or {}
    if spec.target_version or previous.get("command") not in DEPLOY_COMMANDS or previous.get("phase") not in CLEAN_PHASES:
        return None
    serving = (doc.get("versions") or {}).get(doc.get("active_color"))
    return "the %s of %s had already left traffic on %s" % (previous["command"], previous.get("version") or "?", serving)


def deploy_event(spec, result):
    """The deployment event of a rollback that moved traffic to another release (None otherwise), as the webhooks take it."""
    if not result["rolled_back"]:
        return None
    return {
        "event": "rollback", "version": result["from_version"], "to_version": result["to_version"],
        "weights": {result["to_version"]: 100}, "reasons": [result["reason"]], "rollback_ms": result.get("duration_ms"),
        "text": "%s rolled back in %s from %s to %s" % (spec.app, spec.environment, result["from_version"], result["to_version"]),
        "app": spec.app, "environment": spec.environment, "at": iso(utcnow()),
    }


def finish(spec, result, check_mode=False):
    """The outcome keys every result carries: the status to publish, whether traffic moved to another release, the
    event to announce."""
    result.setdefault("already_clean", False)
    if result["needs_redeploy"]:
        result.update(rolled_back=False, status="needs_redeploy")
    else:
        moved = result["to_version"] != result["from_version"]
        result.update(rolled_back=moved, status="rolled_back" if moved else "unchanged")
    result["event"] = None if check_mode else deploy_event(spec, result)
    return result


def rollback_record(spec, begun, flipped_wall, duration_ms):
    """What the ledger keeps of a rollback: when the failure was seen, when the flip began and ended, how long it took."""
    return {
        "detected": iso(spec.detected_at) if spec.detected_at else None,
        "started": iso(begun),
        "restored": iso(datetime.datetime.fromtimestamp(flipped_wall, datetime.timezone.utc)),
        "duration_ms": duration_ms,
    }


def default_target(doc):
    """The version to go back to when none is given: (version, where it came from), or (None, None).

    While a deployment is in progress, the version it replaces; else the from_version of the newest history entry
    that promoted or deployed a release (what served before the current release); else the non-active color's version.
    """
    current = doc.get("in_progress")
    if current and current.get("from_version") and current.get("from_version") != current.get("version"):
        return current["from_version"], "the version the deployment in progress replaces"
    for entry in reversed(doc.get("history") or []):
        if entry.get("outcome") in SERVING_OUTCOMES and entry.get("from_version"):
            return entry["from_version"], "the version before %s (history entry %s)" % (entry.get("version"), entry.get("id"))
    active = doc.get("active_color")
    if active:
        version = (doc.get("versions") or {}).get(other_color(active))
        if version:
            return version, "the version of the idle color %s" % other_color(active)
    return None, None


def colors_running(doc, version, prefer=None):
    """Colors whose recorded version is `version`, `prefer` first."""
    versions = doc.get("versions") or {}
    found = [color for color in COLORS if versions.get(color) == version]
    return sorted(found, key=lambda color: color != prefer)


def member_url(member):
    return "http://%s/health" % member


def check_members(members, version, timeout=DEFAULT_SLOT_TIMEOUT):
    """Whether every member answers GET /health 200 with `version`, checked concurrently: (warm, {member: detail})."""
    if not members:
        return False, {}
    details = {}
    lock = threading.Lock()

    def probe(member):
        healthy, detail = check_health(member_url(member), version, timeout=timeout)
        with lock:
            details[member] = (healthy, detail)

    threads = [threading.Thread(target=probe, args=(member,), name="leanvibe-warm-%s" % member, daemon=True)
               for member in members]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout + 0.5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        answers = dict(details)
    report = {}
    for member in members:
        healthy, detail = answers.get(member, (False, "no answer within %s s" % timeout))
        report[member] = "healthy" if healthy else detail
    return all(answers.get(member, (False,))[0] for member in members), report


def check_lb(lb_url, version, count=DEFAULT_CHECK_COUNT, timeout=DEFAULT_CHECK_TIMEOUT, request_timeout=DEFAULT_SLOT_TIMEOUT):
    """GET <lb_url>/health until it answers `version` `count` times in a row, within `timeout` seconds."""
    url = lb_url.rstrip("/") + "/health"
    started = time.monotonic()
    deadline = started + timeout
    in_a_row = attempts = 0
    detail = "no request made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        attempts += 1
        healthy, detail = check_health(url, version, timeout=max(0.1, min(request_timeout, remaining)))
        if healthy:
            in_a_row += 1
            if in_a_row >= count:
                return {"passed": True, "url": url, "attempts": attempts, "in_a_row": in_a_row,
                        "elapsed_ms": to_ms(time.monotonic() - started), "detail": detail}
        else:
            in_a_row = 0
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return {"passed": False, "url": url, "attempts": attempts, "in_a_row": in_a_row,
            "elapsed_ms": to_ms(time.monotonic() - started), "detail": detail}


def conf_options(app, members, conf_text, doc=None):
    """The upstream options the conf in place was rendered with, so the flip does not rewrite it (and stays live)."""
    options = dict(UPSTREAM_DEFAULTS)
    if not conf_text:
        return options
    server = _SERVER_RE.search(conf_text)
    if server:
        options["max_fails"], options["fail_timeout"] = int(server.group(1)), int(server.group(2))
    keepalive = _KEEPALIVE_RE.search(conf_text)
    if keepalive:
        options["keepalive"] = int(keepalive.group(1))
    for backup in (True, False):
        candidate = dict(options, backup_other_color=backup)
        for weights_doc in (None, doc):
            if render_upstreams(app, members, candidate, weights_doc) == conf_text:
                return candidate
    options["backup_other_color"] = " backup;" in conf_text
    return options


def _weights_view(doc):
    return doc.as_dict() if doc is not None else None


def rollback(spec, nginx, admin=None, check_mode=False, started=None, started_wall=None):
    """Roll `spec.app` back; returns the module result. Raises ValidationError or LedgerError before anything changed,
    LockConflict when another run holds the deploy lock (and not an emergency), RollbackError when the redeploy of the
    target failed (nothing changed) or after the flip."""
    return finish(spec, _rollback(spec, nginx, admin, check_mode, started, started_wall), check_mode)


def _rollback(spec, nginx, admin, check_mode, started, started_wall):
    started = time.monotonic() if started is None else started
    started_wall = time.time() if started_wall is None else started_wall
    app, where = spec.app, "%s in %s" % (spec.app, spec.environment)

    if not spec.ledger.exists():
        spec.ledger.check_folder(write=False)
        raise LedgerError("ledger %s does not exist, so %s has no release to roll back to." % (spec.ledger.path, where))
    doc = spec.ledger.read()
    clean = already_clean(spec, doc)
    if clean:
        color = doc.get("active_color")
        serving = (doc.get("versions") or {}).get(color)
        return {
            "changed": False, "app": app, "environment": spec.environment, "reason": clean, "from_version": serving,
            "from_color": color, "to_version": serving, "to_color": color, "target_color": None,
            "target_source": "the run before", "needs_redeploy": False, "already_clean": True, "method": "none",
            "entry": None, "check": None, "warm": {}, "before": None, "after": None, "duration_ms": 0,
            "total_ms": to_ms(time.monotonic() - started), "msg": "nothing to roll back: %s" % clean,
        }
    files = UpstreamFiles(spec.conf_dir, app)
    state = read_state(files)
    if state is None:
        raise ValidationError("nginx state %s of app %s does not exist; bring the LB up (site.yml) before rolling back."
                              % (files.state, app))
    before = state["doc"]
    serving_color = before.stable
    serving_version = (doc.get("versions") or {}).get(serving_color)

    if spec.target_version:
        target, source = spec.target_version, "asked for"
        if target not in known_versions(doc):
            raise ValidationError("version %s of %s was never deployed in %s: it is in no color and in no history entry "
                                  "of ledger %s; nothing was changed." % (target, app, spec.environment, spec.ledger.path))
    else:
        target, source = default_target(doc)
        if target is None:
            raise ValidationError("ledger %s has no earlier release of %s to roll back to; give target_version."
                                  % (spec.ledger.path, where))

    result = {
        "changed": False, "app": app, "environment": spec.environment, "reason": spec.reason,
        "from_version": serving_version, "from_color": serving_color, "to_version": target, "to_color": None,
        "target_color": None, "target_source": source, "needs_redeploy": False, "method": "none", "entry": None,
        "check": None, "warm": {}, "before": _weights_view(before), "after": _weights_view(before),
    }

    if spec.redeploy_errors:
        # The playbook redeployed the target after our needs_redeploy, and it failed on some app hosts.
        result["total_ms"] = to_ms(time.monotonic() - started)
        raise RollbackError("%s %s did not redeploy, traffic stays on %s: %s" % (
            app, target, serving_version, "; ".join(spec.redeploy_errors)), result)

    candidates = colors_running(doc, target, prefer=serving_color)
    at_full = [color for color in candidates if before.weights[color] == 100 and before.canary is None]
    if at_full and not doc.get("in_progress"):
        result.update(to_color=at_full[0], duration_ms=to_ms(time.monotonic() - started), total_ms=to_ms(time.monotonic() - started),
                      msg="%s already serves %s from %s at 100 %%; nothing to roll back." % (where, target, at_full[0]))
        return result

    lock = doc.get("lock")
    if lock and not spec.emergency and not holds(doc, spec.holder) and not lock_is_stale(lock, utcnow()):
        raise LockConflict(conflict_message(doc, lock, "wait, or roll back with emergency=true to take it over"), lock)

    # The colors the ledger records with the target first; then the others, since a color that answers with the
    # target version runs it (it was just redeployed there, and the ledger does not know yet).
    to_color = None
    for color in candidates + [color for color in COLORS if color not in candidates]:
        warm, report = check_members(state["members"][color], target, spec.slot_timeout)
        result["warm"][color] = report
        if warm:
            to_color = color
            break
    if to_color is None:
        idle = other_color(serving_color)
        if candidates:
            why = "%s runs it but is not warm (%s)" % (" and ".join(candidates), "; ".join(
                "%s: %s" % item for color in candidates for item in sorted(result["warm"][color].items())))
        else:
            why = "no color runs it"
        result.update(needs_redeploy=True, target_color=idle, duration_ms=to_ms(time.monotonic() - started),
                      total_ms=to_ms(time.monotonic() - started),
                      msg="%s cannot flip back to %s now: %s; redeploy %s to %s and roll back again." % (where, target, why, target, idle))
        return result

    after = WeightsDoc({to_color: 100}, to_color, None)
    result.update(to_color=to_color, after=_weights_view(after), changed=True)
    spec.ledger.check_folder(write=not check_mode)
    options = conf_options(app, state["members"], read_text(files.conf), before)

    flip = apply_weights(app, spec.conf_dir, after, None, options, nginx, admin, check_mode)
    result["method"] = flip["method"]
    flipped = time.monotonic()
    result["flipped_at"] = time.time()
    result["duration_ms"] = to_ms(flipped - started)
    if flip["before"]:
        result["before"] = flip["before"]
    if check_mode:
        result["total_ms"] = to_ms(time.monotonic() - started)
        result["msg"] = "%s would roll back from %s to %s on %s." % (where, serving_version, target, to_color)
        return result

    now = utcnow()
    taken = {}

    def change(ledger_doc):
        current = ledger_doc.get("lock")
        if current and holds(ledger_doc, spec.holder):
            current["heartbeat"] = iso(now)
        elif current and spec.emergency:
            # An emergency takes the lock over: the caller holds it now (or nobody, without a holder), so the run
            # that held it fails at its next step instead of moving traffic again.
            taken["holder"] = current["holder"]
            ledger_doc["lock"] = ({"holder": dict(spec.holder), "acquired": iso(now), "heartbeat": iso(now),
                                   "stale_after_s": current["stale_after_s"]} if spec.holder else None)
        begun = datetime.datetime.fromtimestamp(started_wall, datetime.timezone.utc)
        if ledger_doc.get("in_progress"):
            entry = close_in_progress(ledger_doc, "rolled_back", [spec.reason], spec.autonomous, now)
        else:
            entry = {
                "id": new_id(begun), "environment": spec.environment, "version": target, "from_version": serving_version,
                "type": "rollback", "started": iso(begun), "finished": iso(now),
                "duration_s": seconds_between(begun, now), "outcome": "rolled_back",
                "reasons": [spec.reason], "autonomous": spec.autonomous,
                "run_id": spec.holder["run_id"] if spec.holder else None, "steps": [],
            }
            ledger_doc["history"].append(entry)
        entry["rollback"] = rollback_record(spec, begun, result["flipped_at"], result["duration_ms"])
        ledger_doc["active_color"] = to_color
        ledger_doc["weights"] = dict(after.weights)
        versions = ledger_doc.setdefault("versions", {})
        versions[to_color] = target
        ledger_doc["versions"] = dict((color, versions[color]) for color in COLORS if color in versions)
        return entry

    try:
        entry = spec.ledger.update(change)[2]
    except LedgerError as exc:
        result["total_ms"] = to_ms(time.monotonic() - started)
        raise RollbackError("traffic of %s now goes to %s on %s, but the ledger was not updated: %s"
                            % (where, target, to_color, exc), result)
    result["entry"] = entry
    result["lock_taken_over_from"] = taken.get("holder")

    done = "%s rolled back from %s to %s on %s in %d ms (%s)" % (
        where, serving_version, target, to_color, result["duration_ms"], result["method"])
    if taken:
        done += ", taking over the deploy lock of %s" % describe_holder(taken["holder"])
    if spec.emergency or not spec.lb_url:
        result["total_ms"] = to_ms(time.monotonic() - started)
        result["msg"] = done + ("; emergency: no check through the LB." if spec.emergency else ".")
        return result
    result["check"] = check_lb(spec.lb_url, target, spec.check_count, spec.check_timeout, spec.slot_timeout)
    result["total_ms"] = to_ms(time.monotonic() - started)
    if not result["check"]["passed"]:
        raise RollbackError("%s, but %s did not answer %s %d times in a row within %s s (last: %s); traffic stays on %s, "
                            "the best known state." % (done, result["check"]["url"], target, spec.check_count,
                                                       spec.check_timeout, result["check"]["detail"], to_color), result)
    result["msg"] = done + "; %s answers %s." % (result["check"]["url"], target)
    return result
