"""Notification callback of the benchmarks: a timeline of the run, one JSON line per event, in BENCH_TIMELINE_FILE.

Each task start and each host result gets the wall-clock time (time.time(), the clock of the load generator
and of nginx's $msec), the task name (for the reader of the timeline) and the module that ran (`action`, resolved
to its FQCN, which the benchmark routes on), and the few result keys the benchmark reads: the rollback module's
`flipped_at` and `duration_ms`, the weights before and after, a gate's `checked_at_epoch`, `traffic_moved` and
reasons, a plan's colors, and a short message. Enabled only by the benchmark (ANSIBLE_CALLBACKS_ENABLED=bench_timeline).
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_timeline
type: notification
short_description: Timestamped task timeline for bench/deploy_under_load.py
description: Writes one JSON line per task start and per host result to the file named by BENCH_TIMELINE_FILE.
requirements:
  - BENCH_TIMELINE_FILE set in the environment
"""

KEPT_RESULT_KEYS = ("flipped_at", "duration_ms", "total_ms", "method", "before", "after", "to_version", "from_version",
                    "to_color", "needs_redeploy", "verdict", "passed", "changed", "checked_at_epoch", "traffic_moved",
                    "reasons", "weight", "applied_at", "old_color", "new_color", "strategy")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "bench_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        path = os.environ.get("BENCH_TIMELINE_FILE")
        self.handle = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - open for the whole run
        self.task = None

    def _write(self, record):
        if self.handle is None:
            return
        record["t"] = time.time()
        self.handle.write(json.dumps(record, default=str, sort_keys=True) + "\n")
        self.handle.flush()

    def v2_playbook_on_start(self, playbook):
        self._write({"event": "playbook_start", "playbook": os.path.basename(playbook._file_name)})

    def v2_playbook_on_play_start(self, play):
        self._write({"event": "play_start", "play": play.get_name()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.task = task.get_name()
        self._write({"event": "task_start", "task": self.task})

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _result(self, event, result):
        data = result._result
        task = result._task
        record = {"event": event, "task": task.get_name(), "host": result._host.get_name(),
                  "action": getattr(task, "resolved_action", None) or task.action}
        for key in KEPT_RESULT_KEYS:
            if key in data:
                record[key] = data[key]
        if data.get("msg"):
            record["msg"] = str(data["msg"])[:500]
        self._write(record)

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        self._write({"event": "playbook_end", "stats": dict((host, stats.summarize(host)) for host in sorted(stats.processed))})
        if self.handle is not None:
            self.handle.close()
            self.handle = None
