# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: run_scope
short_description: Why a run does not reach the hosts its playbook needs, or an empty string
version_added: 0.2.0
author:
  - LeanVibe Deploy engineers (@leanvibe)
description:
  - Takes the groups a playbook needs (for example V(lb) and V(app)) and returns one sentence when the inventory has no host
    in one of them, or when C(--limit) leaves out a host the playbook runs on; an empty string when the run reaches them all.
  - Reads Ansible's C(groups), C(ansible_play_hosts_all) (the hosts after C(--limit); call it in a play on C(all)),
    C(ansible_limit) and C(ansible_inventory_sources).
options:
  _terms:
    description: The groups the playbook needs.
    required: true
    type: list
    elements: str
  first_only:
    description: Whether the playbook needs only the first host of each group (a probe, a status), not every host.
    type: bool
    default: false
seealso:
  - plugin: leanvibe.deploy.run_identity
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Stop before anything changes when the run leaves out a host it needs
  ansible.builtin.fail:
    msg: "{{ problem }}"
  vars:
    problem: "{{ lookup('leanvibe.deploy.run_scope', 'lb', 'app') }}"
  when: problem | length > 0
  run_once: true
"""

RETURN = r"""
_raw:
  description: The sentence that refuses the run, or an empty string.
  type: list
  elements: str
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.leanvibe.deploy.plugins.plugin_utils.run_scope import scope_problem


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        # lookup('leanvibe.deploy.run_scope', ['lb', 'app']) hands the list over as one term.
        terms = [name for term in terms for name in (term if isinstance(term, (list, tuple)) else [term])]
        try:
            problem = scope_problem(variables.get("groups") or {}, variables.get("ansible_play_hosts_all") or [], terms,
                                    first_only=self.get_option("first_only"),
                                    inventory_sources=variables.get("ansible_inventory_sources"),
                                    limit=variables.get("ansible_limit"))
        except ValueError as exc:
            raise AnsibleError(str(exc)) from None
        return [problem]
