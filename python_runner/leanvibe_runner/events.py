"""Turns ansible-runner's event stream into progress events and, at the end, a RunResult."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from .codes import ExitCode
from .result import RunResult, StepResult

# ansible-playbook's exit codes for unparsable playbooks or inventories (4, which is also its code for an
# unreachable host: only a usage error when no task ran), bad options (5), and the shell's for a missing command.
ANSIBLE_USAGE_RCS = (4, 5, 127)
# Phases the playbooks publish (set_stats leanvibe_result.phase) before they change anything.
BEFORE_CHANGES = (None, "planned", "checked", "unchanged")
CLEAN_FAILURE_PHASES = ("rolled_back", "failed_clean")
RESULT_KEY = "leanvibe_result"


@dataclasses.dataclass
class RunEvent:
    """A step of progress, for on_event callbacks and the CLI's display."""

    kind: str
    """started, plan, phase, task, step, probes, analysis, gate, rollback, failure, lock_held, finished."""
    message: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    at: float = dataclasses.field(default_factory=time.time)


def _merge(into: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class RunInterpreter:
    """Feeds on ansible-runner events (``feed``); ``result`` classifies the run once it ended."""

    def __init__(self, command: str):
        self.command = command
        self.published: dict[str, Any] = {}
        self.steps: list[StepResult] = []
        self.failures: list[str] = []
        self.lock_held_by: Optional[dict[str, Any]] = None
        self.rollback: Optional[dict[str, Any]] = None
        self.rollback_refused = False
        self.rollback_attempted = False
        self.last_task: Optional[str] = None
        self.final_stats_seen = False
        self.tasks_started = 0
        self.results_seen = 0

    @property
    def phase(self) -> Optional[str]:
        return self.published.get("phase")

    # -- events ------------------------------------------------------------------------------------
    def feed(self, event: dict[str, Any]) -> list[RunEvent]:
        name = event.get("event", "")
        data = event.get("event_data") or {}
        if name == "playbook_on_task_start":
            self.tasks_started += 1
            self.last_task = data.get("task")
            return [RunEvent("task", data.get("task") or "", {"play": data.get("play")})]
        if name == "playbook_on_stats":
            self.final_stats_seen = True
            final = (data.get("artifact_data") or {}).get(RESULT_KEY)
            if isinstance(final, dict):
                self.published = dict(final)
            return []
        if name not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_item_on_ok"):
            return []
        res = data.get("res") or {}
        if not isinstance(res, dict):
            return []
        self.results_seen += 1
        failed = name in ("runner_on_failed", "runner_on_unreachable")
        out: list[RunEvent] = []
        out += self._published(res)
        action = data.get("resolved_action") or data.get("task_action") or ""
        if name != "runner_item_on_ok":
            out += self._module(action, res, failed, data)
        if failed and not data.get("ignore_errors"):
            out += self._failure(res, data, unreachable=name == "runner_on_unreachable")
        return out

    def _published(self, res: dict[str, Any]) -> list[RunEvent]:
        stats = (res.get("ansible_stats") or {}).get("data") or {}
        update = stats.get(RESULT_KEY)
        if not isinstance(update, dict):
            return []
        before = self.phase
        _merge(self.published, update)
        events = []
        if "planned_steps" in update or (update.get("phase") in BEFORE_CHANGES and "version" in update):
            events.append(RunEvent("plan", self._plan_message(), dict(self.published)))
        elif self.phase != before:
            events.append(RunEvent("phase", self._phase_message(), dict(self.published)))
        return events

    def _plan_message(self) -> str:
        p = self.published
        text = "%s %s -> %s" % (self.command, p.get("from_version") or "nothing", p.get("version"))
        if p.get("planned_steps"):
            text += ", steps %s %%" % " -> ".join(str(s) for s in p["planned_steps"])
        if p.get("phase") in ("unchanged", "checked"):
            text += " (%s)" % ("already serving: nothing to do" if p["phase"] == "unchanged" else "check mode: nothing changes")
        return text

    def _phase_message(self) -> str:
        p = self.published
        phase = p.get("phase")
        if phase == "started":
            return "deploying %s to %s" % (p.get("version"), p.get("canary_color") or "the idle color")
        if phase == "done":
            if self.command == "probe":
                return "probes %s" % p.get("status")
            if self.command in ("status", "history", "report"):
                return "the LB answers %s: %s %s" % (p.get("lb_status"), p.get("status"), p.get("version") or "")
            if self.command == "rollback":
                return "%s: %s -> %s" % (p.get("status"), p.get("from_version"), p.get("version"))
            return "%s %s" % (p.get("status"), p.get("version") or "")
        if phase == "rolled_back":
            return "rolled back to %s: %s" % (p.get("from_version"), "; ".join(p.get("reasons") or []))
        if phase == "failed_clean":
            return "failed, traffic stays on %s: %s" % (p.get("from_version"), "; ".join(p.get("reasons") or []))
        return str(phase)

    def _step(self, res: dict[str, Any]) -> list[RunEvent]:
        """nginx_upstream moved traffic: a step when its canary color holds traffic (every LB reports the step)."""
        after = res.get("after") or {}
        canary = after.get("canary")
        weight = (after.get("weights") or {}).get(canary) if canary else None
        if not isinstance(weight, int) or weight <= 0 or (self.steps and self.steps[-1].weight == weight):
            return []
        step = StepResult(weight=weight)
        self.steps.append(step)
        return [RunEvent("step", "step %d/%d: %d %% of traffic on the canary" % (
            len(self.steps), len(self.published.get("planned_steps") or []) or len(self.steps), step.weight),
            step.to_dict())]

    def _gate(self, res: dict[str, Any]) -> list[RunEvent]:
        """rollout_gate judged a step with traffic: its probes (run in the gate) and its verdict."""
        events = []
        summary = res.get("probe_summary")
        step = self.steps[-1] if self.steps and self.steps[-1].weight == res.get("weight") else None
        if isinstance(summary, dict) and "passed" in summary:
            if step is not None:
                step.probes = "pass" if summary["passed"] else "fail"
            events.append(RunEvent("probes", "probes %s: %s" % ("passed" if summary["passed"] else "FAILED",
                                                                 summary.get("msg", "")),
                                   {"passed": summary["passed"], "url": summary.get("url"), "mode": summary.get("mode")}))
        if step is None:
            return events
        step.reasons = [str(r) for r in res.get("reasons") or []]
        step.verdict = "pass" if res.get("passed") else "fail"
        text = "gate at %d %%: %s" % (step.weight, "PASS" if step.verdict == "pass" else "FAIL")
        if step.reasons:
            text += " (%s)" % "; ".join(step.reasons)
        events.append(RunEvent("gate", text, step.to_dict()))
        return events

    def _module(self, action: str, res: dict[str, Any], failed: bool, data: dict[str, Any]) -> list[RunEvent]:
        short = action.rsplit(".", 1)[-1]
        if short == "nginx_upstream" and not failed:
            return self._step(res)
        if short == "rollout_gate" and res.get("traffic_moved"):
            return self._gate(res)
        if short == "synthetic_probe" and "passed" in res:
            if self.steps and self.steps[-1].verdict == "running":
                self.steps[-1].probes = "pass" if res["passed"] else "fail"
            return [RunEvent("probes", "probes %s: %s" % ("passed" if res["passed"] else "FAILED", res.get("msg", "")),
                             {"passed": res["passed"], "url": res.get("url"), "mode": res.get("mode")})]
        if short == "traffic_analysis" and "verdict" in res:
            if self.steps and self.steps[-1].verdict == "running":
                order = {None: 0, "pass": 1, "inconclusive": 2, "fail": 3}
                current = self.steps[-1].analysis
                if order.get(res["verdict"], 0) >= order.get(current, 0):
                    self.steps[-1].analysis = res["verdict"]
            return [RunEvent("analysis", "traffic on %s: %s" % (data.get("host"), res["verdict"]),
                             {"verdict": res["verdict"], "reasons": res.get("reasons") or [], "host": data.get("host")})]
        if short == "rollback":
            self.rollback_attempted = True
        if short == "rollback" and not failed and res.get("already_clean"):
            # The run before already left traffic on the stable release: nothing moved.
            return []
        if short == "rollback" and not failed and res.get("needs_redeploy"):
            # Nothing flipped yet: the release is not warm in any color.
            return [RunEvent("phase", "%s is not warm: redeploying it to %s" % (res.get("to_version"), res.get("target_color")),
                             {k: res.get(k) for k in ("from_version", "to_version", "target_color", "needs_redeploy")})]
        if short == "rollback" and not failed and res.get("to_version") is not None:
            self.rollback = res
            return [RunEvent("rollback", "traffic back on %s (%s) in %s ms" % (
                res.get("to_version"), res.get("to_color"), res.get("duration_ms")),
                {k: res.get(k) for k in ("from_version", "to_version", "to_color", "duration_ms", "reason", "needs_redeploy")})]
        if short == "rollback" and failed and res.get("refused"):
            self.rollback_refused = True
            return []
        if short == "deployment_state" and failed and res.get("lock_held_by"):
            self.lock_held_by = res["lock_held_by"]
            return [RunEvent("lock_held", str(res.get("msg")), {"holder": res["lock_held_by"]})]
        if short == "deployment_state" and failed and self.command == "rollback" and not self.rollback_attempted:
            # The ledger could not be read or locked (corrupt, unreadable) before the rollback module ran: refused
            # before anything changed, as the rollback module itself refuses (the emergency path, which takes no lock).
            self.rollback_refused = True
            return []
        return []

    def _failure(self, res: dict[str, Any], data: dict[str, Any], unreachable: bool) -> list[RunEvent]:
        msg = str(res.get("msg") or ("unreachable" if unreachable else "failed")).strip()
        # A gate failed with traffic on the canary: the gate event says it, with its reasons.
        if (data.get("resolved_action") or "").endswith(".rollout_gate") and res.get("traffic_moved"):
            return []
        text = "%s%s: %s" % (data.get("task") or "task", " on " + data["host"] if data.get("host") else "", msg)
        self.failures.append(msg)
        return [RunEvent("failure", text, {"task": data.get("task"), "host": data.get("host"), "msg": msg,
                                           "unreachable": unreachable})]

    # -- the end -------------------------------------------------------------------------------------
    def result(self, rc: Optional[int], runner_status: str, cancelled: bool = False) -> RunResult:
        p = self.published
        phase = p.get("phase")
        reasons = [str(r) for r in p.get("reasons") or [] if str(r)]
        # The rollback of a run that was cut short still moved traffic; keep what we saw.
        rolled_back = bool(p.get("rolled_back", phase == "rolled_back"))
        if rc == 0 and runner_status == "successful" and not cancelled:
            status = p.get("status") or {"unchanged": "unchanged", "checked": "checked"}.get(phase, "ok")
            # An environment whose LB does not serve needs someone, even though reading it worked.
            code = ExitCode.NEEDS_HUMAN if status == "not_serving" else ExitCode.OK
            if status == "not_serving":
                reasons = reasons or ["the LB at %s does not answer /health with 200" % p.get("lb_url")]
        elif self.lock_held_by is not None:
            status, code = "locked", ExitCode.LOCKED
        elif phase == "invalid":
            # The playbook refused the run before anything changed (tasks/check_hosts.yml: its inventory or
            # --limit leaves out a host it needs).
            status, code = "invalid", ExitCode.USAGE
        elif phase in CLEAN_FAILURE_PHASES:
            status, code = p.get("status") or ("rolled_back" if phase == "rolled_back" else "failed"), ExitCode.FAILED_CLEAN
        elif self.command == "probe" and p.get("status") == "failed":
            status, code = "failed", ExitCode.FAILED_CLEAN
        elif cancelled and phase in BEFORE_CHANGES:
            status, code = "cancelled", ExitCode.FAILED_CLEAN
        elif (rc in ANSIBLE_USAGE_RCS and self.tasks_started == 0 and self.results_seen == 0) or (
                self.command in ("canary", "blue-green", "probe") and phase in BEFORE_CHANGES):
            status, code = "invalid", ExitCode.USAGE
        elif self.command == "rollback" and self.rollback_refused and phase is None:
            # Refused before anything changed: an unknown target, no ledger, nothing earlier to go back to.
            status, code = "invalid", ExitCode.USAGE
        elif self.command == "rollback":
            status, code = "rollback_failed", ExitCode.NEEDS_HUMAN
        else:
            status, code = "unknown", ExitCode.NEEDS_HUMAN
        if code != ExitCode.OK and not reasons:
            reasons = self.failures[-1:] or ["ansible-playbook ended with %s (rc %s)" % (runner_status, rc)]
        if cancelled and "cancelled by the caller" not in reasons:
            reasons.append("cancelled by the caller")
        rollback_ms = p.get("rollback_ms")
        if rollback_ms in (None, "") and self.rollback:
            rollback_ms = self.rollback.get("duration_ms")
        known = {"command", "phase", "status", "version", "from_version", "rolled_back", "reasons", "rollback_ms",
                 "planned_steps"}
        details = {k: v for k, v in p.items() if k not in known}
        if p.get("planned_steps"):
            details["planned_steps"] = p["planned_steps"]
        return RunResult(
            command=self.command, status=status, exit_code=code, version=p.get("version"),
            from_version=p.get("from_version"), steps=list(self.steps), rolled_back=rolled_back, reasons=reasons,
            rollback_ms=int(rollback_ms) if str(rollback_ms).isdigit() else None, cancelled=cancelled,
            lock_held_by=self.lock_held_by, details=details)
