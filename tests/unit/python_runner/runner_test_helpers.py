"""Shared helpers of the leanvibe_runner unit tests: recorded event fixtures, synthetic events, a fake project.

Nothing here runs ansible-playbook: the recorded streams are trimmed ansible-runner job_events (see
fixtures/trim_events.py) and ``FakeRunner`` stands in for ``ansible_runner.run``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Optional

import jsonschema

from leanvibe_runner.events import RunInterpreter
from leanvibe_runner.result import RunResult, result_schema

FIXTURES = Path(__file__).resolve().parent / "fixtures"

P95_REASON = "traffic: canary p95 407 ms > limit 59 ms (1.5 \u00d7 stable p95 6 ms + 50 ms)"


def load_events(name: str) -> list[dict[str, Any]]:
    """A recorded event stream, sorted by ansible-runner's counter."""
    with open(FIXTURES / name, encoding="utf-8") as handle:
        events = json.load(handle)
    return sorted(events, key=lambda event: event["counter"])


def interpret(command: str, events: Iterable[dict[str, Any]]) -> tuple[RunInterpreter, list]:
    interpreter = RunInterpreter(command)
    out = []
    for event in events:
        out.extend(interpreter.feed(event))
    return interpreter, out


def validate(result: RunResult | dict[str, Any]) -> dict[str, Any]:
    """The result's dict, after checking it against the shipped JSON Schema (raises ValidationError)."""
    data = result.to_dict() if isinstance(result, RunResult) else result
    jsonschema.Draft202012Validator(result_schema()).validate(data)
    return data


def schema_errors(data: dict[str, Any]) -> list[str]:
    return [error.message for error in jsonschema.Draft202012Validator(result_schema()).iter_errors(data)]


# -- synthetic events, shaped like ansible-runner's ---------------------------------------------------------
class Stream:
    """Builds an event stream with increasing counters."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _add(self, event: str, **event_data: Any) -> "Stream":
        self.events.append({"event": event, "counter": len(self.events) + 1, "event_data": event_data})
        return self

    def task(self, task: str, play: str = "a play") -> "Stream":
        return self._add("playbook_on_task_start", task=task, play=play)

    def ok(self, task: str, action: str, res: dict[str, Any], host: str = "lb1", **extra: Any) -> "Stream":
        return self._add("runner_on_ok", task=task, host=host, resolved_action=action, res=res, **extra)

    def failed(self, task: str, action: str, res: dict[str, Any], host: str = "lb1", **extra: Any) -> "Stream":
        return self._add("runner_on_failed", task=task, host=host, resolved_action=action, res=res, **extra)

    def unreachable(self, task: str, res: dict[str, Any], host: str = "lb1") -> "Stream":
        return self._add("runner_on_unreachable", task=task, host=host, resolved_action="ansible.builtin.ping",
                         res=res)

    def publish(self, host: str = "lb1", **update: Any) -> "Stream":
        return self.ok("Publish", "ansible.builtin.set_stats",
                       {"changed": False, "ansible_stats": {"data": {"leanvibe_result": update},
                                                            "per_host": False, "aggregate": True}}, host=host)

    def weights(self, canary_weight: int, host: str = "lb1", canary: Optional[str] = "green",
                stable: str = "blue") -> "Stream":
        """nginx_upstream's result on one LB: the canary color at `canary_weight` % (no canary: `stable` at 100)."""
        weights = {stable: 100 - canary_weight, canary: canary_weight} if canary else {stable: 100}
        return self.ok("Set the traffic weights of the app", "leanvibe.deploy.nginx_upstream",
                       {"changed": True, "method": "live", "applied_at": 1.0,
                        "after": {"weights": weights, "stable": stable, "canary": canary}}, host=host)

    def gate(self, weight: int, reasons: tuple[str, ...] = (), failed: Optional[bool] = None, host: str = "lb1",
             probes: Optional[dict[str, Any]] = None) -> "Stream":
        """rollout_gate's result (failed when it has reasons, unless `failed` says otherwise)."""
        passed = not reasons
        res = {"changed": False, "passed": passed, "weight": weight, "reasons": list(reasons),
               "traffic_moved": weight > 0, "probe_summary": probes,
               "msg": "gate passed at %d %%" % weight if passed else "gate failed at %d %%: %s" % (weight, "; ".join(reasons))}
        add = self.failed if (not passed if failed is None else failed) else self.ok
        return add("Gate the step", "leanvibe.deploy.rollout_gate", res, host=host)

    def stats(self, leanvibe_result: Optional[dict[str, Any]] = None) -> "Stream":
        artifact = {} if leanvibe_result is None else {"leanvibe_result": leanvibe_result}
        return self._add("playbook_on_stats", artifact_data=artifact)


def canary_plan(stream: Stream, version: str = "2.3.0", from_version: str = "2.2.0",
                steps: tuple[int, ...] = (25, 50, 100)) -> Stream:
    return stream.publish(command="canary", phase="planned", version=version, from_version=from_version,
                          stable_color="blue", canary_color="green", planned_steps=list(steps))


# -- a fake project and a fake ansible_runner.run -----------------------------------------------------------
def make_project(root: Path, inventories: Iterable[str] = ("local", "staging"), ansible_cfg: bool = True) -> Path:
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    for name in ("canary", "blue_green", "rollback", "probes", "status"):
        (root / "playbooks" / ("%s.yml" % name)).write_text("---\n[]\n", encoding="utf-8")
    for name in inventories:
        (root / "inventories" / name).mkdir(parents=True, exist_ok=True)
        (root / "inventories" / name / "hosts.yml").write_text("---\nall: {}\n", encoding="utf-8")
    if ansible_cfg:
        (root / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    return root


class FakeRunner:
    """Stands in for ansible_runner.run: feeds ``events`` to the event_handler, then ``during`` (if any)
    runs with the cancel_callback, and returns an object with rc, status and config.artifact_dir."""

    def __init__(self, events: Iterable[dict[str, Any]] = (), rc: int = 0, status: str = "successful",
                 during: Optional[Callable[[Callable[[], bool], Callable[[dict[str, Any]], bool]], None]] = None,
                 after: Iterable[dict[str, Any]] = ()):
        self.events = list(events)
        self.after = list(after)
        self.rc = rc
        self.status = status
        self.during = during
        self.calls: list[dict[str, Any]] = []
        self.handler_returns: list[Any] = []

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(kwargs)
        handler = kwargs["event_handler"]
        for event in self.events:
            self.handler_returns.append(handler(event))
        if self.during is not None:
            self.during(kwargs["cancel_callback"], handler)
        for event in self.after:
            self.handler_returns.append(handler(event))
        artifact_dir = Path(kwargs["private_data_dir"]) / "artifacts" / "fake-ident"
        return SimpleNamespace(rc=self.rc, status=self.status, config=SimpleNamespace(artifact_dir=str(artifact_dir)))

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def kwargs(self) -> dict[str, Any]:
        assert len(self.calls) == 1, "ansible_runner.run was called %d times" % len(self.calls)
        return self.calls[0]


def poll(cancel_callback: Callable[[], bool], times: int = 5, pause_s: float = 0.0) -> list[bool]:
    """Calls cancel_callback like ansible-runner's loop does, and returns what it answered."""
    answers = []
    for _attempt in range(times):
        answers.append(cancel_callback())
        if pause_s:
            time.sleep(pause_s)
    return answers


def refuse_real_runs(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("ansible_runner.run must not be called in this test")


class Gate:
    """A thread event with a timeout, for the background tests."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def open(self) -> None:
        self.event.set()

    def wait(self) -> None:
        assert self.event.wait(10), "the test never opened the gate"
