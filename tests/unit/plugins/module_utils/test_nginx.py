"""Weights documents, upstream rendering, the admin client, nginx control and apply_weights (module_utils/nginx.py)."""

import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from plugin_test_helpers import FakeAdmin
from ansible_collections.leanvibe.deploy.plugins.module_utils import nginx as nginx_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import (
    ADMIN_PATH,
    AdminClient,
    AdminUnavailable,
    NginxControl,
    NginxError,
    UpstreamFiles,
    WeightsDoc,
    apply_weights,
    read_state,
    render_upstreams,
    route_variable,
    upstream_name,
    validate_members,
    wait_live,
)

MEMBERS = {"blue": ["10.0.0.5:9001", "10.0.0.6:9001"], "green": ["10.0.0.5:9002", "10.0.0.6:9002"]}
OPTIONS = {"keepalive": 32, "max_fails": 1, "fail_timeout": 5, "backup_other_color": True}


# --- names --------------------------------------------------------------------------------


def test_names():
    assert upstream_name("demo", "green") == "leanvibe_demo_green"
    assert route_variable("shop_2") == "$leanvibe_shop_2_upstream"


# --- WeightsDoc ---------------------------------------------------------------------------


def test_weights_doc_validates_and_fills():
    doc = WeightsDoc({"green": 100}, "green")
    assert doc.as_dict() == {"weights": {"blue": 0, "green": 100}, "stable": "green", "canary": None}


@pytest.mark.parametrize("weights,stable,canary,fragment", [
    ({"blue": 90, "green": 20}, "blue", None, "sum to 110"),
    ({"blue": 100}, "red", None, "stable color 'red' is unknown"),
    ({"blue": 100}, None, None, "stable color None is unknown"),
    ({"blue": 90, "green": 10}, "blue", "purple", "canary color 'purple' is unknown"),
    ({"blue": 90, "green": 10}, "blue", "blue", "canary color must differ from the stable color blue"),
])
def test_weights_doc_rejects(weights, stable, canary, fragment):
    with pytest.raises(ValidationError, match=fragment):
        WeightsDoc(weights, stable, canary)


def test_weights_doc_empty_canary_is_none():
    assert WeightsDoc({"blue": 100}, "blue", "").canary is None


@pytest.mark.parametrize("weights,expected", [
    ({"blue": 90, "green": 10}, "blue"),
    ({"blue": 10, "green": 90}, "green"),
    ({"green": 100}, "green"),
    ({"blue": 100}, "blue"),
    ({"blue": 50, "green": 50}, "blue"),
    ({"green": 50, "blue": 50}, "blue"),
])
def test_build_default_stable_is_heavier_color_blue_on_tie(weights, expected):
    assert WeightsDoc.build(weights).stable == expected


def test_build_explicit_stable_and_canary():
    doc = WeightsDoc.build({"blue": 10, "green": 90}, stable="blue", canary="green")
    assert (doc.stable, doc.canary, doc.weights) == ("blue", "green", {"blue": 10, "green": 90})


def test_build_rejects_canary_equal_to_default_stable():
    with pytest.raises(ValidationError, match="must differ from the stable color blue"):
        WeightsDoc.build({"blue": 90, "green": 10}, canary="blue")


def test_build_rejects_bad_weights_before_choosing_stable():
    with pytest.raises(ValidationError, match="sum to 99"):
        WeightsDoc.build({"blue": 90, "green": 9})


ROUND_TRIP_DOCS = [
    WeightsDoc({"blue": 100}, "blue"),
    WeightsDoc({"blue": 90, "green": 10}, "blue", "green"),
    WeightsDoc({"blue": 0, "green": 100}, "green", "blue"),
    WeightsDoc({"blue": 37, "green": 63}, "green"),
]


@pytest.mark.parametrize("doc", ROUND_TRIP_DOCS, ids=lambda d: repr(d.as_dict()))
@pytest.mark.parametrize("app", [None, "demo"])
def test_render_parse_round_trip(doc, app):
    text = doc.render(app)
    parsed = WeightsDoc.parse(text)
    assert parsed == doc
    assert parsed.as_dict() == doc.as_dict()
    assert parsed.render(app) == text


def test_render_format():
    doc = WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
    assert doc.render() == "blue=90\ngreen=10\nstable=blue\ncanary=green\n"
    with_header = doc.render("demo")
    assert with_header.startswith("# leanvibe.deploy weights for app demo;")
    assert with_header.endswith(doc.render())
    assert WeightsDoc({"blue": 100}, "blue").render().endswith("canary=\n")


def test_parse_ignores_comments_blank_and_junk_lines_and_spaces():
    text = "# comment\n\n  blue = 75 \njunk line\ngreen=25\nstable= green\ncanary =\n"
    doc = WeightsDoc.parse(text)
    assert doc.as_dict() == {"weights": {"blue": 75, "green": 25}, "stable": "green", "canary": None}


def test_parse_missing_color_counts_as_zero():
    assert WeightsDoc.parse("green=100\nstable=green\n").weights == {"blue": 0, "green": 100}


@pytest.mark.parametrize("text,fragment", [
    ("blue=ninety\ngreen=10\nstable=blue\n", "not a number"),
    ("blue=90\ngreen=10\n", "stable color None is unknown"),
    ("blue=90\ngreen=20\nstable=blue\n", "sum to 110"),
    ("blue=90\ngreen=10\nstable=blue\ncanary=blue\n", "must differ"),
])
def test_parse_rejects(text, fragment):
    with pytest.raises(ValidationError, match=fragment):
        WeightsDoc.parse(text)


def test_equality():
    a = WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
    assert a == WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
    assert a != WeightsDoc({"blue": 90, "green": 10}, "blue")
    assert a != WeightsDoc({"blue": 80, "green": 20}, "blue", "green")
    assert a != a.as_dict()


# --- members ------------------------------------------------------------------------------


def test_validate_members_accepts_lists_and_single_strings():
    clean = validate_members({"blue": "127.0.0.1:9001", "green": ["[::1]:9002", "host:9003"]})
    assert clean == {"blue": ["127.0.0.1:9001"], "green": ["[::1]:9002", "host:9003"]}


@pytest.mark.parametrize("members,fragment", [
    (["127.0.0.1:9001"], "members must map each color"),
    ({"blue": ["127.0.0.1:9001"]}, "at least one server for green"),
    ({"blue": [], "green": ["127.0.0.1:9002"]}, "at least one server for blue"),
    ({"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9002"], "red": ["127.0.0.1:9003"]}, "members color 'red' is unknown"),
    ({"blue": ["127.0.0.1"], "green": ["127.0.0.1:9002"]}, "is not of the form host:port"),
    ({"blue": ["127.0.0.1:0"], "green": ["127.0.0.1:9002"]}, "outside 1 to 65535"),
])
def test_validate_members_rejects(members, fragment):
    with pytest.raises(ValidationError, match=fragment):
        validate_members(members)


# --- render_upstreams ---------------------------------------------------------------------


def _block(text, header):
    """Lines of the `{ ... }` block that starts with `header`."""
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("}", start)
    return lines[start + 1:end]


def test_render_upstreams_members_backup_and_keepalive():
    text = render_upstreams("demo", MEMBERS, dict(OPTIONS, keepalive=16, max_fails=3, fail_timeout=7))
    assert text.startswith("# Managed by leanvibe.deploy.nginx_upstream for app demo.")
    assert text.endswith("}\n")
    assert _block(text, "upstream leanvibe_demo_blue {") == [
        "    server 10.0.0.5:9001 max_fails=3 fail_timeout=7s;",
        "    server 10.0.0.6:9001 max_fails=3 fail_timeout=7s;",
        "    server 10.0.0.5:9002 backup;",
        "    server 10.0.0.6:9002 backup;",
        "    keepalive 16;",
        "    keepalive_timeout 60s;",
    ]
    green = _block(text, "upstream leanvibe_demo_green {")
    assert green[:4] == ["    server 10.0.0.5:9002 max_fails=3 fail_timeout=7s;", "    server 10.0.0.6:9002 max_fails=3 fail_timeout=7s;",
                         "    server 10.0.0.5:9001 backup;", "    server 10.0.0.6:9001 backup;"]
    assert "split_clients" not in text and "map " not in text  # Lua mode: no weighted route in the file


def test_render_upstreams_without_backup():
    text = render_upstreams("demo", MEMBERS, dict(OPTIONS, backup_other_color=False))
    assert "backup" not in text
    assert len([line for line in text.splitlines() if line.strip().startswith("server ")]) == 4


def test_render_upstreams_shared_server_is_not_its_own_backup():
    members = {"blue": ["[::1]:9001", "127.0.0.1:9000"], "green": ["127.0.0.1:9000"]}
    text = render_upstreams("demo", members, OPTIONS)
    assert _block(text, "upstream leanvibe_demo_green {")[:2] == ["    server 127.0.0.1:9000 max_fails=1 fail_timeout=5s;",
                                                                  "    server [::1]:9001 backup;"]
    assert "    server 127.0.0.1:9000 backup;" not in _block(text, "upstream leanvibe_demo_blue {")


def test_render_upstreams_split_clients_percentages_and_star():
    doc = WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
    text = render_upstreams("demo", MEMBERS, OPTIONS, doc)
    assert _block(text, 'split_clients "${request_id}" $leanvibe_demo_split {') == [
        "    90% leanvibe_demo_blue;",
        "    * leanvibe_demo_green;",
    ]
    assert _block(text, "map $http_x_canary $leanvibe_demo_upstream {") == [
        "    always leanvibe_demo_green;",
        "    default $leanvibe_demo_split;",
    ]


@pytest.mark.parametrize("weights,expected", [
    ({"blue": 100}, ["    * leanvibe_demo_blue;"]),
    ({"green": 100}, ["    * leanvibe_demo_green;"]),
    ({"blue": 1, "green": 99}, ["    1% leanvibe_demo_blue;", "    * leanvibe_demo_green;"]),
    ({"blue": 50, "green": 50}, ["    50% leanvibe_demo_blue;", "    * leanvibe_demo_green;"]),
])
def test_render_upstreams_zero_percent_colors_omitted(weights, expected):
    doc = WeightsDoc.build(weights)
    text = render_upstreams("demo", MEMBERS, OPTIONS, doc)
    assert _block(text, 'split_clients "${request_id}" $leanvibe_demo_split {') == expected
    assert not [line for line in text.splitlines() if line.strip().startswith("0%")]


def test_render_upstreams_no_canary_map_has_only_default():
    doc = WeightsDoc({"blue": 90, "green": 10}, "blue")
    text = render_upstreams("demo", MEMBERS, OPTIONS, doc)
    assert _block(text, "map $http_x_canary $leanvibe_demo_upstream {") == ["    default $leanvibe_demo_split;"]
    assert "always" not in text


def test_render_upstreams_canary_blue():
    doc = WeightsDoc({"blue": 5, "green": 95}, "green", "blue")
    text = render_upstreams("shop", MEMBERS, OPTIONS, doc)
    assert "    always leanvibe_shop_blue;" in _block(text, "map $http_x_canary $leanvibe_shop_upstream {")


# --- AdminClient against a fake admin endpoint on a unix socket ---------------------------


# "Not given", where None means "keep the members in force".
DEFAULT = object()


class FakeAdminServer:
    """nginx's Lua weights endpoint: GET/PUT /leanvibe/weights/<app> over HTTP on a unix socket."""

    def __init__(self, path):
        self.path = path
        self.docs = {}
        self.requests = []
        self.status_override = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status, text):
                body = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                owner.requests.append(("GET", self.path, None))
                if owner.status_override:
                    return self._reply(*owner.status_override)
                app = self.path[len(ADMIN_PATH):]
                if app not in owner.docs:
                    return self._reply(404, "no such app\n")
                return self._reply(200, owner.docs[app])

            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")
                owner.requests.append(("PUT", self.path, body))
                if owner.status_override:
                    return self._reply(*owner.status_override)
                owner.docs[self.path[len(ADMIN_PATH):]] = body
                return self._reply(200, body)

            def log_message(self, *args):
                pass

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def admin_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short relative socket path, whatever the length of tmp_path
    server = FakeAdminServer("admin.sock")
    yield server
    server.close()


def test_admin_client_get_unknown_app_is_none(admin_server):
    assert AdminClient(admin_server.path).get("demo") is None
    assert admin_server.requests == [("GET", "/leanvibe/weights/demo", None)]


def test_admin_client_put_then_get(admin_server):
    client = AdminClient(admin_server.path)
    doc = WeightsDoc({"blue": 70, "green": 30}, "blue", "green")
    assert client.put("demo", doc) == doc
    assert admin_server.requests[0] == ("PUT", "/leanvibe/weights/demo", doc.render())
    assert client.get("demo") == doc


def test_admin_client_get_error_status_is_unavailable(admin_server):
    admin_server.status_override = (500, "lua error\n")
    with pytest.raises(AdminUnavailable, match="answered 500: lua error"):
        AdminClient(admin_server.path).get("demo")


def test_admin_client_put_refused_is_nginx_error(admin_server):
    admin_server.status_override = (400, "weights must sum to 100\n")
    with pytest.raises(NginxError, match=r"refused the weights \(HTTP 400\): weights must sum to 100"):
        AdminClient(admin_server.path).put("demo", WeightsDoc({"blue": 100}, "blue"))


def test_admin_client_missing_socket_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = AdminClient("nothing.sock", timeout=0.5)
    with pytest.raises(AdminUnavailable, match="admin socket nothing.sock"):
        client.get("demo")
    with pytest.raises(AdminUnavailable):
        client.put("demo", WeightsDoc({"blue": 100}, "blue"))


# --- NginxControl -------------------------------------------------------------------------


class Runner:
    """A fake run_command: records argv, answers per action; a reload makes the fake admin load the weights file."""

    def __init__(self, conf_dir=None, app="demo", admin=None):
        self.commands = []
        self.test_rc = (0, "", "")
        self.reload_rc = (0, "", "")
        self.conf_dir = conf_dir
        self.app = app
        self.admin = admin
        self.files_at_test = []

    def __call__(self, cmd):
        self.commands.append(list(cmd))
        if "-t" in cmd:
            if self.conf_dir:
                files = UpstreamFiles(self.conf_dir, self.app)
                self.files_at_test.append({"conf": _read(files.conf), "weights": _read(files.weights)})
            return self.test_rc
        if "reload" in cmd:
            if self.reload_rc[0] == 0 and self.admin is not None and self.admin.reload_loads_file:
                self.admin.live = WeightsDoc.parse(_read(UpstreamFiles(self.conf_dir, self.app).weights))
            return self.reload_rc
        raise AssertionError("unexpected command %r" % (cmd,))

    def actions(self):
        return ["test" if "-t" in cmd else "reload" for cmd in self.commands]


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def test_nginx_control_commands_with_prefix_and_conf():
    runner = Runner()
    control = NginxControl(runner, binary="/usr/sbin/nginx", prefix="/home/u/nginx", conf="/home/u/nginx/nginx.conf")
    control.test()
    control.reload()
    assert runner.commands == [
        ["/usr/sbin/nginx", "-p", "/home/u/nginx", "-c", "/home/u/nginx/nginx.conf", "-t", "-q"],
        ["/usr/sbin/nginx", "-p", "/home/u/nginx", "-c", "/home/u/nginx/nginx.conf", "-s", "reload"],
    ]


def test_nginx_control_plain_commands():
    runner = Runner()
    NginxControl(runner).test()
    assert runner.commands == [["nginx", "-t", "-q"]]


def test_nginx_control_test_failure_reports_last_line():
    runner = Runner()
    runner.test_rc = (1, "", "nginx: [warn] something\nnginx: [emerg] host not found in upstream \"x:1\"\n")
    with pytest.raises(NginxError) as exc:
        NginxControl(runner).test()
    assert str(exc.value) == 'nginx -t rejected the new config: nginx: [emerg] host not found in upstream "x:1"'


def test_nginx_control_test_failure_reports_the_reason_not_the_summary_line():
    runner = Runner()
    runner.test_rc = (1, "", "nginx: [emerg] unknown directive \"this\" in /etc/nginx/leanvibe/x.upstreams.conf:2\n"
                             "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    with pytest.raises(NginxError) as exc:
        NginxControl(runner).test()
    assert str(exc.value) == ('nginx -t rejected the new config: nginx: [emerg] unknown directive "this" in '
                              '/etc/nginx/leanvibe/x.upstreams.conf:2')


def test_nginx_control_test_failure_without_output_reports_rc():
    runner = Runner()
    runner.test_rc = (2, "", "")
    with pytest.raises(NginxError, match="rc=2"):
        NginxControl(runner).test()


def test_nginx_control_reload_failure():
    runner = Runner()
    runner.reload_rc = (1, "", "nginx: [error] invalid PID number\n")
    with pytest.raises(NginxError, match="nginx reload failed: nginx: .error. invalid PID number"):
        NginxControl(runner).reload()
    runner.reload_rc = (3, "", "")
    with pytest.raises(NginxError, match="reload failed: rc=3"):
        NginxControl(runner).reload()


def test_is_running(tmp_path):
    pid_file = tmp_path / "nginx.pid"
    assert NginxControl(Runner()).is_running() is True  # no pid file configured: assume the system nginx runs
    control = NginxControl(Runner(), pid_file=str(pid_file))
    assert control.is_running() is False  # missing
    pid_file.write_text("\n")
    assert control.is_running() is False  # empty
    pid_file.write_text("abc\n")
    assert control.is_running() is False  # garbage
    pid_file.write_text("%d\n" % os.getpid())
    assert control.is_running() is True
    pid_file.write_text("%d\n" % _dead_pid())
    assert control.is_running() is False


def _dead_pid():
    """A pid no process has (the highest pid values are practically never in use)."""
    with open("/proc/sys/kernel/pid_max") as handle:
        pid_max = int(handle.read())
    for pid in range(pid_max - 1, pid_max - 1000, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free pid found")


# --- state file ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    "null",
    '"text"',
    "42",
    '[{"weights": {"blue": 100}, "stable": "blue", "members": {"blue": ["a:1"], "green": ["b:2"]}}]',
    "{}",
    '{"weights": {"blue": 100}, "stable": "blue"}',
    '{"weights": {"blue": 100}, "stable": "blue", "members": {"blue": ["127.0.0.1:1"]}}',
    '{"weights": {"blue": 60, "green": 60}, "stable": "blue", "members": {"blue": ["a:1"], "green": ["b:2"]}}',
    '{"weights": "x", "stable": "blue", "members": {"blue": ["a:1"], "green": ["b:2"]}}',
    '{"weights": {"blue": 100}, "stable": "pink", "members": {"blue": ["a:1"], "green": ["b:2"]}}',
])
def test_read_state_corrupt_names_the_file(tmp_path, text):
    files = UpstreamFiles(str(tmp_path), "demo")
    with open(files.state, "w") as handle:
        handle.write(text)
    with pytest.raises(ValidationError) as exc:
        read_state(files)
    assert "state file %s is corrupt" % files.state in str(exc.value)
    assert "fix or remove it" in str(exc.value)


@pytest.mark.parametrize("data", [
    b"\xff\xfe{}",
    b'{"weights": {"blue": 100}, "stable": "blue", "members": {"blue": ["a:1"], "green": ["b:2"]}}\xe9',
    b'{"weights": {"blue": 100}, "stable": "blu\xe9", "members": {"blue": ["a:1"], "green": ["b:2"]}}',
    b'{"weights": {"blue": 100}, "stable": "blue", "members": {"blue": ["a:1"], "green": ["b\xff:2"]}}',
], ids=["bom-like", "trailing-byte", "in-color", "in-member"])
def test_read_state_not_utf8_is_corrupt(tmp_path, data):
    files = UpstreamFiles(str(tmp_path), "demo")
    with open(files.state, "wb") as handle:
        handle.write(data)
    with pytest.raises(ValidationError) as exc:
        read_state(files)
    assert str(exc.value).startswith("state file %s is corrupt (" % files.state)
    assert str(exc.value).endswith("); fix or remove it.")


def test_read_state_missing_and_valid(tmp_path):
    files = UpstreamFiles(str(tmp_path), "demo")
    assert read_state(files) is None
    with open(files.state, "w") as handle:
        json.dump({"weights": {"blue": 80, "green": 20}, "stable": "blue", "canary": "green", "members": MEMBERS}, handle)
    state = read_state(files)
    assert state["doc"] == WeightsDoc({"blue": 80, "green": 20}, "blue", "green")
    assert state["members"] == MEMBERS


def test_upstream_files_paths_snapshot_and_restore(tmp_path):
    files = UpstreamFiles(str(tmp_path), "demo")
    assert (os.path.basename(files.conf), os.path.basename(files.weights), os.path.basename(files.state)) == (
        "demo.upstreams.conf", "demo.weights", "demo.state.json")
    with open(files.conf, "w") as handle:
        handle.write("conf\n")
    snapshot = files.snapshot()
    assert snapshot == {files.conf: "conf\n", files.weights: None, files.state: None}
    with open(files.conf, "w") as handle:
        handle.write("changed\n")
    with open(files.weights, "w") as handle:
        handle.write("new\n")
    files.restore(snapshot)
    assert _read(files.conf) == "conf\n"
    assert not os.path.exists(files.weights)


# --- wait_live ----------------------------------------------------------------------------


def test_wait_live_true_when_served():
    doc = WeightsDoc({"blue": 100}, "blue")
    assert wait_live(FakeAdmin(doc), "demo", doc, timeout=1) is True


def test_wait_live_false_after_timeout_even_if_unavailable():
    admin = FakeAdmin(WeightsDoc({"blue": 100}, "blue"))
    assert wait_live(admin, "demo", WeightsDoc({"green": 100}, "green"), timeout=0.1) is False
    assert admin.gets >= 1
    admin.get_error = AdminUnavailable("down")
    assert wait_live(admin, "demo", WeightsDoc({"blue": 100}, "blue"), timeout=0.1) is False


# --- apply_weights ------------------------------------------------------------------------


class Lb:
    """A conf dir, a fake nginx (run_command + pid file) and optionally a fake Lua admin endpoint."""

    def __init__(self, tmp_path, lua=False, running=True):
        self.conf_dir = str(tmp_path / "leanvibe")
        self.pid_file = tmp_path / "nginx.pid"
        self.admin = FakeAdmin() if lua else None
        self.runner = Runner(self.conf_dir, "demo", self.admin)
        self.nginx = NginxControl(self.runner, pid_file=str(self.pid_file))
        self.files = UpstreamFiles(self.conf_dir, "demo")
        self.set_running(running)

    def set_running(self, running):
        if running:
            self.pid_file.write_text("%d\n" % os.getpid())
        elif self.pid_file.exists():
            self.pid_file.unlink()

    def apply(self, doc, members=DEFAULT, check_mode=False, options=DEFAULT):
        members = MEMBERS if members is DEFAULT else members
        options = OPTIONS if options is DEFAULT else options
        return apply_weights("demo", self.conf_dir, doc, members, options, self.nginx, self.admin, check_mode=check_mode)

    def contents(self):
        return {path: _read_bytes(path) for path in (self.files.conf, self.files.weights, self.files.state)}

    def reset(self):
        self.runner.commands = []
        self.runner.files_at_test = []
        if self.admin is not None:
            self.admin.puts = []
            self.admin.gets = 0


DOC_100 = WeightsDoc({"blue": 100}, "blue")
DOC_90 = WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
DOC_50 = WeightsDoc({"blue": 50, "green": 50}, "blue", "green")


def test_first_run_requires_members(tmp_path):
    lb = Lb(tmp_path)
    with pytest.raises(ValidationError, match="members is required the first time the weights of app demo are set"):
        lb.apply(DOC_90, members=None)
    assert not os.path.exists(lb.conf_dir)
    assert lb.runner.commands == []


def test_first_run_without_lua_writes_files_tests_and_reloads(tmp_path):
    lb = Lb(tmp_path)
    result = lb.apply(DOC_90)
    assert result["changed"] is True
    assert result["method"] == "reload"
    assert result["before"] is None
    assert result["after"] == DOC_90.as_dict()
    assert result["membership_changed"] is False
    assert lb.runner.actions() == ["test", "reload"]
    conf = _read(lb.files.conf)
    assert conf == render_upstreams("demo", MEMBERS, OPTIONS, DOC_90)
    assert "    90% leanvibe_demo_blue;" in conf
    assert _read(lb.files.weights) == DOC_90.render("demo")
    state = json.loads(_read(lb.files.state))
    assert state == {"members": MEMBERS, "weights": {"blue": 90, "green": 10}, "stable": "blue", "canary": "green"}
    assert result["diff"] == {"before": "", "after": conf, "before_header": lb.files.conf, "after_header": lb.files.conf}
    # nginx -t saw the new files, not the old ones
    assert lb.runner.files_at_test == [{"conf": conf, "weights": DOC_90.render("demo")}]


def test_no_change_reports_unchanged_and_touches_nothing(tmp_path):
    lb = Lb(tmp_path)
    lb.apply(DOC_90)
    before = lb.contents()
    inodes = [os.stat(path).st_ino for path in before]
    lb.reset()
    result = lb.apply(WeightsDoc({"blue": 90, "green": 10}, "blue", "green"))
    assert result["changed"] is False
    assert result["method"] == "none"
    assert result["before"] == result["after"] == DOC_90.as_dict()
    assert lb.runner.commands == []
    assert lb.contents() == before
    assert [os.stat(path).st_ino for path in before] == inodes


def test_applied_at_starts_the_window_of_the_weights(tmp_path):
    lb = Lb(tmp_path)
    started = time.time()
    changed = lb.apply(DOC_90)
    # After nginx -t and the reload: the window of the new weights starts no earlier than that (to the ms it keeps).
    assert started - 0.001 <= changed["applied_at"] <= time.time() + 0.001
    lb.reset()
    again = lb.apply(DOC_90)
    assert again["changed"] is False and again["applied_at"] >= changed["applied_at"]
    assert lb.apply(DOC_50, check_mode=True)["applied_at"] is None


def test_doc_none_keeps_weights_in_force(tmp_path):
    lb = Lb(tmp_path)
    lb.apply(DOC_90)
    lb.reset()
    result = lb.apply(None, members=None)
    assert result["changed"] is False
    assert result["after"] == DOC_90.as_dict()


def test_doc_none_first_time_sends_all_to_blue(tmp_path):
    lb = Lb(tmp_path)
    result = lb.apply(None)
    assert result["after"] == {"weights": {"blue": 100, "green": 0}, "stable": "blue", "canary": None}
    assert WeightsDoc.parse(_read(lb.files.weights)) == DOC_100


def test_members_none_keeps_previous_members(tmp_path):
    lb = Lb(tmp_path)
    lb.apply(DOC_90)
    result = lb.apply(DOC_50, members=None)
    assert result["changed"] is True
    assert result["membership_changed"] is False
    assert json.loads(_read(lb.files.state))["members"] == MEMBERS


def test_check_mode_first_run_writes_nothing(tmp_path):
    lb = Lb(tmp_path)
    result = lb.apply(DOC_90, check_mode=True)
    assert result["changed"] is True
    assert result["method"] == "reload"
    assert result["diff"]["after"] == render_upstreams("demo", MEMBERS, OPTIONS, DOC_90)
    assert not os.path.exists(lb.conf_dir)
    assert lb.runner.commands == []


def test_check_mode_weight_change_with_lua_reports_live_and_writes_nothing(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    before = lb.contents()
    lb.reset()
    result = lb.apply(DOC_50, check_mode=True)
    assert result["changed"] is True
    assert result["method"] == "live"
    assert result["before"] == DOC_90.as_dict()
    assert result["after"] == DOC_50.as_dict()
    assert lb.contents() == before
    assert lb.admin.puts == []
    assert lb.admin.live == DOC_90
    assert lb.runner.commands == []


def test_check_mode_unchanged_reports_none(tmp_path):
    lb = Lb(tmp_path)
    lb.apply(DOC_90)
    result = lb.apply(DOC_90, check_mode=True)
    assert (result["changed"], result["method"]) == (False, "none")


def test_lua_first_run_reloads_and_waits_until_live(tmp_path):
    lb = Lb(tmp_path, lua=True)
    result = lb.apply(DOC_90)
    assert result["method"] == "reload"
    assert lb.runner.actions() == ["test", "reload"]
    assert lb.admin.live == DOC_90  # loaded from the weights file by the (fake) reload
    conf = _read(lb.files.conf)
    assert conf == render_upstreams("demo", MEMBERS, OPTIONS)
    assert "split_clients" not in conf


def test_lua_live_weight_change_puts_and_does_not_reload(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    conf_before = _read_bytes(lb.files.conf)
    lb.reset()
    result = lb.apply(DOC_50)
    assert result["changed"] is True
    assert result["method"] == "live"
    assert result["before"] == DOC_90.as_dict()
    assert result["membership_changed"] is False
    assert lb.admin.puts == [DOC_50]
    assert lb.runner.commands == []
    assert _read_bytes(lb.files.conf) == conf_before
    assert WeightsDoc.parse(_read(lb.files.weights)) == DOC_50
    assert json.loads(_read(lb.files.state))["weights"] == {"blue": 50, "green": 50}


def test_lua_live_memory_drift_is_corrected_even_when_files_match(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    lb.admin.live = DOC_50  # someone changed the weights through the endpoint by hand
    lb.reset()
    result = lb.apply(DOC_90)
    assert result["changed"] is True
    assert result["method"] == "live"
    assert result["before"] == DOC_50.as_dict()
    assert lb.admin.puts == [DOC_90]


def test_lua_admin_unavailable_falls_back_to_test_and_reload(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    lb.reset()
    lb.admin.get_error = AdminUnavailable("connection refused")
    lb.admin.put_error = AdminUnavailable("connection refused")
    result = lb.apply(DOC_50)
    assert result["method"] == "reload"
    assert result["before"] == DOC_90.as_dict()  # from the state file, since nginx's memory could not be read
    assert lb.runner.actions() == ["test", "reload"]
    assert lb.runner.files_at_test[0]["weights"] == DOC_50.render("demo")
    assert json.loads(_read(lb.files.state))["weights"] == {"blue": 50, "green": 50}


def test_lua_put_refused_restores_files(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    before = lb.contents()
    lb.reset()
    lb.admin.put_error = NginxError("nginx refused the weights (HTTP 400): bad")
    with pytest.raises(NginxError, match="HTTP 400"):
        lb.apply(DOC_50)
    assert lb.contents() == before
    assert lb.runner.commands == []
    assert lb.admin.puts == [DOC_50]  # no undo put: nothing was applied


def test_lua_state_write_failure_after_live_put_puts_old_weights_back(tmp_path, monkeypatch):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    before = lb.contents()
    lb.reset()
    real_write = nginx_mod.atomic_write

    def failing_state_write(path, content, mode=0o644):
        if path == lb.files.state:
            raise OSError(28, "No space left on device")
        return real_write(path, content, mode)

    monkeypatch.setattr(nginx_mod, "atomic_write", failing_state_write)
    with pytest.raises(OSError, match="No space left"):
        lb.apply(DOC_50)
    assert lb.admin.puts == [DOC_50, DOC_90]
    assert lb.admin.live == DOC_90
    assert lb.contents() == before


def test_membership_change_tests_and_reloads(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    lb.reset()
    members = {"blue": ["10.0.0.5:9001"], "green": ["10.0.0.5:9002", "10.0.0.7:9002"]}
    result = lb.apply(DOC_90, members=members)
    assert result["changed"] is True
    assert result["membership_changed"] is True
    assert result["method"] == "reload"
    assert lb.runner.actions() == ["test", "reload"]
    assert lb.admin.puts == []
    assert "10.0.0.7:9002" in _read(lb.files.conf)
    assert "10.0.0.6:9001" not in _read(lb.files.conf)
    assert json.loads(_read(lb.files.state))["members"] == members
    assert result["diff"]["before"] != result["diff"]["after"]


def test_options_change_needs_reload_without_membership_change(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    lb.reset()
    result = lb.apply(DOC_90, options=dict(OPTIONS, keepalive=8))
    assert (result["changed"], result["method"], result["membership_changed"]) == (True, "reload", False)
    assert "keepalive 8;" in _read(lb.files.conf)


def test_lua_reload_not_served_in_time_restores_and_reloads_back(tmp_path, monkeypatch):
    real_wait_live = nginx_mod.wait_live
    monkeypatch.setattr(nginx_mod, "wait_live", lambda admin, app, doc: real_wait_live(admin, app, doc, timeout=0.2))
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    before = lb.contents()
    lb.reset()
    lb.admin.reload_loads_file = False  # the new master never serves the new weights
    with pytest.raises(NginxError, match="did not serve the new weights"):
        lb.apply(DOC_50, members={"blue": ["10.0.0.5:9001"], "green": ["10.0.0.5:9002"]})
    assert lb.contents() == before
    assert lb.admin.puts == []
    assert lb.runner.actions() == ["test", "reload", "reload"]  # the second reload loads the restored files


@pytest.mark.parametrize("lua", [False, True])
def test_nginx_test_failure_restores_files_byte_for_byte(tmp_path, lua):
    lb = Lb(tmp_path, lua=lua)
    lb.apply(DOC_90)
    before = lb.contents()
    assert all(content for content in before.values())
    lb.reset()
    lb.runner.test_rc = (1, "", "nginx: [emerg] host not found in upstream \"bad.invalid:9001\"\n")
    with pytest.raises(NginxError, match="nginx -t rejected the new config: .*host not found"):
        lb.apply(DOC_50, members={"blue": ["bad.invalid:9001"], "green": ["10.0.0.5:9002"]})
    assert lb.contents() == before
    assert lb.runner.actions() == ["test"]  # never reloaded
    assert sorted(os.listdir(lb.conf_dir)) == ["demo.state.json", "demo.upstreams.conf", "demo.weights"]
    if lua:
        assert lb.admin.puts == []


def test_nginx_test_failure_on_first_run_leaves_no_files(tmp_path):
    lb = Lb(tmp_path)
    lb.runner.test_rc = (1, "", "nginx: [emerg] unknown directive\n")
    with pytest.raises(NginxError, match="unknown directive"):
        lb.apply(DOC_90)
    assert os.listdir(lb.conf_dir) == []


def test_reload_failure_restores_files_and_reloads_back(tmp_path):
    lb = Lb(tmp_path)
    lb.apply(DOC_90)
    before = lb.contents()
    lb.reset()
    lb.runner.reload_rc = (1, "", "nginx: [alert] kill(123, 1) failed\n")
    with pytest.raises(NginxError, match="nginx reload failed"):
        lb.apply(DOC_50)
    assert lb.contents() == before
    assert lb.runner.actions() == ["test", "reload", "reload"]


def test_nginx_not_running_writes_files_and_reports_file(tmp_path):
    lb = Lb(tmp_path, running=False)
    result = lb.apply(DOC_90)
    assert result["changed"] is True
    assert result["method"] == "file"
    assert lb.runner.actions() == ["test"]
    assert WeightsDoc.parse(_read(lb.files.weights)) == DOC_90
    lb.reset()
    again = lb.apply(DOC_90)
    assert (again["changed"], again["method"]) == (False, "none")


def test_nginx_not_running_with_lua_does_not_call_admin(tmp_path):
    lb = Lb(tmp_path, lua=True)
    lb.apply(DOC_90)
    lb.set_running(False)
    lb.reset()
    result = lb.apply(DOC_50)
    assert result["method"] == "file"
    assert result["before"] == DOC_90.as_dict()
    assert lb.admin.gets == 0 and lb.admin.puts == []
    assert lb.runner.commands == []  # upstream conf unchanged: no test needed
    assert WeightsDoc.parse(_read(lb.files.weights)) == DOC_50


def test_check_mode_method_matches_real_run_when_nginx_not_running(tmp_path):
    lb = Lb(tmp_path, running=False)
    predicted = lb.apply(DOC_90, check_mode=True)["method"]
    assert predicted == lb.apply(DOC_90)["method"]
    assert predicted == "file"


def test_corrupt_state_is_validation_error_and_changes_nothing(tmp_path):
    lb = Lb(tmp_path)
    os.makedirs(lb.conf_dir)
    with open(lb.files.state, "w") as handle:
        handle.write("{not json")
    with pytest.raises(ValidationError, match="state file %s is corrupt" % lb.files.state):
        lb.apply(DOC_90)
    assert os.listdir(lb.conf_dir) == ["demo.state.json"]
    assert _read(lb.files.state) == "{not json"
    assert lb.runner.commands == []


def test_real_admin_client_live_path(tmp_path, admin_server):
    """apply_weights with the real AdminClient talking to the fake endpoint over the unix socket."""
    lb = Lb(tmp_path)
    lb.admin = AdminClient(admin_server.path)
    admin_server.docs["demo"] = DOC_90.render()
    lb.files = UpstreamFiles(lb.conf_dir, "demo")
    os.makedirs(lb.conf_dir)
    with open(lb.files.conf, "w") as handle:
        handle.write(render_upstreams("demo", MEMBERS, OPTIONS))
    result = lb.apply(DOC_50)
    assert result["method"] == "live"
    assert result["before"] == DOC_90.as_dict()
    assert WeightsDoc.parse(admin_server.docs["demo"]) == DOC_50
    assert [method for method, _path, _body in admin_server.requests] == ["GET", "PUT"]
    assert lb.runner.commands == []
