# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock inside the ledger document: who holds it, when it goes stale, taking it and releasing it.

``doc["lock"]`` is null or {"holder": {"run_id", "controller", "pid", "user"}, "acquired", "heartbeat",
"stale_after_s"}. Only the holder may begin, step and finish a deployment; a stale lock, or one whose holder is known
to be dead, may be taken over.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError, LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso, parse_iso

DEFAULT_STALE_AFTER_S = 900

_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

# Suboptions of a module's `holder` option: the identity the run_identity lookup returns.
HOLDER_OPTIONS = dict(
    run_id=dict(type="str", required=True),
    controller=dict(type="str"),
    pid=dict(type="int"),
    user=dict(type="str"),
    started=dict(type="str"),
)


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


def heartbeat(doc, now):
    if doc.get("lock"):
        doc["lock"]["heartbeat"] = iso(now)
