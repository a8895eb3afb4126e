#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deployment_state
short_description: Read and write the deployment ledger of an app, and hold its deploy lock
version_added: 0.1.0
description:
  - Keeps the deployment ledger of one app in one environment, a JSON file on the primary LB host. It records which color
    is active, the version each color runs, the traffic weights, the deployment in progress with its steps, the deploy
    lock, and the history of every deployment, promotion and rollback with its outcome and reasons.
  - Every change is a read-modify-write under an exclusive C(flock) on C(<path>.lock), written atomically (a temp file in
    the same folder, fsync, rename, fsync of the folder) with mode 0640. Readers take a shared lock.
  - A ledger that is not JSON or not of schema 1 is refused with one sentence naming the file, and never overwritten.
  - "O(action=lock) takes the deploy lock for O(holder). When another run holds it, the lock is taken over only when it
    is stale (no heartbeat for its C(stale_after_s) seconds), when O(holder_dead=true) or when O(force=true); otherwise the
    module fails naming the holder, and the result carries RV(lock_held_by). The same holder refreshes the heartbeat."
  - O(action=unlock) releases the holder's own lock; the lock of another run is left alone with a warning.
  - O(action=begin) starts a deployment for the holder of the lock. A deployment left unfinished by an earlier run is first
    closed into the history as C(interrupted) with the step it stopped at, so no entry is ever lost.
  - O(action=step) appends a canary step to the deployment in progress; O(action=finish) closes it into the history with
    O(outcome) and applies O(active_color), O(versions) and O(weights).
  - O(action=record) appends a complete history entry without the lock, for emergency paths and first deploys.
  - The lock and its heartbeat are not lasting content. An action is reported changed only when the rest of the ledger
    changes, so O(action=lock) and O(action=unlock) report C(changed=false), while O(action=begin), O(action=step),
    O(action=finish) and O(action=record) report C(changed=true).
  - Times are ISO 8601 UTC with milliseconds; ids sort by time (C(20261127T045812Z-3fa9c1)).
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
    details: O(action=info) reads as usual; other actions predict the change and write nothing.
  diff_mode:
    support: full
    details: Shows the lasting content of the ledger (everything but the lock) before and after.
options:
  path:
    description:
      - Path of the ledger file on the host, for example C(/var/lib/leanvibe/state/demo.ledger.json).
      - Its folder must exist. The lock file C(<path>.lock) is created next to it.
    type: path
    required: true
  app:
    description: Name of the app. Lower-case letters, digits and underscores.
    type: str
    required: true
  environment:
    description: Name of the environment the ledger belongs to, for example C(production).
    type: str
    required: true
  action:
    description:
      - V(info) reads the ledger; a missing ledger reads as an empty one.
      - V(lock) and V(unlock) take and release the deploy lock of O(holder).
      - V(begin), V(step) and V(finish) start, advance and close the deployment of the lock holder.
      - V(record) appends a complete history entry without the lock.
    type: str
    choices: [info, lock, unlock, begin, step, finish, record]
    default: info
  holder:
    description:
      - The lock identity of the calling run, as returned by the P(leanvibe.deploy.run_identity#lookup) lookup.
      - Required for O(action=lock), O(action=unlock), O(action=begin), O(action=step) and O(action=finish).
    type: dict
    suboptions:
      run_id:
        description: Id of the run, the same for every task of one ansible-playbook run.
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
        description: When the run started. Accepted for convenience, not stored.
        type: str
  stale_after_s:
    description: Seconds without a heartbeat after which a lock taken by O(action=lock) may be taken over by another run.
    type: int
    default: 900
  force:
    description: Take the lock over from another run even when it is not stale.
    type: bool
    default: false
  holder_dead:
    description:
      - The caller has verified on the controller that the process of the current lock holder is gone, so its lock is
        taken over even when it is not stale.
    type: bool
    default: false
  deployment:
    description: The deployment that O(action=begin) starts or that O(action=record) records.
    type: dict
    suboptions:
      type:
        description: Kind of deployment.
        type: str
        choices: [deploy, promote, rollback]
        default: deploy
      version:
        description: Version being deployed.
        type: str
        required: true
      from_version:
        description: Version that served before; empty when there was none.
        type: str
      canary_color:
        description: Color the new version goes to.
        type: str
        choices: [blue, green]
      started:
        description: For O(action=record), when the deployment started (ISO 8601); defaults to now.
        type: str
  step:
    description:
      - The canary step that O(action=step) records, with its C(weight) (percentage sent to the canary) and its verdicts.
      - Verdicts go under C(verdicts), a free-form mapping; any other key besides C(weight) is kept as a verdict too.
    type: dict
  outcome:
    description: How the deployment ended, for O(action=finish) and O(action=record).
    type: str
    choices: [promoted, deployed, rolled_back, failed, interrupted]
  reasons:
    description: Why it ended that way, in plain sentences.
    type: list
    elements: str
  autonomous:
    description: Whether the outcome was decided without a human, for O(action=finish) and O(action=record).
    type: bool
    default: true
  active_color:
    description: The active color after O(action=finish) or O(action=record).
    type: str
    choices: [blue, green]
  versions:
    description:
      - Versions per color after O(action=finish) or O(action=record), merged into the recorded ones (a color left out
        keeps its version).
    type: dict
  weights:
    description:
      - Traffic weights per color after O(action=finish) or O(action=record), whole numbers that sum to 100; a color left
        out gets 0.
    type: dict
  history_limit:
    description: How many of the newest history entries RV(ledger) shows.
    type: int
    default: 20
notes:
  - Liveness of a lock holder is a question for the controller that ran it; see the C(holder_dead) option and the
    P(leanvibe.deploy.run_identity#lookup) lookup.
seealso:
  - module: leanvibe.deploy.rollback
  - plugin: leanvibe.deploy.run_identity
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Read the ledger
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
  register: ledger

- name: Take the deploy lock for this run
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: lock
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"

- name: Start a canary deployment
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: begin
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"
    deployment:
      type: deploy
      version: 2.1.0
      from_version: 2.0.0
      canary_color: green

- name: Record a step
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: step
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"
    step:
      weight: 10
      verdicts:
        probes: pass
        analysis: pass

- name: Close the deployment as promoted
  leanvibe.deploy.deployment_state:
    path: /var/lib/leanvibe/state/demo.ledger.json
    app: demo
    environment: production
    action: finish
    holder: "{{ lookup('leanvibe.deploy.run_identity') }}"
    outcome: promoted
    reasons: ["all steps passed"]
    active_color: green
    versions:
      green: 2.1.0
    weights:
      green: 100
"""

RETURN = r"""
ledger:
  description: The ledger after the action, with only the newest O(history_limit) history entries (newest last).
  returned: success
  type: dict
  sample:
    schema: 1
    app: demo
    environment: production
    active_color: green
    versions: {"blue": "1.0.0", "green": "2.0.0"}
    weights: {"blue": 0, "green": 100}
    in_progress: null
    lock: null
    history: []
lock:
  description: The deploy lock after the action (holder, acquired, heartbeat, stale_after_s), or null.
  returned: always
  type: dict
  sample: {"holder": {"run_id": "6f1c0c2e9d3a4b7f8e21c4a5b6d7e8f9", "controller": "ctl", "pid": 1234, "user": "deploy"},
           "acquired": "2026-11-27T04:58:12.345Z", "heartbeat": "2026-11-27T04:58:12.345Z", "stale_after_s": 900}
lock_stale:
  description: Whether the lock has had no heartbeat for its C(stale_after_s) seconds.
  returned: success
  type: bool
  sample: false
lock_held_by:
  description: The holder of the lock (run_id, controller, pid, user) when the action failed because another run holds it.
  returned: on a lock conflict
  type: dict
  sample: {"run_id": "6f1c0c2e9d3a4b7f8e21c4a5b6d7e8f9", "controller": "ctl", "pid": 1234, "user": "deploy"}
in_progress:
  description: The deployment in progress after the action, or null.
  returned: success
  type: dict
  sample: {"id": "20261127T045812Z-3fa9c1", "type": "deploy", "version": "2.1.0", "from_version": "2.0.0",
           "started": "2026-11-27T04:58:12.345Z", "canary_color": "green", "holder": {}, "steps": []}
entry:
  description: The history entry that O(action=finish) or O(action=record) wrote.
  returned: when O(action=finish) or O(action=record)
  type: dict
  sample: {"id": "20261127T045812Z-3fa9c1", "environment": "production", "version": "2.1.0", "from_version": "2.0.0",
           "type": "deploy", "started": "2026-11-27T04:58:12.345Z", "finished": "2026-11-27T05:03:40.002Z",
           "duration_s": 327.657, "outcome": "promoted", "reasons": ["all steps passed"], "autonomous": true,
           "run_id": "6f1c0c2e9d3a4b7f8e21c4a5b6d7e8f9", "steps": []}
interrupted:
  description: The unfinished deployment of an earlier run that O(action=begin) closed as C(interrupted), or null.
  returned: when O(action=begin)
  type: dict
  sample: null
step:
  description: The step that O(action=step) recorded (weight, at, verdicts).
  returned: when O(action=step)
  type: dict
  sample: {"weight": 10, "at": "2026-11-27T04:59:12.345Z", "verdicts": {"probes": "pass"}}
taken_over_from:
  description: The holder whose lock O(action=lock) took over, or null.
  returned: when O(action=lock)
  type: dict
  sample: null
msg:
  description: What happened, in one sentence.
  returned: always
  type: str
  sample: deployment lock of demo in production held by run 6f1c... (pid 1234 on host ctl, user deploy).
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.deploy_lock import HOLDER_OPTIONS
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError, LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            app=dict(type="str", required=True),
            environment=dict(type="str", required=True),
            action=dict(type="str", default="info", choices=["info", "lock", "unlock", "begin", "step", "finish", "record"]),
            holder=dict(type="dict", options=HOLDER_OPTIONS),
            stale_after_s=dict(type="int", default=900),
            force=dict(type="bool", default=False),
            holder_dead=dict(type="bool", default=False),
            deployment=dict(type="dict", options=dict(
                type=dict(type="str", default="deploy", choices=["deploy", "promote", "rollback"]),
                version=dict(type="str", required=True),
                from_version=dict(type="str"),
                canary_color=dict(type="str", choices=["blue", "green"]),
                started=dict(type="str"),
            )),
            step=dict(type="dict"),
            outcome=dict(type="str", choices=["promoted", "deployed", "rolled_back", "failed", "interrupted"]),
            reasons=dict(type="list", elements="str"),
            autonomous=dict(type="bool", default=True),
            active_color=dict(type="str", choices=["blue", "green"]),
            versions=dict(type="dict"),
            weights=dict(type="dict"),
            history_limit=dict(type="int", default=20),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        ledger = Ledger(params["path"], params["app"], params["environment"])
        result = run_action(ledger, params["action"], params, check_mode=module.check_mode)
    except LockConflict as exc:
        module.fail_json(msg=str(exc), lock_held_by=exc.lock["holder"], lock=exc.lock)
    except (ValidationError, LedgerError) as exc:
        module.fail_json(msg=str(exc))

    warning = result.pop("warning", None)
    if warning:
        module.warn(warning)
    diff = result.pop("diff", None)
    if module._diff and result["changed"] and diff is not None:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
