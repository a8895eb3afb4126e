#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout_gate
short_description: Judge one step of a rollout from probes through the load balancer and the step's real traffic
version_added: 0.2.0
description:
  - Runs the synthetic probes of M(leanvibe.deploy.synthetic_probe) against O(url) (through the load balancer, with
    C(X-Canary) to reach the new color), or judges the result of a M(leanvibe.deploy.synthetic_probe) task given in
    O(probe_result), and folds in the traffic analyses of the step, one M(leanvibe.deploy.traffic_analysis) result per
    load balancer, given in O(analyses). With neither O(url) nor O(probe_result) no probe counts.
  - The gate fails when the operator aborted (O(abort_file) exists), when the probe suite failed, or when any analysis
    has the verdict C(fail). An inconclusive analysis does not fail the gate.
  - "A failed gate fails the task, with RV(msg) C(gate failed at <weight> %: <reasons>) and every other key of the
    result, so that a C(rescue) routes on C(ansible_failed_result) and rolls back without a task in between."
  - Read-only; it never reports a change.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
    details: The probes and the judging only read, so the gate runs in check mode too.
  diff_mode:
    support: none
requirements:
  - requests (the Python library) for the interpreter that runs the module
  - websocket-client (the Python library), only when the V(websocket) probe runs
options:
  weight:
    description:
      - The new color's share of traffic at this step, a whole percentage; V(0) for the gate before traffic moves.
    type: int
    required: true
  step:
    description:
      - The step's number in the plan, from 1 (0 for the gate before traffic moves); reported back.
    type: int
  url:
    description:
      - Base URL the probes run against, for example the load balancer's C(http://127.0.0.1:8080).
      - Mutually exclusive with O(probe_result).
    type: str
  probe_result:
    description:
      - The registered result of a M(leanvibe.deploy.synthetic_probe) task to judge instead of probing here; it needs
        C(passed) and C(msg).
    type: dict
  mode:
    description:
      - The probe mode, as for M(leanvibe.deploy.synthetic_probe).
    type: str
    choices: [quick, standard, comprehensive, critical-path-only]
    default: quick
  headers:
    description:
      - Extra headers of every probe request, for example C(X-Canary) with value C(always).
    type: dict
  api_key:
    description:
      - API key the C(api_functionality) probe sends.
    type: str
  expect_version:
    description:
      - The release the probes must find in C(/health).
    type: str
  timeout:
    description:
      - Seconds each probe may take.
    type: float
    default: 10
  success_threshold:
    description:
      - Share of probes, from 0 to 1, that must pass.
    type: float
    default: 0.85
  validate_certs:
    description:
      - Whether to check the TLS certificate of an C(https://) URL.
    type: bool
    default: true
  analyses:
    description:
      - The step's M(leanvibe.deploy.traffic_analysis) results, one per load balancer; each needs C(verdict) and
        C(reasons). Empty means the traffic is not judged.
    type: list
    elements: dict
    default: []
  abort_file:
    description:
      - A file on the host that runs the gate whose existence means the operator aborted the run; the gate then fails
        without probing.
    type: path
  failures:
    description:
      - Sentences of what already failed before this gate, for example a release that did not deploy on an app host;
        any fails the gate, and they come first in RV(reasons).
      - With O(weight=0) the gate judges a release before it takes traffic (RV(traffic_moved) is false).
    type: list
    elements: str
    default: []
seealso:
  - module: leanvibe.deploy.rollout_plan
  - module: leanvibe.deploy.synthetic_probe
  - module: leanvibe.deploy.traffic_analysis
"""

EXAMPLES = r"""
- name: Analyse the step's real traffic
  leanvibe.deploy.traffic_analysis:
    log_path: /var/log/nginx/demo.access.log
    app: demo
    stable_color: blue
    canary_color: green
    since: "{{ step_started }}"
  register: step_analysis

- name: Gate the step
  leanvibe.deploy.rollout_gate:
    weight: 25
    step: 2
    url: https://lb.example.com
    headers:
      X-Canary: always
    mode: quick
    expect_version: 2.0.0
    api_key: "{{ app_api_key }}"
    analyses: "{{ ansible_play_hosts | map('extract', hostvars, 'step_analysis') | list }}"
  delegate_to: localhost
  run_once: true
  register: gate

- name: Gate the release before it takes traffic (a host where it did not deploy fails it clean)
  leanvibe.deploy.rollout_gate:
    weight: 0
    step: 0
    failures: "{{ groups['app'] | map('extract', hostvars, 'release_error') | select('defined') | list }}"
    abort_file: /run/leanvibe/abort
"""

RETURN = r"""
passed:
  description: Whether the step passed its gate.
  returned: always
  type: bool
  sample: false
verdict:
  description: V(pass) or V(fail).
  returned: always
  type: str
  sample: fail
weight:
  description: The step's weight.
  returned: always
  type: int
  sample: 25
step:
  description: The step's number, as given.
  returned: always
  type: int
  sample: 2
reasons:
  description: Why the gate failed; empty when it passed.
  returned: always
  type: list
  elements: str
  sample: ["traffic: canary 5xx rate 12.0 % is above 2.0 % (stable 0.0 %)"]
traffic_moved:
  description:
    - Whether the new color took traffic at this step (O(weight) above 0); a failed gate without it fails clean.
  returned: always
  type: bool
  sample: true
aborted:
  description: Whether the operator aborted the run.
  returned: always
  type: bool
  sample: false
checked_at:
  description: When the gate judged, ISO 8601 in UTC.
  returned: always
  type: str
  sample: "2026-12-02T18:30:05.120Z"
checked_at_epoch:
  description: The same moment in seconds since the epoch.
  returned: always
  type: float
  sample: 1796236205.12
probes:
  description: The probe results (name, passed, duration_ms, detail, status_code); empty when no probe ran.
  returned: always
  type: list
  elements: dict
probe_summary:
  description: The probe suite's verdict (passed, mode, url, success_rate, failed_probes, msg); null when no probe ran.
  returned: always
  type: dict
analysis:
  description: The traffic verdict over every load balancer (verdict, reasons, lbs, by_lb).
  returned: always
  type: dict
  sample: {verdict: pass, reasons: [], lbs: 1, by_lb: [{verdict: pass, reasons: [], host: null}]}
verdicts:
  description: The step's verdicts as the ledger records them (probes V(pass) or V(fail), analysis).
  returned: always
  type: dict
  sample: {probes: pass, analysis: inconclusive}
msg:
  description: C(gate passed at <weight> %), or C(gate failed at <weight> %) and the reasons joined with C(; ).
  returned: always
  type: str
  sample: "gate failed at 25 %: traffic: canary 5xx rate 12.0 % is above 2.0 % (stable 0.0 %)"
"""

import warnings

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.gate import (
    aborted,
    judge,
    validate_analyses,
    validate_probe_result,
    validate_weight,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import (
    HAS_REQUESTS,
    MODES,
    REQUESTS_IMPORT_ERROR,
    ProbeTarget,
    check_requirements,
    run_suite,
    select_probes,
    validate_threshold,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            weight=dict(type="int", required=True),
            step=dict(type="int"),
            url=dict(type="str"),
            probe_result=dict(type="dict"),
            mode=dict(type="str", default="quick", choices=list(MODES)),
            headers=dict(type="dict"),
            api_key=dict(type="str", no_log=True),
            expect_version=dict(type="str"),
            timeout=dict(type="float", default=10),
            success_threshold=dict(type="float", default=0.85),
            validate_certs=dict(type="bool", default=True),
            analyses=dict(type="list", elements="dict", default=[]),
            abort_file=dict(type="path"),
            failures=dict(type="list", elements="str", default=[]),
        ),
        mutually_exclusive=[("url", "probe_result")],
        supports_check_mode=True,
    )
    params = module.params
    if params["url"] is not None and not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    try:
        # Every argument is checked before the first probe goes out.
        validate_weight(params["weight"])
        validate_analyses(params["analyses"])
        given = validate_probe_result(params["probe_result"])
        target = None
        if params["url"] is not None:
            validate_threshold(params["success_threshold"])
            names = select_probes(params["mode"])
            target = ProbeTarget(params["url"], headers=params["headers"], api_key=params["api_key"], timeout=params["timeout"],
                                 verify_tls=params["validate_certs"], expect_version=params["expect_version"])
            check_requirements(target, names)
            if not target.verify_tls:
                warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        stop = aborted(params["abort_file"])
        # An abort or an earlier failure fails the gate at once: no probe stands between it and the rollback.
        report = given
        if target is not None and not stop and not params["failures"]:
            report = run_suite(target, success_threshold=params["success_threshold"], mode=params["mode"])
        result = judge(params["weight"], params["step"], report, params["analyses"], aborted=stop,
                       failures=params["failures"])
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    if not result["passed"]:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
