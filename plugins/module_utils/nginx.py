# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Traffic weights of an app's colors in nginx.

Per app, three files live in the LB's leanvibe conf dir:

* ``<app>.upstreams.conf``: the upstream groups (and, without Lua, the weighted
  route). A change here needs a reload.
* ``<app>.weights``: ``key=value`` lines that nginx's Lua code loads at start and
  at reload, so a restart keeps the weights.
* ``<app>.state.json``: what this module last applied (members, weights), the
  record it compares against.

With the Lua module, weights change in a shared dict through an admin endpoint
on a unix socket: no reload, so no keep-alive connection is dropped.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import socket
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    COLORS,
    ValidationError,
    atomic_write,
    read_text,
    restore_file,
    validate_color,
    validate_server,
    validate_weights,
)

ADMIN_PATH = "/leanvibe/weights/"


class NginxError(Exception):
    """nginx refused a change; the message is one sentence for the user."""


def upstream_name(app, color):
    return "leanvibe_%s_%s" % (app, color)


def route_variable(app):
    return "$leanvibe_%s_upstream" % app


class WeightsDoc:
    """Weights per color plus which color is stable and which (if any) is the canary."""

    def __init__(self, weights, stable, canary=None):
        self.weights = validate_weights(weights)
        self.stable = validate_color(stable, "stable color")
        if canary:
            validate_color(canary, "canary color")
            if canary == stable:
                raise ValidationError("canary color must differ from the stable color %s." % stable)
        self.canary = canary or None

    @classmethod
    def build(cls, weights, stable=None, canary=None):
        clean = validate_weights(weights)
        if stable is None:
            # The heavier color is stable; on a tie the first color.
            stable = max(COLORS, key=lambda color: (clean[color], -COLORS.index(color)))
        return cls(clean, stable, canary)

    @classmethod
    def parse(cls, text):
        values = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _sep, value = line.partition("=")
            values[key.strip()] = value.strip()
        try:
            weights = dict((color, int(values.get(color, "0"))) for color in COLORS)
        except ValueError:
            raise ValidationError("the weights text holds a weight that is not a number.")
        return cls(weights, values.get("stable"), values.get("canary") or None)

    def render(self, app=None):
        head = "# leanvibe.deploy weights for app %s; written by leanvibe.deploy.nginx_upstream\n" % app if app else ""
        lines = ["%s=%d" % (color, self.weights[color]) for color in COLORS]
        lines += ["stable=%s" % self.stable, "canary=%s" % (self.canary or "")]
        return head + "\n".join(lines) + "\n"

    def as_dict(self):
        return {"weights": dict(self.weights), "stable": self.stable, "canary": self.canary}

    def __eq__(self, other):
        return isinstance(other, WeightsDoc) and self.as_dict() == other.as_dict()


def validate_members(members):
    if not isinstance(members, dict):
        raise ValidationError("members must map each color to a list of host:port servers.")
    clean = {}
    for color in COLORS:
        servers = members.get(color)
        if not servers:
            raise ValidationError("members must list at least one server for %s." % color)
        if isinstance(servers, str):
            servers = [servers]
        clean[color] = [validate_server(server) for server in servers]
    for color in members:
        validate_color(color, "members color")
    return clean


def render_upstreams(app, members, options, weights_doc=None):
    """The http-level config of one app. `weights_doc` is given only without Lua (reload mode)."""
    lines = ["# Managed by leanvibe.deploy.nginx_upstream for app %s. Do not edit by hand." % app]
    for color in COLORS:
        lines.append("upstream %s {" % upstream_name(app, color))
        for server in members[color]:
            lines.append("    server %s max_fails=%d fail_timeout=%ds;" % (server, options["max_fails"], options["fail_timeout"]))
        if options["backup_other_color"]:
            # A dead color falls over to the other one for retryable requests (proxy_next_upstream).
            for server in members[COLORS[1 - COLORS.index(color)]]:
                if server not in members[color]:
                    lines.append("    server %s backup;" % server)
        lines.append("    keepalive %d;" % options["keepalive"])
        lines.append("    keepalive_timeout 60s;")
        lines.append("}")
    if weights_doc is not None:
        split_var = "$leanvibe_%s_split" % app
        lines.append('split_clients "${request_id}" %s {' % split_var)
        weighted = [color for color in COLORS if weights_doc.weights[color] > 0]
        for color in weighted[:-1]:
            lines.append("    %d%% %s;" % (weights_doc.weights[color], upstream_name(app, color)))
        lines.append("    * %s;" % upstream_name(app, weighted[-1]))
        lines.append("}")
        lines.append("map $http_x_canary %s {" % route_variable(app))
        if weights_doc.canary:
            lines.append("    always %s;" % upstream_name(app, weights_doc.canary))
        lines.append("    default %s;" % split_var)
        lines.append("}")
    return "\n".join(lines) + "\n"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class AdminUnavailable(Exception):
    """The Lua admin endpoint did not answer (nginx down, or no Lua module)."""


class AdminClient:
    """The LB's weights endpoint on a unix socket; it changes weights in nginx's memory."""

    def __init__(self, socket_path, timeout=2.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def _request(self, method, app, body=None):
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request(method, ADMIN_PATH + app, body=body, headers={"Content-Type": "text/plain"})
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise AdminUnavailable("admin socket %s: %s" % (self.socket_path, exc))
        finally:
            conn.close()
        return response.status, text

    def get(self, app):
        status, text = self._request("GET", app)
        if status == 404:
            return None
        if status != 200:
            raise AdminUnavailable("admin endpoint answered %d: %s" % (status, text.strip()))
        return WeightsDoc.parse(text)

    def put(self, app, doc):
        status, text = self._request("PUT", app, doc.render())
        if status != 200:
            raise NginxError("nginx refused the weights (HTTP %d): %s" % (status, text.strip()))
        return WeightsDoc.parse(text)


def nginx_reason(text):
    """The line of nginx's output that says why: the first [emerg], [alert], [crit] or [error] line, else the last one
    (not "configuration file ... test failed", which says nothing)."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    for line in lines:
        if any(level in line for level in ("[emerg]", "[alert]", "[crit]", "[error]")):
            return line
    return lines[-1] if lines else ""


class NginxControl:
    """`nginx -t` and `nginx -s reload` for the system instance or a user-level prefix."""

    def __init__(self, run_command, binary="nginx", prefix=None, conf=None, pid_file=None):
        self.run_command = run_command
        self.binary = binary
        self.prefix = prefix
        self.conf = conf
        self.pid_file = pid_file

    def _base(self):
        cmd = [self.binary]
        if self.prefix:
            cmd += ["-p", self.prefix]
        if self.conf:
            cmd += ["-c", self.conf]
        return cmd

    def is_running(self):
        if not self.pid_file:
            return True
        text = read_text(self.pid_file)
        if not text or not text.strip().isdigit():
            return False
        try:
            os.kill(int(text.strip()), 0)
        except OSError as exc:
            return exc.errno == errno.EPERM
        return True

    def test(self):
        rc, out, err = self.run_command(self._base() + ["-t", "-q"])
        if rc != 0:
            raise NginxError("nginx -t rejected the new config: %s" % (nginx_reason(err or out) or "rc=%d" % rc))

    def reload(self):
        rc, out, err = self.run_command(self._base() + ["-s", "reload"])
        if rc != 0:
            raise NginxError("nginx reload failed: %s" % ((err or out).strip() or "rc=%d" % rc))


# The upstream options' defaults, in one place: nginx_upstream's argument spec, the rollback module (a conf that
# names none) and roles/nginx_lb (which passes its variables only when they are set) all take them from here.
UPSTREAM_DEFAULTS = {"keepalive": 32, "max_fails": 3, "fail_timeout": 5, "backup_other_color": True}

# Options of every module that changes an LB's weights; documented by the leanvibe.deploy.nginx fragment.
NGINX_ARGUMENT_SPEC = dict(
    conf_dir=dict(type="path", required=True),
    admin_socket=dict(type="path"),
    nginx_binary=dict(type="path", default="nginx"),
    nginx_prefix=dict(type="path"),
    nginx_conf=dict(type="path"),
    pid_file=dict(type="path", default="/run/nginx.pid"),
)


def nginx_argument_spec(**extra):
    """The module's own options plus the nginx ones."""
    spec = dict((name, dict(value)) for name, value in NGINX_ARGUMENT_SPEC.items())
    spec.update(extra)
    return spec


def nginx_from_params(module):
    """(NginxControl, AdminClient or None) from a module's nginx options."""
    params = module.params
    nginx = NginxControl(module.run_command, params["nginx_binary"], params["nginx_prefix"], params["nginx_conf"], params["pid_file"])
    admin = AdminClient(params["admin_socket"]) if params["admin_socket"] else None
    return nginx, admin


class UpstreamFiles:
    def __init__(self, conf_dir, app):
        self.conf = os.path.join(conf_dir, "%s.upstreams.conf" % app)
        self.weights = os.path.join(conf_dir, "%s.weights" % app)
        self.state = os.path.join(conf_dir, "%s.state.json" % app)

    def snapshot(self):
        return dict((path, read_text(path)) for path in (self.conf, self.weights, self.state))

    def restore(self, snapshot):
        for path, content in snapshot.items():
            restore_file(path, content)


def read_state(files):
    text = read_text(files.state)
    if text is None:
        return None
    try:
        state = json.loads(text)
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        doc = WeightsDoc(state["weights"], state["stable"], state.get("canary"))
        members = validate_members(state["members"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("state file %s is corrupt (%s); fix or remove it." % (files.state, exc))
    return {"doc": doc, "members": members}


def wait_live(admin, app, doc, timeout=5.0):
    """After a reload, poll until nginx's memory serves `doc` (init_by_lua runs in the new master cycle)."""
    deadline = time.monotonic() + timeout
    live = None
    while time.monotonic() < deadline:
        try:
            live = admin.get(app)
        except AdminUnavailable:
            live = None
        if live == doc:
            return True
        time.sleep(0.02)
    return False


DEFAULT_WEIGHTS = {"blue": 100, "green": 0}


def apply_weights(app, conf_dir, doc, members, options, nginx, admin=None, check_mode=False, canary=None):
    """Bring nginx to `doc` and `members`; return a result dict. Raises NginxError after restoring the files.

    `doc` None keeps the weights in force (all to blue the first time), with `canary` as the canary
    color when given; `members` None keeps the members.
    """
    files = UpstreamFiles(conf_dir, app)
    previous = read_state(files)
    if doc is None:
        doc = previous["doc"] if previous else WeightsDoc.build(DEFAULT_WEIGHTS)
        if canary is not None:
            doc = WeightsDoc(doc.weights, doc.stable, canary)
    if members is None:
        if previous is None:
            raise ValidationError("members is required the first time the weights of app %s are set." % app)
        members = previous["members"]
    lua = admin is not None
    conf_text = render_upstreams(app, members, options, None if lua else doc)
    state_text = json.dumps({"members": members, "weights": doc.weights, "stable": doc.stable, "canary": doc.canary},
                            indent=2, sort_keys=True) + "\n"
    snapshot = files.snapshot()
    conf_changed = snapshot[files.conf] != conf_text
    files_changed = conf_changed or snapshot[files.weights] != doc.render(app) or snapshot[files.state] != state_text

    live_before = None
    running = nginx.is_running()
    if lua and running:
        try:
            live_before = admin.get(app)
        except AdminUnavailable:
            live_before = None
    before = live_before or (previous["doc"] if previous else None)
    live_changed = lua and running and live_before != doc
    result = {
        "applied_at": None,
        "before": before.as_dict() if before else None,
        "after": doc.as_dict(),
        "membership_changed": bool(previous) and previous["members"] != members,
        "changed": files_changed or live_changed,
        "method": "none",
        "diff": {"before": snapshot[files.conf] or "", "after": conf_text,
                 "before_header": files.conf, "after_header": files.conf},
    }
    if not result["changed"] and not check_mode:
        # Already in force: from now on is a window these weights certainly cover.
        result["applied_at"] = round(time.time(), 3)
    if not result["changed"] or check_mode:
        if check_mode and result["changed"]:
            result["method"] = "file" if not running else ("reload" if (conf_changed or not lua) else "live")
        return result

    os.makedirs(conf_dir, exist_ok=True)
    applied = None
    try:
        atomic_write(files.weights, doc.render(app))
        atomic_write(files.conf, conf_text)
        if conf_changed or not lua:
            nginx.test()
        if not running:
            result["method"] = "file"
        elif lua and not conf_changed:
            try:
                admin.put(app, doc)
                applied = "live"
            except AdminUnavailable:
                # Lua admin down while nginx runs: the reload loads the weights file instead.
                nginx.test()
                applied = "reload"
                nginx.reload()
        else:
            applied = "reload"
            nginx.reload()
            if lua and not wait_live(admin, app, doc):
                raise NginxError("nginx reloaded but did not serve the new weights within 5 s.")
        atomic_write(files.state, state_text)
    except Exception:
        files.restore(snapshot)
        _undo(applied, app, live_before, nginx, admin)
        raise
    result["method"] = applied or result["method"]
    # When nginx began to serve the new weights: a canary step's traffic window starts here.
    result["applied_at"] = round(time.time(), 3)
    return result


def _undo(applied, app, live_before, nginx, admin):
    """Best effort: put nginx back on what it served before a failed change."""
    try:
        if applied == "live" and live_before is not None:
            admin.put(app, live_before)
        elif applied == "reload":
            nginx.reload()
    except (NginxError, AdminUnavailable):
        pass
