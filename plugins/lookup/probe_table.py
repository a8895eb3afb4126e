# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: probe_table
short_description: The probe engine's modes and probe names
version_added: 0.2.0
author:
  - LeanVibe Deploy engineers (@leanvibe)
description:
  - Returns one mapping with the modes of the probe engine (C(module_utils/probes.py)) and the probes each runs, and
    the names of all probes, so that a role checks probe settings against the same table that
    M(leanvibe.deploy.synthetic_probe), the monitoring service and C(leanvibe-deploy probe) use.
  - Takes no terms.
seealso:
  - module: leanvibe.deploy.synthetic_probe
"""

EXAMPLES = r"""
- name: Show the probes of the quick mode
  ansible.builtin.debug:
    msg: "{{ lookup('leanvibe.deploy.probe_table').modes.quick }}"
"""

RETURN = r"""
_raw:
  description: One mapping.
  type: list
  elements: dict
  contains:
    modes:
      description: Each mode and the probe names it runs, in order.
      type: dict
      sample: {"quick": ["basic_health", "api_functionality"]}
    probes:
      description: Every probe name.
      type: list
      elements: str
      sample: [basic_health, database_health, api_functionality, websocket, performance, security_headers]
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import MODES, PROBES


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if terms:
            raise AnsibleError("leanvibe.deploy.probe_table takes no terms, got %r." % (terms,))
        return [{"modes": {mode: list(names) for mode, names in MODES.items()}, "probes": list(PROBES)}]
