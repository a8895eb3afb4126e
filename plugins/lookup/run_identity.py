# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: run_identity
short_description: Who this ansible-playbook run is, for the deploy lock
version_added: 0.1.0
author:
  - LeanVibe Deploy engineers (@leanvibe)
description:
  - Returns one mapping that identifies the running ansible-playbook, to be passed as C(holder) to
    M(leanvibe.deploy.deployment_state) and M(leanvibe.deploy.rollback).
  - C(pid) is the process id of the main ansible-playbook process on the controller. Lookups run in forked worker
    processes, which share the main process's command line, so the plugin walks up from its own process through the
    parents while the parent's C(/proc/<pid>/cmdline) equals its own, and takes the top one.
  - C(run_id) is derived from that pid, the process's start time in C(/proc/<pid>/stat), the boot id and the host name,
    so every task of one run gets the same id, and a later process that reuses the pid gets another one.
  - Without a C(/proc) tree (not Linux), the process group stands for the run, as a best effort, and C(started) is null.
  - Takes no terms.
notes:
  - Whether the holder of a lock still runs is checked on the controller with the P(leanvibe.deploy.run_alive#lookup)
    lookup, which also tells a reused pid from the run that held it.
seealso:
  - plugin: leanvibe.deploy.run_alive
    plugin_type: lookup
  - module: leanvibe.deploy.deployment_state
"""

EXAMPLES = r"""
- name: Take the deploy lock for this run
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: lock
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"

- name: Show who this run is
  ansible.builtin.debug:
    msg: "run {{ lookup('leanvibe.deploy.run_identity').run_id }}"
"""

RETURN = r"""
_raw:
  description: One mapping that identifies the run.
  type: list
  elements: dict
  contains:
    run_id:
      description: Id of the run, 32 hex digits in the shape of a UUID4, the same for every task of the run.
      type: str
      sample: 6f1c0c2e9d3a4b7f8e21c4a5b6d7e8f9
    controller:
      description: Host name of the controller.
      type: str
      sample: ctl
    pid:
      description: Process id of the main ansible-playbook process.
      type: int
      sample: 1234
    user:
      description: User who runs ansible-playbook.
      type: str
      sample: deploy
    started:
      description: When the main process started, ISO 8601 UTC with milliseconds; null without a /proc tree.
      type: str
      sample: "2026-11-27T04:58:10.120Z"
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import run_identity

PROC_ROOT = "/proc"


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if terms:
            raise AnsibleError("leanvibe.deploy.run_identity takes no terms, got %r." % (terms,))
        return [run_identity(proc_root=PROC_ROOT)]
