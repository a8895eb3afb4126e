"""Stdout callback for the integration tests: the whole run as one JSON document.

ansible-core no longer ships a json callback (it moved to ansible.posix), and the
tests need per-task results and per-host stats, so they bring this small one.
"""

from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: results_json
type: stdout
short_description: Whole run as one JSON document, for the integration tests
description: Prints plays, tasks with per-host results, and stats as JSON at the end of the run.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "results_json"

    def __init__(self):
        super().__init__()
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def _record(self, result, **extra):
        data = dict(result._result)
        data.update(extra)
        if self.plays and self.plays[-1]["tasks"]:
            hosts = self.plays[-1]["tasks"][-1]["hosts"]
            key = result._host.get_name()
            if "results" in hosts.get(key, {}) or key in hosts:
                # Loop items of an included role land on the same task name: keep them all.
                key = "%s#%d" % (key, len(hosts))
            hosts[key] = data

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        summary = dict((host, stats.summarize(host)) for host in sorted(stats.processed))
        self._display.display(json.dumps({"plays": self.plays, "stats": summary}, default=str))
