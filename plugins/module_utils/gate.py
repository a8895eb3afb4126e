# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gate of one rollout step (module rollout_gate): probes through the LB, the step's traffic, the operator's abort.

The probes run here (module_utils/probes.py); the traffic is judged on each LB by traffic_analysis
(module_utils/traffic.py), whose results come in as data, since the access logs live on the LBs.
"""

from __future__ import annotations

import os
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso_from_epoch
from ansible_collections.leanvibe.deploy.plugins.module_utils.traffic import VERDICTS

ABORTED = "aborted by the operator"


def validate_weight(weight):
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValidationError("weight must be a whole percentage from 0 to 100, not %r." % (weight,))
    return weight


def validate_analyses(analyses):
    """traffic_analysis results (one per LB): each a mapping with a verdict and a list of reasons."""
    if analyses is None:
        return []
    if not isinstance(analyses, list):
        raise ValidationError("analyses must be a list of traffic_analysis results, not %r." % (analyses,))
    clean = []
    for index, analysis in enumerate(analyses, 1):
        if not isinstance(analysis, dict) or analysis.get("verdict") not in VERDICTS:
            raise ValidationError("analysis %d is not a traffic_analysis result: it needs a verdict of %s." % (
                index, ", ".join(VERDICTS)))
        reasons = analysis.get("reasons") or []
        if not isinstance(reasons, list):
            raise ValidationError("analysis %d: reasons must be a list." % index)
        clean.append({"verdict": analysis["verdict"], "reasons": [str(reason) for reason in reasons],
                      "host": analysis.get("host")})
    return clean


def validate_failures(failures):
    """What already went wrong before the gate (a release that did not deploy): a list of sentences."""
    if failures is None:
        return []
    if not isinstance(failures, list):
        raise ValidationError("failures must be a list of sentences, not %r." % (failures,))
    return [str(failure) for failure in failures if str(failure).strip()]


def validate_probe_result(result):
    """A registered synthetic_probe result (passed, msg, probes), or None."""
    if result is None:
        return None
    if not isinstance(result, dict) or not isinstance(result.get("passed"), bool) or "msg" not in result:
        raise ValidationError("probe_result must be the result of a synthetic_probe task, with passed and msg.")
    return dict(result, probes=list(result.get("probes") or []))


def combine_analyses(analyses):
    """One verdict for the step's traffic over every LB: fail beats inconclusive beats pass; no analysis passes."""
    verdicts = [analysis["verdict"] for analysis in analyses]
    verdict = "fail" if "fail" in verdicts else ("inconclusive" if "inconclusive" in verdicts else "pass")
    failed = [reason for analysis in analyses if analysis["verdict"] == "fail" for reason in analysis["reasons"]]
    return {"verdict": verdict, "reasons": failed, "lbs": len(analyses), "by_lb": analyses}


def judge(weight, step, probes=None, analyses=None, aborted=False, now=None, failures=None):
    """The gate's result: passed, verdict, weight, step, reasons, traffic_moved, checked_at, probes, analysis,
    verdicts, msg.

    `probes` is a probes.run_suite report (or None when no probe ran), `analyses` traffic_analysis results, `failures`
    sentences of what already failed (they come first). A gate at weight 0 judges a release before it takes traffic:
    whatever fails there fails clean. Reasons read: "<failure>", "aborted by the operator", "probes: <suite message>",
    "traffic: <reason>".
    """
    weight = validate_weight(weight)
    analysis = combine_analyses(validate_analyses(analyses))
    reasons = validate_failures(failures)
    if aborted:
        reasons.append(ABORTED)
    if probes is not None and not probes["passed"]:
        reasons.append("probes: " + probes["msg"])
    reasons.extend("traffic: " + reason for reason in analysis["reasons"])
    checked = time.time() if now is None else now
    passed = not reasons
    where = "at %d %%" % weight if weight else "before traffic moved"
    msg = "gate passed %s" % where if passed else "gate failed %s: %s" % (where, "; ".join(reasons))
    return {
        "passed": passed,
        "verdict": "pass" if passed else "fail",
        "weight": weight,
        "step": step,
        "reasons": reasons,
        # Whether the new color took traffic at this step: the rescue sends traffic back only then.
        "traffic_moved": weight > 0,
        "aborted": bool(aborted),
        "checked_at": iso_from_epoch(checked),
        "checked_at_epoch": round(checked, 3),
        "probes": list(probes["probes"]) if probes is not None else [],
        "probe_summary": {key: probes[key] for key in ("passed", "mode", "url", "success_rate", "failed_probes", "msg")
                          if key in probes} if probes is not None else None,
        "analysis": analysis,
        # What the ledger records for the step.
        "verdicts": {"probes": "pass" if probes is None or probes["passed"] else "fail", "analysis": analysis["verdict"]},
        "msg": msg,
    }


def aborted(abort_file):
    """Whether the operator asked to abort: the abort file (on the host that runs the gate) exists."""
    return bool(abort_file) and os.path.exists(abort_file)
