# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment ledger of one app in one environment: the document, its entries and its format.

The ledger is a JSON file on the primary LB host (schema 1)::

    {"schema": 1, "app": "demo", "environment": "local",
     "active_color": "green", "versions": {"blue": "1.0.0", "green": "2.0.0"}, "weights": {"blue": 0, "green": 100},
     "in_progress": null | {"id", "type", "version", "from_version", "started", "canary_color", "holder", "steps": [...]},
     "lock": null | {"holder": {"run_id", "controller", "pid", "user"}, "acquired", "heartbeat", "stale_after_s"},
     "history": [{"id", "environment", "version", "from_version", "type", "started", "finished", "duration_s",
                  "outcome", "reasons", "autonomous", "run_id", "steps",
                  "rollback" (rolled back only): {"detected", "started", "restored", "duration_ms"}}]}

It is rendered as sorted, indented JSON. Times are ISO 8601 UTC with milliseconds; ids sort by time. The file and its
flock live in ledger_store, the lock in deploy_lock, the deployment_state actions in ledger_actions.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    COLORS,
    ValidationError,
    validate_color,
    validate_version,
    validate_weights,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.deploy_lock import heartbeat, require_lock
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso, parse_iso, seconds_between, utcnow

SCHEMA = 1
DEFAULT_HISTORY_LIMIT = 20
TYPES = ("deploy", "promote", "rollback")
OUTCOMES = ("promoted", "deployed", "rolled_back", "failed", "interrupted")

_ENVIRONMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def new_id(moment=None):
    """A sortable id: UTC time to the second, then 6 random hex digits (20261127T045812Z-3fa9c1)."""
    moment = (moment or utcnow()).astimezone(datetime.timezone.utc)
    return "%s-%s" % (moment.strftime("%Y%m%dT%H%M%SZ"), os.urandom(3).hex())


def validate_environment(environment):
    if not environment or not _ENVIRONMENT_RE.fullmatch(str(environment)):
        raise ValidationError(
            "environment %r is not valid: use letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "at most 64 characters." % (environment,))
    return str(environment)


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
        "duration_s": seconds_between(parse_iso(current["started"]), now),
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
    heartbeat(doc, now)
    return interrupted


def add_step(doc, holder, step, now):
    require_lock(doc, holder, "step")
    if not doc.get("in_progress"):
        raise LedgerError("step needs a deployment in progress of %s in %s; start one with action=begin."
                          % (doc["app"], doc["environment"]))
    record = {"weight": step["weight"], "at": iso(now), "verdicts": step["verdicts"]}
    doc["in_progress"]["steps"].append(record)
    heartbeat(doc, now)
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
    heartbeat(doc, now)
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
        "duration_s": seconds_between(started, now),
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
