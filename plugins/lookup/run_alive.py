# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: run_alive
short_description: Whether the run that holds the deploy lock still runs on this controller
version_added: 0.2.0
author:
  - LeanVibe Deploy engineers (@leanvibe)
description:
  - Takes one term, a lock holder as M(leanvibe.deploy.deployment_state) returns it in C(lock.holder) (the mapping the
    P(leanvibe.deploy.run_identity#lookup) lookup made for that run), and returns whether that run still runs.
  - C(true) when a process with the holder's C(pid) runs on this controller and started when the holder's run started, that is
    the run id derived from that process's start time in C(/proc/<pid>/stat) and the boot id equals the holder's
    C(run_id). A later process that reuses the pid started at another time, so its run is dead (C(false)).
  - C(false) when the holder ran on this controller (same host name) and no such process runs any more.
  - C(null) when the holder ran on another controller, which this one cannot see.
options:
  _terms:
    description: The lock holder, a mapping with C(run_id), C(controller), C(pid) and C(user).
    required: true
    type: list
    elements: dict
seealso:
  - plugin: leanvibe.deploy.run_identity
    plugin_type: lookup
  - module: leanvibe.deploy.deployment_state
"""

EXAMPLES = r"""
- name: Take the deploy lock, over the lock of a run of this controller that is gone
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: lock
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"
    holder_dead: "{{ ledger_info.lock is not none and lookup('leanvibe.deploy.run_alive', ledger_info.lock.holder) is false }}"
"""

RETURN = r"""
_raw:
  description: Whether the holder's run still runs; null when it ran on another controller.
  type: list
  elements: bool
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import holder_alive_locally

PROC_ROOT = "/proc"


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1 or not isinstance(terms[0], dict):
            raise AnsibleError("leanvibe.deploy.run_alive takes one term, the lock holder (a mapping with run_id, controller, "
                               "pid and user), got %r." % (terms,))
        return [holder_alive_locally(dict(terms[0]), proc_root=PROC_ROOT)]
