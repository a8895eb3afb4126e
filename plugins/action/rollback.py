# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of leanvibe.deploy.rollback: the module runs on the host; its deployment event goes to the webhooks from a
detached process on the controller, so that the notification never holds the rollback up."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.leanvibe.deploy.plugins.plugin_utils.webhooks import send_detached


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        # Webhook URLs and headers carry secrets (Slack's do, the dashboard's token): they stay on the controller.
        webhooks = args.pop("webhooks", None)
        result.update(self._execute_module(module_name="leanvibe.deploy.rollback", module_args=args, task_vars=task_vars))
        # As the normal action does: the module's temporary folder on the host goes.
        self._remove_tmp_path(self._connection._shell.tmpdir)
        if not result.get("failed") and "event" in result:
            result["notified"] = send_detached(webhooks, result["event"])
        return result
