#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_plan
short_description: Plan a release (canary, blue-green or rollback) from its version, its steps and the ledger
version_added: 0.2.0
description:
  - Checks the version and the steps, then reads the deployment ledger of the app (M(leanvibe.deploy.deployment_state))
    and returns the plan the playbooks follow; the colors, the release that serves now, whether the run changes
    anything, the normalised steps, how long they take and the longest a bad release can serve before traffic is back.
  - "Steps are data, as Argo Rollouts' C(setWeight), C(pause) and C(analysis): a list of percentages such as
    V([10, 25, 50, 100]), the text V(10,25,50,100) (an AWX survey answers in text), or mappings such as
    C({weight: 25, pause_s: 120, probes: quick, analysis: {min_requests: 50}}). A step that does not set a
    setting takes it from O(pause_s), O(probes) and O(analysis)."
  - The weights are whole percentages from 1 to 100, strictly increasing. Every input is checked before the ledger is
    read, and a bad one fails with one sentence that shows what was given.
  - A canary goes to the idle color. A blue-green switch is one step of 100 %; it goes to the idle color unless the
    active color already runs the version. A rollback goes to the color that runs the version warm, else to the idle one.
  - Read-only; it never reports a change.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
    details: The plan is read-only. In check mode RV(proceed) is false and RV(phase) is V(checked).
  diff_mode:
    support: none
options:
  path:
    description:
      - The ledger file of the app, as for M(leanvibe.deploy.deployment_state). A missing ledger reads as an empty one.
    type: path
    required: true
  app:
    description:
      - Name of the app.
    type: str
    required: true
  environment:
    description:
      - Name of the environment.
    type: str
    required: true
  strategy:
    description:
      - How the release moves traffic.
    type: str
    choices: [canary, blue_green, rollback]
    default: canary
  version:
    description:
      - The release to deploy (or roll back to), text or a whole number; V(null), V(true) and a number with a fraction
        are refused, since they would deploy C(None), C(True) or a version YAML rounded.
    type: raw
  version_var:
    description:
      - The variable the version was given in, named in the error message, for example V(app_version) (the message then
        reads C(app_version must be given (-e app_version=X\) as ...)).
    type: str
  steps:
    description:
      - The canary steps; a list of percentages or of mappings with the keys C(weight), C(pause_s), C(probes) and
        C(analysis), or the text of comma-separated percentages. Empty or null means V([10, 25, 50, 100]).
      - Ignored by O(strategy=blue_green) and O(strategy=rollback), which are one step of 100 %.
    type: raw
  pause_s:
    description:
      - Seconds traffic flows at a step before its gate, for a step that does not set C(pause_s). Defaults to 60 for a
        canary and 0 for the other strategies.
    type: raw
  probes:
    description:
      - The probe mode of a step's gate (see M(leanvibe.deploy.synthetic_probe)), for a step that does not set
        C(probes). Defaults to V(quick) for a canary and V(comprehensive) for the other strategies.
    type: str
  analysis:
    description:
      - "Limits of the traffic analysis (see M(leanvibe.deploy.traffic_analysis)) merged into each step's C(analysis),
        over C({min_requests: 20, insufficient_data: inconclusive})"
    type: dict
  abort_delay_s:
    description:
      - Seconds the new color keeps running after a failed gate sent traffic back, for in-flight requests; a whole
        number, not negative. Returned as RV(abort_delay_s) for the playbook's pause.
    type: raw
    default: 0
  old_color:
    description:
      - What happens to the color that served once the release is promoted; V(keep) leaves it running warm for an
        instant switch back, V(stop) stops it after O(old_color_warm_s). Returned as RV(retire_old_color).
    type: str
    choices: [keep, stop]
    default: keep
  old_color_warm_s:
    description:
      - With O(old_color=stop), seconds the old color stays warm after the promotion before it stops.
    type: raw
    default: 0
seealso:
  - module: leanvibe.deploy.rollout_gate
  - module: leanvibe.deploy.deployment_state
"""

EXAMPLES = r"""
- name: Plan the canary
  leanvibe.deploy.rollout_plan:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    strategy: canary
    version: "{{ app_version | default(omit) }}"
    version_var: app_version
    steps:
      - 10
      - {weight: 50, pause_s: 300, probes: standard}
      - 100
    pause_s: 60
  register: plan

- name: Plan a blue-green switch
  leanvibe.deploy.rollout_plan:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: staging
    strategy: blue_green
    version: 2.0.0
  register: plan
"""

RETURN = r"""
strategy:
  description: The strategy planned.
  returned: success
  type: str
  sample: canary
version:
  description: The release, as text.
  returned: success
  type: str
  sample: 2.0.0
new_color:
  description: The color the release goes to (the active one for a blue-green switch of the version that serves).
  returned: success
  type: str
  sample: green
old_color:
  description: The color that serves now (V(blue) for an empty ledger).
  returned: success
  type: str
  sample: blue
from_version:
  description: The release that serves now; null for an empty ledger.
  returned: success
  type: str
  sample: 1.0.0
versions:
  description: The release of each color, as the ledger records them.
  returned: success
  type: dict
  sample: {blue: 1.0.0, green: 0.9.0}
weights:
  description: The weights of the colors, as the ledger records them.
  returned: success
  type: dict
  sample: {blue: 100, green: 0}
changes:
  description: Whether the release differs from what serves (in check mode too).
  returned: success
  type: bool
  sample: true
proceed:
  description: Whether this run goes on to change anything; false in check mode, when nothing changes, or when refused.
  returned: success
  type: bool
  sample: true
refused:
  description: Why a release that would change something cannot go out (a canary with no stable release), else null.
  returned: success
  type: str
  sample: null
phase:
  description: What the run publishes before it changes anything; V(planned), V(checked) or V(unchanged).
  returned: success
  type: str
  sample: planned
reason:
  description: The plan in a few words.
  returned: success
  type: str
  sample: starting
steps:
  description: The normalised steps.
  returned: success
  type: list
  elements: dict
  sample: [{weight: 10, pause_s: 60, probes: quick, analysis: {min_requests: 20, insufficient_data: inconclusive}}]
step_weights:
  description: The weight of each step, in order.
  returned: success
  type: list
  elements: int
  sample: [10, 25, 50, 100]
duration_s:
  description: About how long the steps take, each one's pause plus 5 s of gate, plus 20 s for the run.
  returned: success
  type: int
  sample: 280
worst_case_rollback_s:
  description: The longest a bad release serves before traffic is back; the longest pause, plus the gate and the flip.
  returned: success
  type: int
  sample: 66
expect:
  description: What the deploy lock must still find in the ledger (C(active_color), C(version)); else the plan is stale.
  returned: success
  type: dict
  sample: {active_color: blue, version: 1.0.0}
abort_delay_s:
  description: Seconds the new color keeps running after a failed gate sent traffic back (O(abort_delay_s), checked).
  returned: success
  type: int
  sample: 30
retire_old_color:
  description: Whether the color that served stops once the release is promoted (O(old_color=stop) and a change of color).
  returned: success
  type: bool
  sample: false
old_color_warm_s:
  description: Seconds the old color stays warm after a promotion before it stops, with RV(retire_old_color).
  returned: success
  type: int
  sample: 60
summary:
  description: The plan in lines for a person.
  returned: success
  type: list
  elements: str
  sample: ["demo 1.0.0 on blue -> 2.0.0 on green", "steps 10 % -> 100 %, 60 s pause each, about 150 s in all"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger
from ansible_collections.leanvibe.deploy.plugins.module_utils.plan import (
    STRATEGIES,
    plan_rollout,
    validate_inputs,
    validate_old_color,
    validate_pause,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            app=dict(type="str", required=True),
            environment=dict(type="str", required=True),
            strategy=dict(type="str", default="canary", choices=list(STRATEGIES)),
            version=dict(type="raw"),
            version_var=dict(type="str"),
            steps=dict(type="raw"),
            pause_s=dict(type="raw"),
            probes=dict(type="str"),
            analysis=dict(type="dict"),
            abort_delay_s=dict(type="raw", default=0),
            old_color=dict(type="str", default="keep", choices=["keep", "stop"]),
            old_color_warm_s=dict(type="raw", default=0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        version, steps = validate_inputs(params["strategy"], params["version"], params["steps"], params["pause_s"],
                                         params["probes"], params["analysis"], params["version_var"])
        abort_delay_s = validate_pause(params["abort_delay_s"], "abort_delay_s")
        old_color, warm_s = validate_old_color(params["old_color"], params["old_color_warm_s"])
        ledger = Ledger(params["path"], params["app"], params["environment"])
        result = plan_rollout(params["strategy"], version, steps, ledger.read(), check_mode=module.check_mode,
                              app=params["app"], environment=params["environment"], abort_delay_s=abort_delay_s,
                              old_color=old_color, old_color_warm_s=warm_s)
    except (ValidationError, LedgerError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, msg="; ".join(result["summary"]), **result)


if __name__ == "__main__":
    main()
