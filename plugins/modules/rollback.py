#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback
short_description: Flip an app's traffic back to an earlier release that is still warm in one of its colors
version_added: 0.1.0
description:
  - Sends all of an app's traffic back to the previous stable release in one call, or to O(target_version), and records
    the rollback in the app's deployment ledger (see M(leanvibe.deploy.deployment_state)).
  - "Without O(target_version): while a deployment is in progress, the version it replaces; otherwise the C(from_version)
    of the newest history entry whose outcome is C(promoted) or C(deployed), that is what served before the current
    release; otherwise the version of the color that is not active."
  - The target color is the one whose recorded version is the target. It is warm when every member of that color (the
    upstream members in C(<conf_dir>/<app>.state.json)) answers C(GET http://<member>/health) with status 200 and the
    target version; the members are checked concurrently within about O(slot_timeout) seconds.
  - When no recorded color is warm, the other colors are checked too, so that a release just redeployed to the idle color
    is found; the ledger then records the target version for that color.
  - When the target color is warm, all traffic goes to it (it becomes the stable color and no color stays canary)
    through the Lua admin socket, which takes milliseconds, or by a tested reload without Lua. Then the ledger is written
    (the deployment in progress, if any, is closed as C(rolled_back) and that is the rollback's entry; otherwise a new
    C(rollback) entry is added), and then, unless O(emergency=true), C(GET <lb_url>/health) must answer the target
    version O(check_count) times in a row within O(check_timeout) seconds. A failed check fails the module, but the
    traffic stays on the target color, the best known state.
  - When the target release is not warm, or no color runs it, nothing flips; the result says RV(needs_redeploy) with
    the idle color to redeploy it into (RV(target_color)), so that the playbook redeploys and calls the module again.
  - A O(target_version) that the ledger never saw fails with one sentence and changes nothing. When the target already
    serves 100 % of the traffic, nothing changes.
  - When another run holds the deploy lock, the rollback fails naming it (RV(lock_held_by)), unless O(emergency=true),
    which takes the lock over, or the lock is stale, or O(holder) is its holder.
  - With O(previous_run), the published result of the canary or blue-green run before this one (an AWX workflow passes
    it on from the failed node), and no O(target_version), nothing moves when that run already left traffic on the
    stable release (RV(already_clean)), since rolling back again would go one release too far.
  - With O(redeploy_errors), the target release failed to redeploy after an earlier RV(needs_redeploy); the module fails
    with them, and nothing changes.
  - When traffic moved to another release, the rollback's deployment event (RV(event)) goes to O(webhooks) from a
    process of its own on the controller, started after the module returned; the task does not wait for it, and a
    webhook that fails or is slow never fails the rollback.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
  - leanvibe.deploy.nginx
attributes:
  check_mode:
    support: full
    details: Checks the target color's members and predicts the flip, writing nothing.
  diff_mode:
    support: full
    details: Shows the weights before and after.
options:
  app:
    description: Name of the app. Lower-case letters, digits and underscores.
    type: str
    required: true
  environment:
    description: Name of the environment the ledger belongs to.
    type: str
    required: true
  ledger:
    description: Path of the app's deployment ledger on the host.
    type: path
    required: true
  target_version:
    description:
      - Version to go back to. Defaults to the previous stable release from the ledger (see the description); so does an
        empty value.
      - Text or a whole number, as a user gives it (C(-e), a survey); letters, digits, C(.), C(_), C(+) or C(-), without
        path separators or spaces. Any other value (V(true), or V(2.10), which YAML reads as the number 2.1) is refused.
    type: raw
  reason:
    description:
      - Why, in plain words; recorded in the ledger's history.
      - Defaults to C(emergency rollback) with O(emergency=true), C(manual rollback) otherwise.
    type: str
  previous_run:
    description:
      - The C(leanvibe_result) that the run before this one published (set_stats), when there was one. After a canary or
        blue-green run whose phase is C(rolled_back), C(failed_clean), C(planned), C(checked) or C(unchanged), and
        without O(target_version), nothing moves (RV(already_clean)).
      - Anything but a mapping is ignored.
    type: raw
  redeploy_errors:
    description:
      - Why the target release did not redeploy on app hosts, one sentence each, after an earlier call said
        RV(needs_redeploy). When not empty, the module fails with them and changes nothing.
    type: list
    elements: str
  webhooks:
    description:
      - Where the rollback's deployment event (RV(event)) goes when traffic moved to another release; URLs, or mappings
        with C(url) and C(headers) (the dashboard's C(/api/events) with its token).
      - Each gets a JSON POST with a timeout of 5 seconds from a detached process on the controller; the task does not
        wait for it. Not passed to the host.
    type: list
    elements: raw
  emergency:
    description: Skip the check through the LB after the flip, and take over any deploy lock.
    type: bool
    default: false
  autonomous:
    description: Whether no human asked for this rollback (an automatic gate did).
    type: bool
    default: false
  detected_at:
    description:
      - When the failure that calls for this rollback was detected, as an ISO 8601 time or seconds since the epoch
        (a canary passes the moment its gate failed).
      - Recorded in the history entry's C(rollback.detected), so the time to recover can be measured from it.
    type: str
  holder:
    description:
      - The caller's deploy lock identity, as returned by the P(leanvibe.deploy.run_identity#lookup) lookup; a canary run
        that holds the lock passes it.
    type: dict
    suboptions:
      run_id:
        description: Id of the run.
        type: str
        required: true
      controller:
        description: Host name of the controller the run started on.
        type: str
      pid:
        description: Process id of the run's ansible-playbook on the controller.
        type: int
      user:
        description: User who started the run.
        type: str
      started:
        description: When the run started. Accepted for convenience, not used.
        type: str
  lb_url:
    description:
      - Base URL of the LB for the check after the flip, for example C(http://127.0.0.1:8000).
      - When left out, there is no check after the flip.
    type: str
  check_timeout:
    description: Seconds within which C(<lb_url>/health) must answer the target version O(check_count) times in a row.
    type: float
    default: 10
  check_count:
    description: How many answers in a row with the target version the check after the flip needs.
    type: int
    default: 5
  slot_timeout:
    description: Seconds each health request to a member of the target color may take.
    type: float
    default: 2
notes:
  - Run it on the primary LB host, where the ledger lives. Other LBs of the app take the same weights with
    M(leanvibe.deploy.nginx_upstream).
seealso:
  - module: leanvibe.deploy.deployment_state
  - module: leanvibe.deploy.nginx_upstream
"""

EXAMPLES = r"""
- name: Roll back to the previous stable release
  leanvibe.deploy.rollback:
    app: demo
    environment: production
    ledger: /var/lib/leanvibe/state/demo.ledger.json
    reason: error rate after the 2.1.0 release
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe/nginx-admin.sock
    lb_url: http://127.0.0.1:8000
  register: rollback

- name: Redeploy the target release when it is not warm any more
  ansible.builtin.debug:
    msg: "redeploy {{ rollback.to_version }} to {{ rollback.target_color }}"
  when: rollback.needs_redeploy

- name: Emergency rollback after a failed canary node of an AWX workflow, announced without waiting
  leanvibe.deploy.rollback:
    app: demo
    environment: production
    ledger: /var/lib/leanvibe/state/demo.ledger.json
    emergency: true
    previous_run: "{{ leanvibe_result | default(none) }}"
    webhooks: "{{ deploy_webhooks }}"
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe/nginx-admin.sock
  register: rollback

- name: Publish what happened
  ansible.builtin.set_stats:
    data:
      leanvibe_result: {command: rollback, status: "{{ rollback.status }}", rolled_back: "{{ rollback.rolled_back }}"}

- name: Emergency rollback of a failed canary, to a given version
  leanvibe.deploy.rollback:
    app: demo
    environment: production
    ledger: /var/lib/leanvibe/state/demo.ledger.json
    target_version: 2.0.0
    reason: canary 5xx rate 28.6 % over 140 requests > limit 1.0 %
    emergency: true
    autonomous: true
    detected_at: "{{ ansible_failed_result.checked_at }}"  # in a rescue after a failed rollout_gate
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe/nginx-admin.sock
"""

RETURN = r"""
from_version:
  description: The version that was serving (the stable color's recorded version) before the rollback.
  returned: always
  type: str
  sample: 2.1.0
from_color:
  description: The stable color before the rollback.
  returned: always
  type: str
  sample: green
to_version:
  description: The version rolled back to (or that needs a redeploy).
  returned: always
  type: str
  sample: 2.0.0
to_color:
  description: The color that serves RV(to_version) after the rollback; null when nothing flipped because it is not warm.
  returned: always
  type: str
  sample: blue
target_color:
  description: With RV(needs_redeploy), the idle color to redeploy RV(to_version) into; null otherwise.
  returned: always
  type: str
  sample: null
target_source:
  description: Where the target version came from.
  returned: always
  type: str
  sample: the version before 2.1.0 (history entry 20261127T045812Z-3fa9c1)
needs_redeploy:
  description: Whether the target release must be redeployed to RV(target_color) before it can take the traffic.
  returned: always
  type: bool
  sample: false
reason:
  description: The reason recorded in the ledger.
  returned: always
  type: str
  sample: manual rollback
method:
  description:
    - How the weights were applied. V(live) in nginx's memory, V(reload) by a tested reload, V(file) for an nginx that is
      not running, V(none) when nothing flipped. In check mode, how they would be applied.
  returned: always
  type: str
  sample: live
duration_ms:
  description: Milliseconds from the start of the module to the weights applied.
  returned: always
  type: int
  sample: 14
total_ms:
  description: Milliseconds from the start of the module to its end, the check through the LB included.
  returned: always
  type: int
  sample: 61
flipped_at:
  description: When the weights were applied, in seconds since the epoch.
  returned: when the weights were flipped
  type: float
  sample: 1795582692.345
entry:
  description: The ledger's history entry of this rollback; null when nothing flipped.
  returned: always
  type: dict
  sample: {"id": "20261127T050101Z-0a1b2c", "environment": "production", "version": "2.0.0", "from_version": "2.1.0",
           "type": "rollback", "started": "2026-11-27T05:01:01.100Z", "finished": "2026-11-27T05:01:01.130Z",
           "duration_s": 0.03, "outcome": "rolled_back", "reasons": ["manual rollback"], "autonomous": false,
           "run_id": null, "steps": [],
           "rollback": {"detected": null, "started": "2026-11-27T05:01:01.100Z", "restored": "2026-11-27T05:01:01.114Z",
                        "duration_ms": 14}}
refused:
  description:
    - On failure, whether the rollback was refused before anything changed (a target version never deployed, no ledger,
      no earlier release, bad options), as opposed to a failure on the way.
  returned: on failure
  type: bool
  sample: true
check:
  description: The check through the LB after the flip (passed, url, attempts, in_a_row, elapsed_ms, detail); null when skipped.
  returned: always
  type: dict
  sample: {"passed": true, "url": "http://127.0.0.1:8000/health", "attempts": 5, "in_a_row": 5, "elapsed_ms": 21,
           "detail": "HTTP 200"}
warm:
  description: Per color checked, the answer of each member's health URL (C(healthy) or why not).
  returned: always
  type: dict
  sample: {"blue": {"127.0.0.1:9001": "healthy"}}
before:
  description: Weights, stable and canary color before the rollback.
  returned: always
  type: dict
  sample: {"weights": {"blue": 10, "green": 90}, "stable": "green", "canary": "blue"}
after:
  description: Weights, stable and canary color after the rollback.
  returned: always
  type: dict
  sample: {"weights": {"blue": 100, "green": 0}, "stable": "blue", "canary": null}
lock_taken_over_from:
  description: With O(emergency=true), the holder of the deploy lock that the rollback took over, or null.
  returned: when the weights were flipped
  type: dict
  sample: null
lock_held_by:
  description: The holder of the deploy lock (run_id, controller, pid, user) when the rollback failed because another run holds it.
  returned: on a lock conflict
  type: dict
  sample: {"run_id": "6f1c0c2e9d3a4b7f8e21c4a5b6d7e8f9", "controller": "ctl", "pid": 1234, "user": "deploy"}
already_clean:
  description: Whether nothing moved because the run before (O(previous_run)) already left traffic on the stable release.
  returned: always
  type: bool
  sample: false
status:
  description:
    - V(rolled_back) when traffic moved to another release, V(unchanged) when it did not (it already served the target,
      or RV(already_clean)), V(needs_redeploy) when the target must be redeployed first.
  returned: success
  type: str
  sample: rolled_back
rolled_back:
  description: Whether traffic moved to another release (RV(to_version) is not RV(from_version)).
  returned: success
  type: bool
  sample: true
event:
  description:
    - The deployment event of a rollback that moved traffic (C(event), C(version), C(to_version), C(weights),
      C(reasons), C(rollback_ms), C(text), C(app), C(environment), C(at)), as O(webhooks) receive it; null otherwise, and
      in check mode.
  returned: success
  type: dict
  sample: {"event": "rollback", "version": "2.1.0", "to_version": "2.0.0", "weights": {"2.0.0": 100},
           "reasons": ["manual rollback"], "rollback_ms": 14, "text": "demo rolled back in production from 2.1.0 to 2.0.0",
           "app": "demo", "environment": "production", "at": "2026-11-27T05:01:01.131Z"}
notified:
  description: How many O(webhooks) the detached sender was started for (0 when there was no RV(event) or no webhook).
  returned: success
  type: int
  sample: 1
msg:
  description: What happened, in one sentence.
  returned: always
  type: str
  sample: demo in production rolled back from 2.1.0 to 2.0.0 on blue in 14 ms (live); http://127.0.0.1:8000/health answers 2.0.0.
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.deploy_lock import HOLDER_OPTIONS
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError, LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import NginxError, WeightsDoc, nginx_argument_spec, nginx_from_params
from ansible_collections.leanvibe.deploy.plugins.module_utils.rollback import RollbackError, RollbackSpec, rollback


def main():
    started, started_wall = time.monotonic(), time.time()
    module = AnsibleModule(
        argument_spec=nginx_argument_spec(
            app=dict(type="str", required=True),
            environment=dict(type="str", required=True),
            ledger=dict(type="path", required=True),
            target_version=dict(type="raw"),
            reason=dict(type="str"),
            previous_run=dict(type="raw"),
            redeploy_errors=dict(type="list", elements="str"),
            # Taken out by the action plugin, which sends the event from the controller; never reaches the host.
            webhooks=dict(type="list", elements="raw", no_log=True),
            emergency=dict(type="bool", default=False),
            autonomous=dict(type="bool", default=False),
            detected_at=dict(type="str"),
            holder=dict(type="dict", options=HOLDER_OPTIONS),
            lb_url=dict(type="str"),
            check_timeout=dict(type="float", default=10),
            check_count=dict(type="int", default=5),
            slot_timeout=dict(type="float", default=2),
        ),
        supports_check_mode=True,
    )
    params = module.params
    nginx, admin = nginx_from_params(module)
    try:
        spec = RollbackSpec(params)
        result = rollback(spec, nginx, admin, module.check_mode, started, started_wall)
    except LockConflict as exc:
        module.fail_json(msg=str(exc), lock_held_by=exc.lock["holder"], lock=exc.lock)
    except RollbackError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except (ValidationError, LedgerError) as exc:
        module.fail_json(msg=str(exc), refused=True)
    except NginxError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="could not roll back app %s: %s." % (params["app"], exc))

    if module._diff and result["changed"]:
        result["diff"] = dict(before_header="weights", after_header="weights",
                              before=WeightsDoc(**result["before"]).render(), after=WeightsDoc(**result["after"]).render())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
