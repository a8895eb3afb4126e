#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: slot_release
short_description: Run a release of an app in its blue or green slot on a host
version_added: 0.1.0
description:
  - Puts release O(version) of an app into slot O(slot) (V(blue) or V(green)) on a host and makes it serve.
  - Unpacks the release artifact into C(<base_dir>/releases/<version>), points C(<base_dir>/slots/<slot>) at it, stops
    the slot's old process gracefully (SIGTERM, O(drain_timeout), then SIGKILL), starts the new one detached with its
    environment, port, pid file and log file, and waits until its health URL answers 200 with the new version.
  - When the new release does not become healthy in O(health_timeout) seconds, the slot is put back on its previous
    release and the module fails with the tail of the process's log.
  - Processes are supervised by one C(supervisord) per O(base_dir), which needs neither systemd nor root. A process that
    dies unexpectedly is restarted; a process that fails at start is retried O(start_retries) times with backoff.
  - The same version already healthy in the slot, with the same command and environment, reports no change.
  - The former name C(leanvibe.deploy.canary_deploy) still works, with a deprecation warning, until 1.0.0.
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
requirements:
  - supervisor (the Python package) for the interpreter that runs the module
options:
  app:
    description: Name of the app. Lower-case letters, digits and underscores.
    type: str
    required: true
  slot:
    description: The slot to deploy into.
    type: str
    required: true
    choices: [blue, green]
  version:
    description:
      - Release version. Letters, digits, C(.), C(_), C(+) and C(-); no path separators or spaces.
      - Required when O(state=started).
    type: str
  artifact:
    description:
      - Path on the host of the release tarball. Its contents become the release folder.
      - Required when O(state=started).
    type: path
  base_dir:
    description: Root folder of the app on the host (releases, slots, logs and the supervisord live under it).
    type: path
    required: true
  port:
    description:
      - TCP port the slot's process listens on. Required when O(state=started).
      - A port held by any process other than this slot's fails the module before anything changes.
    type: int
  bind:
    description: Address the slot's process listens on.
    type: str
    default: 127.0.0.1
  command:
    description:
      - The program that serves the release, as a list of arguments.
      - The placeholders C({port}), C({bind}), C({release_dir}), C({version}), C({slot}) and C({app}) are replaced.
      - The process runs in the release folder.
      - Required when O(state=started).
    type: list
    elements: str
  env:
    description:
      - Environment of the slot's process. Values are hidden from logs and results; they may hold secrets.
    type: dict
    default: {}
  health_path:
    description: Path of the health URL on the slot's own port.
    type: str
    default: /health
  health_timeout:
    description: Seconds to wait for the health URL to answer 200.
    type: int
    default: 30
  health_check_version:
    description: Also require the health answer's JSON C(version) to be O(version), so an old process is never taken for the new one.
    type: bool
    default: true
  drain_timeout:
    description: Seconds between SIGTERM and SIGKILL when the slot's process stops.
    type: int
    default: 15
  start_retries:
    description: Attempts to start a process that exits at once, with growing backoff, before the slot is given up (like an on-failure restart policy).
    type: int
    default: 3
  start_seconds:
    description: Seconds a process must stay up to count as started.
    type: int
    default: 1
  state:
    description:
      - V(started) runs O(version) in the slot.
      - V(stopped) stops the slot's process gracefully and keeps its release, so that it can start again.
      - V(absent) stops it and forgets what the slot ran. Releases stay on disk.
    type: str
    default: started
    choices: [started, stopped, absent]
seealso:
  - module: leanvibe.deploy.nginx_upstream
"""

EXAMPLES = r"""
- name: Run release 2.0.0 in the green slot
  leanvibe.deploy.slot_release:
    app: demo
    slot: green
    version: 2.0.0
    artifact: /opt/leanvibe/artifacts/leanvibe-demo-2.0.0.tar.gz
    base_dir: /opt/leanvibe/demo
    port: 9002
    command: ["/opt/leanvibe/venv/bin/python", "-m", "leanvibe_demo", "--host", "{bind}", "--port", "{port}"]
    env:
      LEANVIBE_API_KEY: "{{ vault_api_key }}"
      LEANVIBE_DATA_DIR: /opt/leanvibe/demo/data

- name: Stop the old blue slot, keeping its release on disk
  leanvibe.deploy.slot_release:
    app: demo
    slot: blue
    base_dir: /opt/leanvibe/demo
    state: stopped
"""

RETURN = r"""
slot:
  description: The slot.
  returned: always
  type: str
  sample: green
version:
  description: The version the slot runs after the task.
  returned: always
  type: str
  sample: 2.0.0
previous_version:
  description: The version the slot ran before the task, or null.
  returned: always
  type: str
  sample: 1.0.0
pid:
  description: Pid of the slot's process.
  returned: when state is started
  type: int
  sample: 43121
port:
  description: The slot's port.
  returned: when state is started
  type: int
  sample: 9002
release_dir:
  description: Folder the release was unpacked into.
  returned: when state is started
  type: str
  sample: /opt/leanvibe/demo/releases/2.0.0
health_url:
  description: The slot's own health URL.
  returned: when state is started
  type: str
  sample: http://127.0.0.1:9002/health
health:
  description: How long the new process took to answer healthy.
  returned: when the slot was (re)started
  type: dict
  sample: {"url": "http://127.0.0.1:9002/health", "elapsed_ms": 812}
log_file:
  description: The process's log file.
  returned: always
  type: str
  sample: /opt/leanvibe/demo/logs/green.log
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.slot import SlotError, SlotManager, SlotSpec
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import (
    HAS_SUPERVISOR,
    SUPERVISOR_IMPORT_ERROR,
    SupervisorError,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            app=dict(type="str", required=True),
            slot=dict(type="str", required=True, choices=["blue", "green"]),
            version=dict(type="str"),
            artifact=dict(type="path"),
            base_dir=dict(type="path", required=True),
            port=dict(type="int"),
            bind=dict(type="str", default="127.0.0.1"),
            command=dict(type="list", elements="str"),
            env=dict(type="dict", default={}, no_log=True),
            health_path=dict(type="str", default="/health"),
            health_timeout=dict(type="int", default=30),
            health_check_version=dict(type="bool", default=True),
            drain_timeout=dict(type="int", default=15),
            start_retries=dict(type="int", default=3),
            start_seconds=dict(type="int", default=1),
            state=dict(type="str", default="started", choices=["started", "stopped", "absent"]),
        ),
        required_if=[("state", "started", ("version", "artifact", "port", "command"))],
        supports_check_mode=True,
    )
    if not HAS_SUPERVISOR:
        module.fail_json(msg=missing_required_lib("supervisor"), exception=str(SUPERVISOR_IMPORT_ERROR))

    try:
        spec = SlotSpec(module.params, check_mode=module.check_mode)
        manager = SlotManager(spec)
        if spec.state == "started":
            result = manager.deploy(check_mode=module.check_mode)
        else:
            result = manager.stop(remove=spec.state == "absent", check_mode=module.check_mode)
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    except (SlotError, SupervisorError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="slot %s of app %s: %s." % (module.params["slot"], module.params["app"], exc))

    before = result.pop("before")
    after = result.pop("after")
    if module._diff and result["changed"]:
        result["diff"] = dict(before=before, after=after, before_header="slot %s" % spec.slot, after_header="slot %s" % spec.slot)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
