"""traffic_analysis on the access log of a real nginx, filled by real requests through the LB to real slots.

1.0.0 stays on blue (stable); a canary release goes to green with the app_slot role and takes 50 % of traffic.
A canary that answers half of its /api/v1/* requests with 500 must fail with a 5xx reason; a healthy one must pass.
"""

import http.client
import json
import os
import random
import time

import pytest

from conftest import LB_PORT, REPO, SLOT_PORTS

API_KEY = "local-dev-key"

# A release in the canary color, then a 50/50 split with blue stable and green the canary.
CANARY_PLAYBOOK = """---
- name: Run the canary release in green
  hosts: app
  vars_files:
    - {wiring}
  tasks:
    - name: Run the canary release
      ansible.builtin.include_role:
        name: leanvibe.deploy.app_slot
      vars:
        app_slot_color: green
        app_slot_version: "{{{{ canary_version }}}}"

- name: Split traffic between stable and canary
  hosts: lb
  vars_files:
    - {wiring}
  tasks:
    - name: Send half of the traffic to the canary
      ansible.builtin.include_role:
        name: leanvibe.deploy.nginx_lb
        tasks_from: weights
      vars:
        nginx_lb_weights_app: "{{{{ app_name }}}}"
        nginx_lb_weights: {{blue: 50, green: 50}}
        nginx_lb_stable_color: blue
        nginx_lb_canary_color: green
""".format(wiring=os.path.join(REPO, "playbooks", "vars", "wiring.yml"))


@pytest.fixture(scope="module")
def canary(local_env):
    """canary(version, app_env) puts `version` in green with `app_env` and splits traffic 50/50."""
    path = local_env.path("canary.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(CANARY_PLAYBOOK)

    def deploy(version, app_env):
        local_env.playbook(path, "-e", json.dumps({"canary_version": version, "app_env": app_env}), timeout=120)

    return deploy


def send_traffic(api_requests=240, health_requests=80, probes=20):
    """Real requests through the LB on one keep-alive connection, in a shuffled order -> {(kind, status): count}."""
    plan = [("api", "/api/v1/tasks", {})] * api_requests + [("health", "/health", {})] * health_requests
    plan += [("probe", "/api/v1/tasks", {"X-Canary": "always"})] * probes  # pinned to the canary: not user traffic
    random.Random(7).shuffle(plan)
    statuses = {}
    conn = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=10)
    try:
        for kind, uri, headers in plan:
            conn.request("GET", uri, headers=dict(headers, Authorization="Bearer " + API_KEY))
            response = conn.getresponse()
            response.read()
            statuses[(kind, response.status)] = statuses.get((kind, response.status), 0) + 1
    finally:
        conn.close()
    return statuses


def warm_up(color, count=5):
    """A few requests straight to a slot (not through the LB, so not in its log): the first ones are slower."""
    for _index in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", SLOT_PORTS[color], timeout=10)
        try:
            conn.request("GET", "/api/v1/tasks", headers={"Authorization": "Bearer " + API_KEY})
            conn.getresponse().read()
        finally:
            conn.close()


def analyse(local_env, **args):
    """The module through `ansible lb-local -m leanvibe.deploy.traffic_analysis`: (rc, result)."""
    values = {"log_path": local_env.path("nginx", "logs", "demo.access.log"), "app": "demo",
              "stable_color": "blue", "canary_color": "green"}
    values.update(args)
    rc, output = local_env.module("lb-local", "leanvibe.deploy.traffic_analysis", values)
    assert "=>" in output, output
    return rc, json.loads(output[output.index("=>") + 2:].strip().splitlines()[0])


def test_faulty_canary_fails_and_healthy_canary_passes(local_env, canary):
    canary("2.1.0", {"LEANVIBE_FAULT_ERROR_RATE": "0.5"})
    warm_up("green")
    faulty_since = since = time.time()
    statuses = send_traffic()
    assert statuses.get(("api", 500), 0) > 0 and statuses.get(("probe", 500), 0) > 0, statuses
    assert statuses.get(("api", 200), 0) > 0 and statuses.get(("health", 200), 0) == 80, statuses

    rc, faulty = analyse(local_env, since=since)
    assert rc == 0, faulty
    assert faulty["verdict"] == "fail" and faulty["passed"] is False and faulty["changed"] is False
    assert faulty["reasons"][0].startswith("canary 5xx rate "), faulty["reasons"]
    assert " > limit 1.0 % " in faulty["reasons"][0]
    assert faulty["stable"]["errors"] == 0 and faulty["stable"]["requests"] >= 20
    # Every request went through the LB's log: 320 user requests split between the colors, 20 probes left out.
    assert faulty["stable"]["requests"] + faulty["canary"]["requests"] == 320, (faulty["stable"], faulty["canary"])
    # Only the canary fails: every 500 a user request got is one of the canary's errors.
    assert faulty["canary"]["errors"] == statuses[("api", 500)]
    assert faulty["scan"]["synthetic_excluded"] == 20
    assert faulty["unreadable_lines"] == 0

    rc, failing = analyse(local_env, since=since, fail_on_verdict=True)
    assert rc != 0
    assert failing["msg"].startswith("canary green of demo failed: canary 5xx rate "), failing["msg"]

    canary("2.2.0", {})
    warm_up("green")
    since = time.time()
    statuses = send_traffic(probes=0)
    assert set(status for _kind, status in statuses) == {200}, statuses

    rc, healthy = analyse(local_env, since=since, fail_on_verdict=True)
    assert rc == 0, healthy
    assert healthy["verdict"] == "pass", healthy["reasons"]
    assert healthy["canary"]["errors"] == 0 and healthy["canary"]["requests"] >= 20
    assert healthy["reasons"][0].startswith("canary green held over ")
    assert healthy["window"]["since"] == pytest.approx(since, abs=0.001)

    # The faulty release's requests were outside that window; a window over both phases finds them again.
    # It starts at the faulty phase: the session's earlier tests also sent healthy traffic to green.
    rc, both = analyse(local_env, since=faulty_since)
    assert rc == 0 and both["canary"]["errors"] > 0 and both["verdict"] == "fail"
