# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The actions of the deployment_state module on a ledger: info, lock, unlock, begin, step, finish, record."""

from __future__ import annotations

import copy

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import COLORS, ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.deploy_lock import (
    DEFAULT_STALE_AFTER_S,
    acquire,
    describe_holder,
    lock_is_stale,
    release,
    validate_holder,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_document import (
    DEFAULT_HISTORY_LIMIT,
    OUTCOMES,
    add_step,
    begin,
    finish,
    lasting,
    record,
    render,
    validate_deployment,
    validate_reasons,
    validate_step,
    validate_updates,
    view,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import utcnow

ACTIONS = ("info", "lock", "unlock", "begin", "step", "finish", "record")


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
