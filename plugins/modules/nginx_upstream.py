#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nginx_upstream
short_description: Set the traffic weights of an app's blue and green colors in nginx
version_added: 0.1.0
description:
  - Sets the share of requests that nginx sends to each color of an app, across all the app's hosts.
  - With the Lua admin endpoint (O(admin_socket)), weights change in nginx's memory without a reload, so no keep-alive
    connection is dropped. The weights are also written atomically to a file that nginx loads at start and at reload.
  - A reload happens only when the upstream membership changes, or when nginx has no Lua admin endpoint. The reload path
    runs C(nginx -t) first; on any failure the previous files are put back and the module fails.
  - "Requests with the header C(X-Canary: always) go only to the canary color while one is set."
author:
  - LeanVibe Deploy engineers (@leanvibe)
extends_documentation_fragment:
  - leanvibe.deploy.attributes
  - leanvibe.deploy.nginx
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  app:
    description:
      - Name of the app. Lower-case letters, digits and underscores; it names the nginx upstream groups
        C(leanvibe_<app>_blue) and C(leanvibe_<app>_green).
    type: str
    required: true
  weights:
    description:
      - Percentage of traffic per color, whole numbers from 0 to 100 that sum to 100, for example 90 for C(blue) and 10 for C(green).
      - A color left out gets 0.
      - When left out, the weights in force are kept (all traffic to blue the first time), so that a membership change
        alone does not move traffic.
    type: dict
  stable_color:
    description:
      - The color that serves the stable release. Defaults to the color with the larger weight (blue on a tie).
    type: str
    choices: [blue, green]
  canary_color:
    description:
      - "The color under test. While it is set, requests with C(X-Canary: always) go only to it, whatever the weights."
      - With O(weights) left out, only the canary color changes and the weights in force are kept.
      - With O(weights) given and this left out, no color is the canary.
    type: str
    choices: [blue, green]
  members:
    description:
      - Upstream servers per color, as lists of C(host:port) under C(blue) and C(green).
      - Required the first time; when left out the members from the last run are kept.
      - A change of members needs a reload.
    type: dict
  keepalive:
    description: Idle keep-alive connections to the upstream servers that each worker keeps open.
    type: int
    default: 32
  max_fails:
    description:
      - Failed attempts within O(fail_timeout) seconds after which a server is considered down for O(fail_timeout) seconds.
      - More than one, so that a single transient error cannot take the only server of a color out of rotation while the
        other color (its backup) is stopped.
    type: int
    default: 3
  fail_timeout:
    description: Seconds a failed server stays out of rotation.
    type: int
    default: 5
  backup_other_color:
    description:
      - List the other color's servers as C(backup) in each color's upstream, so that idempotent requests to a dead
        color are retried on the other one (C(proxy_next_upstream)) instead of failing.
    type: bool
    default: true
notes:
  - The nginx_lb role of this collection renders the server blocks, the Lua code and the admin endpoint this module uses.
seealso:
  - module: leanvibe.deploy.slot_release
"""

EXAMPLES = r"""
- name: Send 10 % of traffic to the green canary
  leanvibe.deploy.nginx_upstream:
    app: demo
    weights:
      blue: 90
      green: 10
    stable_color: blue
    canary_color: green
    members:
      blue: ["10.0.0.5:9001", "10.0.0.6:9001"]
      green: ["10.0.0.5:9002", "10.0.0.6:9002"]
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe/nginx-admin.sock

- name: Switch all traffic to green, keeping the members from the last run
  leanvibe.deploy.nginx_upstream:
    app: demo
    weights:
      green: 100
    conf_dir: /etc/nginx/leanvibe
    admin_socket: /run/leanvibe/nginx-admin.sock
"""

RETURN = r"""
before:
  description: Weights, stable and canary color before the change; null on the first run.
  returned: always
  type: dict
  sample: {"weights": {"blue": 100, "green": 0}, "stable": "blue", "canary": null}
after:
  description: Weights, stable and canary color after the change.
  returned: always
  type: dict
  sample: {"weights": {"blue": 90, "green": 10}, "stable": "blue", "canary": "green"}
method:
  description:
    - How the change was applied. V(live) in nginx's memory without a reload, V(reload) by a tested reload,
      V(file) written for an nginx that is not running, V(none) when nothing needed to change.
    - In check mode, how it would be applied.
  returned: always
  type: str
  sample: live
applied_at:
  description:
    - When nginx began to serve the new weights and members, in seconds since the epoch (UTC), as the module saw it;
      when they were already in force, the moment the module found them so. A window that starts here holds only
      traffic under these weights.
    - V(null) in check mode.
  returned: always
  type: float
  sample: 1764763200.125
membership_changed:
  description: Whether the upstream servers changed (which needs a reload).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError, validate_app_name
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import (
    UPSTREAM_DEFAULTS,
    NginxError,
    WeightsDoc,
    apply_weights,
    nginx_argument_spec,
    nginx_from_params,
    validate_members,
)


def main():
    module = AnsibleModule(
        argument_spec=nginx_argument_spec(
            app=dict(type="str", required=True),
            weights=dict(type="dict"),
            stable_color=dict(type="str", choices=["blue", "green"]),
            canary_color=dict(type="str", choices=["blue", "green"]),
            members=dict(type="dict"),
            keepalive=dict(type="int", default=UPSTREAM_DEFAULTS["keepalive"]),
            max_fails=dict(type="int", default=UPSTREAM_DEFAULTS["max_fails"]),
            fail_timeout=dict(type="int", default=UPSTREAM_DEFAULTS["fail_timeout"]),
            backup_other_color=dict(type="bool", default=UPSTREAM_DEFAULTS["backup_other_color"]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        app = validate_app_name(params["app"])
        doc = None
        if params["weights"] is not None:
            doc = WeightsDoc.build(params["weights"], params["stable_color"], params["canary_color"])
        elif params["stable_color"]:
            raise ValidationError("stable_color needs weights.")
        members = validate_members(params["members"]) if params["members"] is not None else None
        for name in ("keepalive", "max_fails", "fail_timeout"):
            if params[name] < 0:
                raise ValidationError("%s must not be negative." % name)
    except ValidationError as exc:
        module.fail_json(msg=str(exc))

    nginx, admin = nginx_from_params(module)
    options = dict((name, params[name]) for name in ("keepalive", "max_fails", "fail_timeout", "backup_other_color"))
    try:
        result = apply_weights(app, params["conf_dir"], doc, members, options, nginx, admin, module.check_mode, params["canary_color"])
    except (ValidationError, NginxError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="could not write the nginx files of app %s in %s: %s." % (app, params["conf_dir"], exc))

    diff = result.pop("diff")
    if module._diff and result["changed"]:
        result["diff"] = [
            dict(before_header="weights", after_header="weights",
                 before=WeightsDoc(**result["before"]).render() if result["before"] else "", after=WeightsDoc(**result["after"]).render()),
            diff,
        ]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
