#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: traffic_analysis
short_description: Judge a canary color from the requests in the load balancer's access log
version_added: 0.1.0
description:
  - Reads the JSON access log of the nginx load balancer (log format C(leanvibe_json) of the C(leanvibe.deploy.nginx_lb)
    role) over a time window, splits the requests of an app by the color group nginx sent them to
    (C(leanvibe_<app>_<color>)) into stable and canary, and judges the canary like the request-success-rate and
    request-duration checks of Flagger or an analysis run of Argo Rollouts.
  - Per side it reports the number of requests, the 5xx responses, the 5xx rate and the 50th, 95th and 99th percentiles
    and the mean of the request time. Percentiles use the nearest-rank method, the smallest request time such that at
    least that share of the requests took at most as long; no interpolation.
  - "The canary passes when its 5xx rate is at most the larger of O(max_error_rate) and O(error_rate_factor) times the
    stable 5xx rate, and its 95th percentile is at most O(p95_factor) times the stable one plus O(p95_slack_ms), and at
    most O(max_p95_ms) when that is set."
  - "A request nginx had to retry on another server (C(proxy_next_upstream): the canary refused, reset or timed out,
    several servers in C(upstream_addr)), or that a server of the other color answered (the canary's servers were marked
    down and the other color's C(backup) servers took it; known only with O(members)), is a failover of its side. No
    client saw an error, but the canary failed it: its failover rate is judged by the same limits as its 5xx rate.
    A canary that crashes and is restarted by its supervisor within a step is caught this way."
  - With fewer than O(min_requests) canary requests in the window the verdict follows O(insufficient_data). With fewer
    than O(min_requests) stable requests the limits relative to stable are not used, only O(max_error_rate) and
    O(max_p95_ms); the reasons say so.
  - Requests are placed in the window by their end time (C(msec)). The log is read backwards from its end in blocks and
    reading stops at the first line more than 5 seconds older than the window start, so the cost follows the size of the
    window, not of the file. When the file starts inside the window (it was rotated), the previous generation
    C(<log_path>.1) is read too when it exists and is not compressed.
  - Lines that are not JSON or miss one of the fields C(msec), C(app), C(upstream), C(status) or C(request_time) are
    counted in RV(unreadable_lines) and otherwise ignored.
  - Read-only; it never reports a change.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
    details: The analysis is read-only and runs in check mode too.
  diff_mode:
    support: none
options:
  log_path:
    description:
      - The load balancer's JSON access log of the app, for example C(/var/log/nginx/demo.access.log).
    type: path
    required: true
  app:
    description:
      - Name of the app, as in the log's C(app) field and in its upstream groups C(leanvibe_<app>_blue) and
        C(leanvibe_<app>_green).
    type: str
    required: true
  stable_color:
    description: The color that serves the stable release.
    type: str
    required: true
    choices: [blue, green]
  canary_color:
    description: The color under test. It must differ from O(stable_color).
    type: str
    required: true
    choices: [blue, green]
  since:
    description:
      - Start of the window, as epoch seconds (a number such as V(1717171717.5)) or an ISO 8601 time such as
        V(2024-05-31T16:08:37Z). An ISO time without an offset is taken as UTC.
      - Give either O(since) or O(window_s).
    type: raw
  window_s:
    description:
      - Length of the window in seconds, ending at O(until) or, without it, now.
      - Give either O(since) or O(window_s).
    type: float
  until:
    description:
      - End of the window, in the same forms as O(since). Defaults to now.
    type: raw
  members:
    description:
      - The upstream servers of each color, as lists of C(host:port) under C(blue) and C(green), as nginx logs them in
        C(upstream_addr). With them, a request that the other color's server answered counts as a failover of its side.
      - Without them, only requests that nginx retried count as failovers.
    type: dict
  exclude_synthetic:
    description:
      - "Leave out requests sent with C(X-Canary: always) (the log's C(canary_header) field): those are probes pinned to
        the canary, not user traffic."
    type: bool
    default: true
  max_error_rate:
    description:
      - Absolute 5xx rate the canary may always reach, from V(0) to V(1).
    type: float
    default: 0.01
  error_rate_factor:
    description:
      - The canary may also reach this many times the stable 5xx rate, when that is higher than O(max_error_rate).
    type: float
    default: 2.0
  p95_factor:
    description:
      - The canary's 95th percentile request time may be this many times the stable one, plus O(p95_slack_ms).
    type: float
    default: 1.5
  p95_slack_ms:
    description:
      - Milliseconds added to O(p95_factor) times the stable 95th percentile, so that very fast stable requests do not
        make the limit unreachably small.
    type: float
    default: 50
  max_p95_ms:
    description:
      - Absolute limit of the canary's 95th percentile request time in milliseconds. No absolute limit when unset.
    type: float
  min_requests:
    description:
      - Requests a side needs in the window to be judged (at least 1 is always needed).
      - Fewer canary requests make the verdict follow O(insufficient_data). Fewer stable requests turn off the limits
        relative to stable.
    type: int
    default: 20
  insufficient_data:
    description:
      - The verdict when the canary has fewer than O(min_requests) requests in the window.
    type: str
    choices: [inconclusive, fail, pass]
    default: inconclusive
  fail_on_verdict:
    description:
      - Fail the task when the verdict is V(fail), with the reasons as its message. Otherwise the task succeeds and the
        playbook decides from RV(verdict) or RV(passed).
    type: bool
    default: false
notes:
  - The nginx_lb role of this collection writes the access log in the format this module reads, one file per app.
seealso:
  - module: leanvibe.deploy.nginx_upstream
  - module: leanvibe.deploy.slot_release
"""

EXAMPLES = r"""
- name: Judge the green canary over the last 5 minutes
  leanvibe.deploy.traffic_analysis:
    log_path: /var/log/nginx/demo.access.log
    app: demo
    stable_color: blue
    canary_color: green
    window_s: 300
  register: analysis

- name: Roll back when the canary failed
  leanvibe.deploy.nginx_upstream:
    app: demo
    weights:
      blue: 100
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe-nginx-admin.sock
  when: analysis.verdict == 'fail'

- name: Fail the play on a bad canary since the weight change, with stricter limits
  leanvibe.deploy.traffic_analysis:
    log_path: /var/log/nginx/demo.access.log
    app: demo
    stable_color: blue
    canary_color: green
    since: "2024-05-31T16:08:37Z"
    max_error_rate: 0.005
    max_p95_ms: 500
    min_requests: 100
    insufficient_data: fail
    fail_on_verdict: true
"""

RETURN = r"""
verdict:
  description: V(pass), V(fail), or V(inconclusive) when the canary had too few requests and O(insufficient_data) says so.
  returned: success
  type: str
  sample: fail
passed:
  description: Whether RV(verdict) is V(pass).
  returned: success
  type: bool
  sample: false
reasons:
  description: Plain sentences with the numbers behind the verdict. On a pass, one sentence says which limits held.
  returned: success
  type: list
  elements: str
  sample: ["canary 5xx rate 28.6 % over 140 requests > limit 1.0 % (max of max_error_rate 1.0 % and 2 × stable 5xx rate 0.0 %)"]
stable:
  description: The stable side's requests in the window. The rate and the times are null without requests.
  returned: success
  type: dict
  contains:
    color:
      description: The color.
      type: str
    requests:
      description: Requests in the window.
      type: int
    errors:
      description: Responses with a status of 500 or more.
      type: int
    error_rate:
      description: RV(stable.errors) divided by RV(stable.requests).
      type: float
    failovers:
      description: Requests that nginx had to retry on another server, or that the other color answered (see O(members)).
      type: int
    p50_ms:
      description: Median request time in milliseconds (nearest rank).
      type: float
    p95_ms:
      description: 95th percentile request time in milliseconds (nearest rank).
      type: float
    p99_ms:
      description: 99th percentile request time in milliseconds (nearest rank).
      type: float
    avg_ms:
      description: Mean request time in milliseconds.
      type: float
  sample: {"color": "blue", "requests": 300, "errors": 0, "error_rate": 0.0, "failovers": 0, "p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": 9.0, "avg_ms": 2.4}
canary:
  description: The canary side's requests in the window, with the same keys as RV(stable).
  returned: success
  type: dict
  sample: {"color": "green", "requests": 140, "errors": 40, "error_rate": 0.285714, "failovers": 0, "p50_ms": 2.0, "p95_ms": 6.0,
           "p99_ms": 11.0, "avg_ms": 2.7}
unreadable_lines:
  description: Lines near the window that are not JSON or miss a needed field; counted, otherwise ignored.
  returned: success
  type: int
  sample: 0
window:
  description: The window analysed, as epoch seconds and as ISO 8601 UTC times.
  returned: success
  type: dict
  contains:
    since:
      description: Start of the window in epoch seconds.
      type: float
    until:
      description: End of the window in epoch seconds; now when O(until) was not given.
      type: float
    since_iso:
      description: RV(window.since) as an ISO 8601 UTC time.
      type: str
    until_iso:
      description: RV(window.until) as an ISO 8601 UTC time.
      type: str
  sample: {"since": 1717171717.5, "until": 1717172017.5, "since_iso": "2024-05-31T16:08:37.500Z", "until_iso": "2024-05-31T16:13:37.500Z"}
limits:
  description: The limits the canary was judged by.
  returned: success
  type: dict
  sample: {"max_error_rate": 0.01, "error_rate_factor": 2.0, "p95_factor": 1.5, "p95_slack_ms": 50.0, "max_p95_ms": null,
           "min_requests": 20, "insufficient_data": "inconclusive"}
scan:
  description: How much of the log was read, and the requests of the window that were left out.
  returned: success
  type: dict
  contains:
    files:
      description: The files read, newest first (O(log_path), then C(<log_path>.1) when the window reaches into it).
      type: list
      elements: str
    bytes_read:
      description: Bytes read from the files.
      type: int
    lines_read:
      description: Lines read from the files.
      type: int
    stopped_early:
      description: Whether reading stopped at a line older than the window, before the start of the file.
      type: bool
    truncated:
      description: Whether the file shrank while it was read (truncated or rotated); what was read is used.
      type: bool
    synthetic_excluded:
      description: "Requests of the window sent with C(X-Canary: always) and left out (O(exclude_synthetic))."
      type: int
    other_requests:
      description: Requests of the app in the window that went to neither color's upstream group.
      type: int
  sample: {"files": ["/var/log/nginx/demo.access.log"], "bytes_read": 131072, "lines_read": 420, "stopped_early": true,
           "truncated": false, "synthetic_excluded": 12, "other_requests": 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.traffic import analyse

LIMITS = ("max_error_rate", "error_rate_factor", "p95_factor", "p95_slack_ms", "max_p95_ms", "min_requests", "insufficient_data")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            log_path=dict(type="path", required=True),
            app=dict(type="str", required=True),
            stable_color=dict(type="str", required=True, choices=["blue", "green"]),
            canary_color=dict(type="str", required=True, choices=["blue", "green"]),
            since=dict(type="raw"),
            window_s=dict(type="float"),
            until=dict(type="raw"),
            members=dict(type="dict"),
            exclude_synthetic=dict(type="bool", default=True),
            max_error_rate=dict(type="float", default=0.01),
            error_rate_factor=dict(type="float", default=2.0),
            p95_factor=dict(type="float", default=1.5),
            p95_slack_ms=dict(type="float", default=50),
            max_p95_ms=dict(type="float"),
            min_requests=dict(type="int", default=20),
            insufficient_data=dict(type="str", choices=["inconclusive", "fail", "pass"], default="inconclusive"),
            fail_on_verdict=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = analyse(
            params["log_path"], params["app"], params["stable_color"], params["canary_color"],
            since=params["since"], window_s=params["window_s"], until=params["until"],
            limits=dict((name, params[name]) for name in LIMITS), exclude_synthetic=params["exclude_synthetic"],
            members=params["members"])
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="could not read log_path %s: %s." % (params["log_path"], exc.strerror or exc))

    if params["fail_on_verdict"] and result["verdict"] == "fail":
        result["msg"] = "canary %s of %s failed: %s." % (params["canary_color"], params["app"], "; ".join(result["reasons"]))
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
