#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: synthetic_probe
short_description: Run synthetic probes against a LeanVibe HTTP service and report a verdict
version_added: 0.1.0
description:
  - Runs a suite of synthetic probes against the base URL of a service (normally its load balancer) and reports,
    per probe, whether it passed, how long it took and why it failed, and for the suite the share of probes that
    passed and whether that share reaches O(success_threshold).
  - "The probes: V(basic_health) (C(GET /health) answers 200 with JSON C(status: healthy), and the version
    O(expect_version) when it is set); V(database_health) (C(GET /health/database) answers 200 with
    C(database_connected: true)); V(api_functionality) (creates a task with C(POST /api/v1/tasks), reads it back and
    deletes it; the task is deleted even when a later step fails); V(websocket) (sends a ping to C(/ws) and expects a
    JSON answer with a C(type)); V(performance) (O(performance_requests) sequential C(GET /health) on one keep-alive
    connection, none may fail and the average and 95th percentile must stay under O(performance_avg_ms) and
    O(performance_p95_ms)); V(security_headers) (at least 3 of C(Strict-Transport-Security),
    C(X-Content-Type-Options), C(X-Frame-Options) and C(X-XSS-Protection) on C(/health))."
  - The probes run concurrently, so the suite takes about as long as its slowest probe.
  - Each probe has a total budget of O(timeout) seconds, not only a per-read timeout; a body is read to at most 1 MiB.
  - A fault of the target (connection refused, TLS error, an error status, a body that is not JSON, too large or too
    slow, a websocket that closes) is a failed probe with its reason, never a failed task. The module fails only on
    bad arguments. Use RV(passed) to gate a deployment, see the examples.
  - The module only reads; it never reports a change, and it runs in check mode too.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
    details: The probes only read (the API probe deletes the task it creates), so they run in check mode too.
  diff_mode:
    support: none
requirements:
  - requests (the Python library) for the interpreter that runs the module
  - websocket-client (the Python library), only when the V(websocket) probe runs
options:
  url:
    description:
      - Base URL of the service, C(http://) or C(https://) with a host, for example C(https://lb.example.com) or
        C(http://127.0.0.1:8000). Probe paths such as C(/health) are appended to it; no query or fragment.
    type: str
    required: true
  mode:
    description:
      - Which probes to run when O(probes) is not given.
      - V(quick) runs basic_health and api_functionality; V(critical-path-only) runs basic_health, database_health and
        api_functionality; V(standard) runs those and websocket; V(comprehensive) runs all six.
    type: str
    choices: [quick, standard, comprehensive, critical-path-only]
    default: standard
  probes:
    description:
      - The probes to run, overriding O(mode). Names from V(basic_health), V(database_health), V(api_functionality),
        V(websocket), V(performance) and V(security_headers).
    type: list
    elements: str
  success_threshold:
    description:
      - Share of probes, from 0 to 1, that must pass for the suite to pass.
    type: float
    default: 0.85
  timeout:
    description:
      - Total time in seconds each probe may take, greater than 0. A probe still running then fails.
    type: float
    default: 10
  headers:
    description:
      - Extra headers sent with every request, the websocket handshake included, for example C(X-Canary) with value
        C(always) to reach the canary color through the load balancer.
    type: dict
  api_key:
    description:
      - "Key for the tasks API, sent as C(Authorization: Bearer <api_key>). Required when V(api_functionality) runs."
    type: str
  validate_certs:
    description:
      - Verify the TLS certificate of an C(https://) URL. Set to V(false) only for self-signed test certificates.
    type: bool
    default: true
  expect_version:
    description:
      - Version that C(/health) must report for V(basic_health) to pass, for example right after a release.
    type: str
  performance_requests:
    description: Number of sequential requests of the V(performance) probe, from 1 to 1000.
    type: int
    default: 5
  performance_avg_ms:
    description: Highest average response time in milliseconds for the V(performance) probe to pass.
    type: float
    default: 1000
  performance_p95_ms:
    description: Highest 95th percentile response time in milliseconds for the V(performance) probe to pass.
    type: float
    default: 1500
notes:
  - The V(api_functionality) probe writes a task and deletes it again; the service's state is as before afterwards.
  - Requests go straight to the URL; C(*_proxy) environment variables are not used.
seealso:
  - module: leanvibe.deploy.slot_release
  - module: leanvibe.deploy.nginx_upstream
"""

EXAMPLES = r"""
- name: Probe the service through the load balancer
  leanvibe.deploy.synthetic_probe:
    url: https://lb.example.com
    api_key: "{{ leanvibe_api_key }}"
  register: probe

- name: Gate the canary on the comprehensive suite, reached through the LB
  leanvibe.deploy.synthetic_probe:
    url: https://lb.example.com
    mode: comprehensive
    headers:
      X-Canary: always
    api_key: "{{ leanvibe_api_key }}"
    expect_version: "2.1.0"
  register: canary_probe
  failed_when: not canary_probe.passed

- name: Check only health and database of a slot, no API key needed
  leanvibe.deploy.synthetic_probe:
    url: http://127.0.0.1:9002
    probes: [basic_health, database_health]
    success_threshold: 1
    timeout: 5
"""

RETURN = r"""
passed:
  description: Whether the share of passed probes reaches O(success_threshold).
  returned: success
  type: bool
  sample: false
success_rate:
  description: Share of the probes that passed, from 0 to 1.
  returned: success
  type: float
  sample: 0.75
success_threshold:
  description: The threshold the suite was held to.
  returned: success
  type: float
  sample: 0.85
mode:
  description: The mode whose probes ran; null when O(probes) chose them.
  returned: success
  type: str
  sample: standard
url:
  description: The probed base URL.
  returned: success
  type: str
  sample: https://lb.example.com
duration_ms:
  description: Wall-clock time of the whole suite in milliseconds.
  returned: success
  type: float
  sample: 42.7
failed_probes:
  description: Names of the probes that failed, in the order they were asked for.
  returned: success
  type: list
  elements: str
  sample: [websocket]
probes:
  description: One result per probe, in the order they were asked for.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the probe.
      type: str
      sample: websocket
    passed:
      description: Whether the probe passed.
      type: bool
      sample: false
    duration_ms:
      description: How long the probe took in milliseconds.
      type: float
      sample: 3.4
    detail:
      description: What the probe found, in plain words.
      type: str
      sample: "handshake refused: HTTP 403 from /ws"
    status_code:
      description: The last HTTP status the probe saw (101 for an accepted websocket handshake); null when no answer came.
      type: int
      sample: 403
msg:
  description: One sentence on the verdict that names the failed probes and why they failed.
  returned: always
  type: str
  sample: "Suite failed: 3 of 4 probes passed against https://lb.example.com (75%, 85% needed); failed: websocket (handshake refused: HTTP 403 from /ws)."
"""

import warnings

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import (
    HAS_REQUESTS,
    HAS_WEBSOCKET_CLIENT,
    MODES,
    REQUESTS_IMPORT_ERROR,
    WEBSOCKET_CLIENT_IMPORT_ERROR,
    ProbeTarget,
    run_suite,
    select_probes,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            mode=dict(type="str", default="standard", choices=list(MODES)),
            probes=dict(type="list", elements="str"),
            success_threshold=dict(type="float", default=0.85),
            timeout=dict(type="float", default=10),
            headers=dict(type="dict"),
            api_key=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            expect_version=dict(type="str"),
            performance_requests=dict(type="int", default=5),
            performance_avg_ms=dict(type="float", default=1000),
            performance_p95_ms=dict(type="float", default=1500),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    try:
        names = select_probes(params["mode"], params["probes"])
        if "websocket" in names and not HAS_WEBSOCKET_CLIENT:
            module.fail_json(msg=missing_required_lib("websocket-client", reason="for the websocket probe"),
                             exception=str(WEBSOCKET_CLIENT_IMPORT_ERROR))
        target = ProbeTarget(
            params["url"],
            headers=params["headers"],
            api_key=params["api_key"],
            timeout=params["timeout"],
            verify_tls=params["validate_certs"],
            expect_version=params["expect_version"],
            performance_requests=params["performance_requests"],
            performance_avg_ms=params["performance_avg_ms"],
            performance_p95_ms=params["performance_p95_ms"],
        )
        if not target.verify_tls:
            # validate_certs=false is the user's explicit choice: no warning per request on stderr
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        report = run_suite(target, probe_names=names, success_threshold=params["success_threshold"])
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    report["mode"] = None if params["probes"] is not None else params["mode"]
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
