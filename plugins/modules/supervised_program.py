#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: supervised_program
short_description: Keep a long-lived program running under the supervisord of a base dir
version_added: 0.1.0
description:
  - Runs a long-lived program, a service such as the monitoring dashboard, under the C(supervisord) of O(base_dir),
    the same supervisord that M(leanvibe.deploy.slot_release) uses for app slots. It needs neither systemd nor root.
  - supervisord restarts the program whenever it exits, retries a program that fails at start 3 times with backoff, and
    stops it with SIGTERM, 15 seconds to finish, then SIGKILL. Its output goes to C(<base_dir>/logs/<name>.log).
  - The program is restarted when its arguments, environment or O(fingerprint) change; with the same definition
    already running (and healthy, with O(health_url)) nothing changes.
  - After a (re)start the module waits until the program runs and, with O(health_url), answers 200 there. When it does
    not within O(health_timeout) seconds, its previous definition is put back and the module fails with the tail of
    the program's log.
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
  - supervisor (the Python package) for the interpreter that runs the module and for O(python)
options:
  name:
    description:
      - Name of the program in supervisord. Letters, digits, C(_) and C(-), starting with a letter or digit, at most 64 characters.
      - A program of that name that another module defined (an app slot) is never taken over.
    type: str
    required: true
  base_dir:
    description: Absolute folder of the supervisord (C(<base_dir>/supervisor)), the program's log and its recorded definition.
    type: path
    required: true
  argv:
    description:
      - The program and its arguments, run in O(base_dir) as they are, without a shell.
      - Required when O(state=started) or O(state=restarted).
    type: list
    elements: str
  env:
    description:
      - Environment variables of the program. Values are hidden from logs, results and diffs; they may hold secrets.
    type: dict
    default: {}
  fingerprint:
    description:
      - Any text that stands for what the program reads at start, for example the checksum of its config file.
      - When it differs from the last run's, the program is restarted.
    type: str
  health_url:
    description:
      - URL that answers 200 once the program serves, checked after each (re)start and on every run.
      - Left out, the program counts as up once supervisord reports it running for a second.
    type: str
  health_timeout:
    description: Seconds to wait after a (re)start for the program to run and to answer 200 at O(health_url).
    type: int
    default: 30
  python:
    description:
      - Python interpreter that runs supervisord and the program's launcher; it needs the C(supervisor) package.
      - Defaults to the interpreter that runs the module.
    type: path
  state:
    description:
      - V(started) runs the program as defined, restarting it when the definition or O(fingerprint) changed.
      - V(restarted) also restarts it when nothing changed.
      - V(stopped) stops it gracefully and takes it out of supervisord, keeping its recorded definition.
      - V(absent) also forgets the recorded definition. The log stays.
    type: str
    default: started
    choices: [started, stopped, restarted, absent]
seealso:
  - module: leanvibe.deploy.slot_release
"""

EXAMPLES = r"""
- name: Keep the monitoring service running, restarted when its config changes
  leanvibe.deploy.supervised_program:
    name: leanvibe-monitor
    base_dir: /opt/leanvibe/monitoring
    argv: ["/opt/leanvibe/venv/bin/python", "-m", "leanvibe_monitor", "--config", "/opt/leanvibe/monitoring/monitor.json"]
    env:
      LEANVIBE_COLLECTIONS_PATH: /opt/leanvibe/collections
    fingerprint: "{{ monitor_config.checksum }}"
    health_url: http://127.0.0.1:5000/healthz
    health_timeout: 60

- name: Stop it, keeping its definition
  leanvibe.deploy.supervised_program:
    name: leanvibe-monitor
    base_dir: /opt/leanvibe/monitoring
    state: stopped
"""

RETURN = r"""
name:
  description: The program's name in supervisord.
  returned: always
  type: str
  sample: leanvibe-monitor
state:
  description: The state asked for.
  returned: always
  type: str
  sample: started
pid:
  description: Pid of the program.
  returned: when state is started or restarted
  type: int
  sample: 43121
log_file:
  description: The program's log file.
  returned: always
  type: str
  sample: /opt/leanvibe/monitoring/logs/leanvibe-monitor.log
health_url:
  description: The URL checked for health, or null.
  returned: when state is started or restarted
  type: str
  sample: http://127.0.0.1:5000/healthz
health:
  description: How long the program took to run (and answer healthy) after the (re)start.
  returned: when the program was (re)started
  type: dict
  sample: {"url": "http://127.0.0.1:5000/healthz", "elapsed_ms": 1412}
reason:
  description: Why the program could not be brought to the wanted state, in one sentence (C(msg) without the log tail).
  returned: when the program did not become healthy or running
  type: str
  sample: "program leanvibe-monitor did not become healthy at http://127.0.0.1:5000/healthz within 30s (connection refused);
    the program was put back as it was."
log_tail:
  description: The last lines the program logged during the failed (re)start.
  returned: when the program did not become healthy or running
  type: str
  sample: "leanvibe-monitor: cannot bind 127.0.0.1:5000"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.program import ProgramError, manage
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import (
    HAS_SUPERVISOR,
    SUPERVISOR_IMPORT_ERROR,
    SupervisorError,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            base_dir=dict(type="path", required=True),
            argv=dict(type="list", elements="str"),
            env=dict(type="dict", default={}, no_log=True),
            fingerprint=dict(type="str"),
            health_url=dict(type="str"),
            health_timeout=dict(type="int", default=30),
            python=dict(type="path"),
            state=dict(type="str", default="started", choices=["started", "stopped", "restarted", "absent"]),
        ),
        required_if=[("state", "started", ("argv",)), ("state", "restarted", ("argv",))],
        supports_check_mode=True,
    )
    if not HAS_SUPERVISOR:
        module.fail_json(msg=missing_required_lib("supervisor"), exception=str(SUPERVISOR_IMPORT_ERROR))

    try:
        result = manage(module.params, check_mode=module.check_mode)
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    except ProgramError as exc:
        module.fail_json(msg=str(exc), log_file=exc.log_file, **exc.result_keys())
    except SupervisorError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="program %s under %s: %s." % (module.params["name"], module.params["base_dir"], exc))

    before = result.pop("before")
    after = result.pop("after")
    if module._diff and result["changed"]:
        header = "program %s" % result["name"]
        result["diff"] = dict(before=before, after=after, before_header=header, after_header=header)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
