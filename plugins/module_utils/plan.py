# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout plan: steps as data, and what a release does given the ledger (module rollout_plan).

Steps are a list of percentages (``[10, 25, 50, 100]``, or the text ``"10,25,50,100"`` an AWX survey answers) or
of mappings ``{weight: 25, pause_s: 120, probes: quick, analysis: {...}}`` in the manner of Argo Rollouts'
setWeight/pause/analysis. Every check raises ValueError (ValidationError) with one sentence before anything is read.
"""

from __future__ import annotations

import json
import re

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    ValidationError,
    other_color,
    validate_color,
    validate_release_version,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import MODES

STRATEGIES = ("canary", "blue_green", "rollback")
DEFAULT_STEPS = (10, 25, 50, 100)
# The probe suites, as synthetic_probe names them (one table, probes.MODES).
PROBE_MODES = tuple(MODES)
OLD_COLOR_CHOICES = ("keep", "stop")
STEP_KEYS = ("weight", "pause_s", "probes", "analysis")
ANALYSIS_KEYS = ("min_requests", "insufficient_data", "max_error_rate", "error_rate_factor", "p95_factor", "p95_slack_ms",
                 "max_p95_ms")
DEFAULT_STEP = {"pause_s": 60, "probes": "quick", "analysis": {"min_requests": 20, "insufficient_data": "inconclusive"}}
# Seconds a step takes beyond its pause (probes, analysis, ledger), and a run beyond its steps (plan, deploy, promote).
GATE_S = 5
RUN_OVERHEAD_S = 20
# Seconds from a failed gate to 100 % on the stable color (one nginx_upstream call).
FLIP_S = 1
_STEPS_TEXT_RE = re.compile(r"\s*(\d+\s*(,\s*\d+\s*)*)?")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value):
    return json.dumps(value, default=str)


def validate_pause(value, what="pause_s"):
    if not _is_int(value):
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        else:
            raise ValidationError("%s must be a whole number of seconds (got %s)." % (what, _shown(value)))
    if value < 0:
        raise ValidationError("%s must not be negative (got %s)." % (what, _shown(value)))
    return value


def validate_probe_mode(value, what="probes"):
    if value not in PROBE_MODES:
        raise ValidationError("%s must be one of %s (got %s)." % (what, ", ".join(PROBE_MODES), _shown(value)))
    return value


def validate_analysis(value, what="analysis"):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("%s must be a mapping of limits such as {min_requests: 20} (got %s)." % (what, _shown(value)))
    unknown = sorted(str(key) for key in value if key not in ANALYSIS_KEYS)
    if unknown:
        raise ValidationError("%s has unknown limit %s: use %s." % (what, ", ".join(unknown), ", ".join(ANALYSIS_KEYS)))
    return dict(value)


def step_defaults(pause_s=None, probes=None, analysis=None):
    """The settings of a step that does not set its own: DEFAULT_STEP overridden by what is given (validated)."""
    defaults = {"pause_s": DEFAULT_STEP["pause_s"], "probes": DEFAULT_STEP["probes"], "analysis": dict(DEFAULT_STEP["analysis"])}
    if pause_s is not None:
        defaults["pause_s"] = validate_pause(pause_s, "canary_step_pause_s")
    if probes is not None:
        defaults["probes"] = validate_probe_mode(probes, "canary_step_probe_mode")
    defaults["analysis"].update(validate_analysis(analysis, "canary_analysis"))
    return defaults


def parse_steps(value, defaults=None, what="canary_steps"):
    """Normalised steps [{weight, pause_s, probes, analysis}] from a list, survey text or None (the default steps).

    The rules: a non-empty list; weights whole numbers from 1 to 100, strictly increasing; a mapping step has a
    weight and only the keys weight, pause_s, probes and analysis. Raises ValidationError naming the steps as given.
    """
    defaults = step_defaults() if defaults is None else defaults
    given = value
    if value is None or (isinstance(value, str) and not value.strip()):
        value = list(DEFAULT_STEPS)
    elif isinstance(value, str):
        if not _STEPS_TEXT_RE.fullmatch(value):
            raise ValidationError("%s must be whole percentages separated by commas, such as 10,25,50,100 (got steps %s)."
                                  % (what, _shown(given)))
        value = [int(item) for item in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise ValidationError("%s must be a list of percentages (got steps %s)." % (what, _shown(given)))

    def problem(sentence):
        return ValidationError("%s (got steps %s)." % (sentence, _shown(given)))

    if not value:
        raise problem("%s must not be empty" % what)
    weights = []
    for index, step in enumerate(value, 1):
        if isinstance(step, dict):
            unknown = sorted(str(key) for key in step if key not in STEP_KEYS)
            if unknown:
                raise problem("step %d of %s has unknown key %s: a step takes %s" % (index, what, ", ".join(unknown), ", ".join(STEP_KEYS)))
            if "weight" not in step:
                raise problem("step %d of %s has no weight" % (index, what))
            step = step["weight"]
        if not _is_int(step):
            raise problem("%s must be whole numbers" % what)
        weights.append(step)
    if min(weights) < 1 or max(weights) > 100:
        raise problem("each of %s must be from 1 to 100" % what)
    if any(later <= earlier for earlier, later in zip(weights, weights[1:])):
        raise problem("%s must be strictly increasing" % what)

    steps = []
    for index, (step, weight) in enumerate(zip(value, weights), 1):
        own = step if isinstance(step, dict) else {}
        where = "step %d of %s" % (index, what)
        analysis = dict(defaults["analysis"])
        analysis.update(validate_analysis(own.get("analysis"), where + ": analysis"))
        steps.append({
            "weight": weight,
            "pause_s": validate_pause(own["pause_s"], where + ": pause_s") if own.get("pause_s") is not None else defaults["pause_s"],
            "probes": validate_probe_mode(own["probes"], where + ": probes") if own.get("probes") is not None else defaults["probes"],
            "analysis": analysis,
        })
    return steps


def duration_s(steps):
    """About how long the steps take: each one's pause plus its gate, plus the run around them."""
    return sum(step["pause_s"] + GATE_S for step in steps) + RUN_OVERHEAD_S


def worst_case_rollback_s(steps):
    """The longest a bad release can serve before traffic is back: a fault at the start of the longest step waits out
    its pause and gate, then the flip."""
    return max([step["pause_s"] for step in steps] or [0]) + GATE_S + FLIP_S


def validate_strategy(strategy):
    if strategy not in STRATEGIES:
        raise ValidationError("strategy %s is unknown: use %s." % (_shown(strategy), ", ".join(STRATEGIES)))
    return strategy


def validate_inputs(strategy, version, steps=None, pause_s=None, probes=None, analysis=None, version_var=None):
    """Everything a plan takes from a user, checked before any file is read -> (version, steps)."""
    strategy = validate_strategy(strategy)
    what = version_var or "version"
    how = "given (-e %s=X) as" % version_var if version_var else ""
    version = validate_release_version(version, what, how)
    if strategy == "canary":
        steps = parse_steps(steps, step_defaults(pause_s, probes, analysis))
    else:
        # A switch is one step: all traffic at once, after the gate on the new color.
        defaults = step_defaults(0 if pause_s is None else pause_s, probes or "comprehensive", analysis)
        steps = [dict(defaults, weight=100)]
    return version, steps


def validate_old_color(old_color, warm_s):
    """What happens to the color that served, after a promotion -> (old_color, warm_s)."""
    if old_color not in OLD_COLOR_CHOICES:
        raise ValidationError("old_color must be keep or stop (got %s)." % _shown(old_color))
    return old_color, validate_pause(warm_s, "old_color_warm_s")


def plan_rollout(strategy, version, steps, ledger, check_mode=False, app="app", environment=None, abort_delay_s=0,
                 old_color="keep", old_color_warm_s=0):
    """What the release does given the ledger's view (active_color, versions, weights).

    `version` and `steps` come from validate_inputs. Returns the rollout_plan module's result (without `changed`):
    colors, from_version, whether the release changes what serves (`changes`) and whether this run goes on to change
    it (`proceed`, false in check mode), the phase to publish, and what the deploy lock must still find (`expect`).
    """
    active = ledger.get("active_color") or "blue"
    validate_color(active, "active_color of the ledger")
    versions = dict(ledger.get("versions") or {})
    serving = versions.get(active)
    if strategy == "canary":
        new_color = other_color(active)
        changes = serving != version
    elif strategy == "blue_green":
        # Already serving: the run re-applies the weights to the active color and changes nothing else.
        new_color = active if serving == version else other_color(active)
        changes = new_color != active
    else:
        # A rollback goes to the color that still runs the target warm, else to the idle one (redeployed).
        warm = [color for color, running in sorted(versions.items()) if running == version and color != active]
        new_color = active if serving == version else (warm[0] if warm else other_color(active))
        changes = serving != version
    proceed = changes and not check_mode
    refused = None
    if strategy == "canary" and proceed and not serving:
        refused = "%s has no stable release in %s to judge a canary against; bring it up with site.yml first." % (
            app, environment or ledger.get("environment") or "this environment")
        proceed = False

    if check_mode:
        phase, reason = "checked", "check mode: nothing was changed"
    elif not changes:
        phase, reason = "unchanged", "already serving %s: nothing to do" % version
    else:
        phase, reason = "planned", refused or "starting"
    weights_text = " % -> ".join(str(step["weight"]) for step in steps)
    pauses = sorted(set(step["pause_s"] for step in steps))
    pause_text = "%d s pause each" % pauses[0] if len(pauses) == 1 else "pauses of %s s" % " to ".join(
        str(p) for p in (pauses[0], pauses[-1]))
    summary = [
        "%s %s on %s -> %s on %s" % (app, serving or "nothing", active, version, new_color),
        "steps %s %%, %s, about %d s in all" % (weights_text, pause_text, duration_s(steps)),
        "a failed gate puts 100 %% back on %s in about %d s; the %s stops %s s later" % (
            active, FLIP_S, "canary" if strategy == "canary" else "new color", abort_delay_s),
        reason,
    ]
    return {
        "strategy": strategy,
        "version": version,
        "new_color": new_color,
        "old_color": active,
        "from_version": serving,
        "versions": versions,
        "weights": dict(ledger.get("weights") or {}),
        "changes": changes,
        "proceed": proceed,
        "refused": refused,
        "phase": phase,
        "reason": refused or reason,
        "steps": steps,
        "step_weights": [step["weight"] for step in steps],
        "duration_s": duration_s(steps),
        "worst_case_rollback_s": worst_case_rollback_s(steps),
        "expect": {"active_color": active, "version": serving},
        "abort_delay_s": abort_delay_s,
        # After a promotion: stop the color that served, old_color_warm_s later (a rollback keeps it: it serves).
        "retire_old_color": old_color == "stop" and strategy != "rollback" and new_color != active,
        "old_color_warm_s": old_color_warm_s,
        "summary": summary,
    }
