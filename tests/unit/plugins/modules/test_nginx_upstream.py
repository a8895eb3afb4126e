"""The nginx_upstream module end to end through main(), with run_command mocked and no real nginx."""

import functools
import os

import pytest
from ansible.module_utils import basic

from plugin_test_helpers import FakeRunCommand, run_module
from ansible_collections.leanvibe.deploy.plugins.module_utils import nginx as nginx_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import WeightsDoc, render_upstreams
from ansible_collections.leanvibe.deploy.plugins.modules import nginx_upstream


MEMBERS = {"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9002"]}


@pytest.fixture
def runner(monkeypatch):
    fake = FakeRunCommand()
    # A callable instance is not a descriptor: AnsibleModule.run_command(args) reaches fake(args) without the module.
    monkeypatch.setattr(basic.AnsibleModule, "run_command", fake)
    return fake


@pytest.fixture
def lb(tmp_path, runner):
    """Module arguments for an nginx that is not running (its pid file does not exist)."""

    class Lb:
        conf_dir = str(tmp_path / "leanvibe")
        pid_file = str(tmp_path / "nginx.pid")

        def args(self, **overrides):
            values = {"app": "demo", "weights": {"blue": 90, "green": 10}, "canary_color": "green", "members": MEMBERS,
                      "conf_dir": self.conf_dir, "pid_file": self.pid_file, "nginx_binary": "/usr/sbin/nginx"}
            values.update(overrides)
            return {key: value for key, value in values.items() if value is not None}

        def files(self):
            if not os.path.isdir(self.conf_dir):
                return None
            result = {}
            for name in sorted(os.listdir(self.conf_dir)):
                with open(os.path.join(self.conf_dir, name), "rb") as handle:
                    result[name] = handle.read()
            return result

        def read(self, name):
            with open(os.path.join(self.conf_dir, name)) as handle:
                return handle.read()

    return Lb()


run = functools.partial(run_module, nginx_upstream.main)


def test_first_run_with_nginx_stopped_writes_files(capsys, lb, runner):
    result = run(capsys, lb.args())
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["method"] == "file"
    assert result["before"] is None
    assert result["after"] == {"weights": {"blue": 90, "green": 10}, "stable": "blue", "canary": "green"}
    assert result["membership_changed"] is False
    assert "diff" not in result
    assert runner.commands == [["/usr/sbin/nginx", "-t", "-q"]]
    assert sorted(lb.files()) == ["demo.state.json", "demo.upstreams.conf", "demo.weights"]
    assert WeightsDoc.parse(lb.read("demo.weights")).as_dict() == result["after"]
    options = {"keepalive": 32, "max_fails": 3, "fail_timeout": 5, "backup_other_color": True}
    assert lb.read("demo.upstreams.conf") == render_upstreams("demo", MEMBERS, options, WeightsDoc(**result["after"]))


def test_second_run_is_not_changed(capsys, lb, runner):
    run(capsys, lb.args())
    files = lb.files()
    runner.commands = []
    result = run(capsys, lb.args())
    assert (result["changed"], result["method"]) == (False, "none")
    assert result["before"] == result["after"]
    assert runner.commands == []
    assert lb.files() == files


def test_second_run_without_weights_or_members_keeps_them(capsys, lb):
    run(capsys, lb.args())
    result = run(capsys, lb.args(weights=None, canary_color=None, members=None))
    assert result["changed"] is False
    assert result["after"]["weights"] == {"blue": 90, "green": 10}


def test_canary_color_alone_keeps_the_weights(capsys, lb):
    run(capsys, lb.args(weights={"blue": 100}, canary_color=None))
    result = run(capsys, lb.args(weights=None, canary_color="green", members=None))
    assert result["changed"] is True
    assert result["before"] == {"weights": {"blue": 100, "green": 0}, "stable": "blue", "canary": None}
    assert result["after"] == {"weights": {"blue": 100, "green": 0}, "stable": "blue", "canary": "green"}
    assert "canary=green" in lb.read("demo.weights")


def test_canary_color_alone_equal_to_stable_is_refused(capsys, lb):
    run(capsys, lb.args(weights={"blue": 100}, canary_color=None))
    files = lb.files()
    result = run(capsys, lb.args(weights=None, canary_color="blue", members=None))
    assert result["failed"] is True
    assert result["msg"] == "canary color must differ from the stable color blue."
    assert lb.files() == files


def test_weight_change_is_applied(capsys, lb):
    run(capsys, lb.args())
    result = run(capsys, lb.args(weights={"green": 100}, canary_color=None))
    assert result["changed"] is True
    assert result["before"]["weights"] == {"blue": 90, "green": 10}
    assert result["after"] == {"weights": {"blue": 0, "green": 100}, "stable": "green", "canary": None}
    assert "    * leanvibe_demo_green;" in lb.read("demo.upstreams.conf")


def test_check_mode_reports_change_and_writes_nothing(capsys, lb, runner, tmp_path):
    result = run(capsys, lb.args(), check=True)
    assert result["changed"] is True
    assert result["method"] != "none"
    assert not os.path.exists(lb.conf_dir)
    assert runner.commands == []


def test_check_mode_on_existing_files_writes_nothing(capsys, lb, runner):
    run(capsys, lb.args())
    files = lb.files()
    runner.commands = []
    result = run(capsys, lb.args(weights={"blue": 50, "green": 50}), check=True, diff=True)
    assert result["changed"] is True
    assert result["after"]["weights"] == {"blue": 50, "green": 50}
    assert lb.files() == files
    assert runner.commands == []
    assert result["diff"][0]["after"] == WeightsDoc({"blue": 50, "green": 50}, "blue", "green").render()


def test_diff_mode_returns_weights_and_conf_diff(capsys, lb):
    result = run(capsys, lb.args(), diff=True)
    weights_diff, conf_diff = result["diff"]
    assert weights_diff["before"] == ""
    assert weights_diff["after"] == WeightsDoc({"blue": 90, "green": 10}, "blue", "green").render()
    assert conf_diff["before"] == ""
    assert conf_diff["after"] == lb.read("demo.upstreams.conf")
    assert conf_diff["before_header"] == os.path.join(lb.conf_dir, "demo.upstreams.conf")

    second = run(capsys, lb.args(weights={"blue": 20, "green": 80}, canary_color=None, stable_color="blue"), diff=True)
    weights_diff, conf_diff = second["diff"]
    assert weights_diff["before"] == WeightsDoc({"blue": 90, "green": 10}, "blue", "green").render()
    assert weights_diff["after"] == WeightsDoc({"blue": 20, "green": 80}, "blue").render()
    assert conf_diff["before"] != conf_diff["after"]
    assert "    20% leanvibe_demo_blue;" in conf_diff["after"]


def test_diff_mode_no_diff_when_unchanged(capsys, lb):
    run(capsys, lb.args())
    assert "diff" not in run(capsys, lb.args(), diff=True)


def test_running_nginx_without_lua_tests_and_reloads_with_prefix(capsys, lb, runner):
    with open(lb.pid_file, "w") as handle:
        handle.write("%d\n" % os.getpid())
    result = run(capsys, lb.args(nginx_prefix="/srv/nginx", nginx_conf="/srv/nginx/conf/nginx.conf"))
    assert result["method"] == "reload"
    base = ["/usr/sbin/nginx", "-p", "/srv/nginx", "-c", "/srv/nginx/conf/nginx.conf"]
    assert runner.commands == [base + ["-t", "-q"], base + ["-s", "reload"]]


def test_unavailable_admin_socket_falls_back_to_reload(capsys, lb, runner, tmp_path):
    admin = str(tmp_path / "missing.sock")
    first = run(capsys, lb.args(admin_socket=admin))  # nginx stopped: files only
    assert first["method"] == "file"
    assert "split_clients" not in lb.read("demo.upstreams.conf")  # Lua mode: weights come from the weights file
    with open(lb.pid_file, "w") as handle:
        handle.write("%d\n" % os.getpid())
    runner.commands = []
    result = run(capsys, lb.args(admin_socket=admin, weights={"blue": 50, "green": 50}))
    assert result["changed"] is True
    assert result["method"] == "reload"
    assert [cmd[-2:] for cmd in runner.commands] == [["-t", "-q"], ["-s", "reload"]]
    assert WeightsDoc.parse(lb.read("demo.weights")).weights == {"blue": 50, "green": 50}


def test_reload_that_never_serves_the_weights_fails_and_restores(capsys, lb, runner, tmp_path, monkeypatch):
    real_wait_live = nginx_mod.wait_live
    monkeypatch.setattr(nginx_mod, "wait_live", lambda admin, app, doc: real_wait_live(admin, app, doc, timeout=0.2))
    admin = str(tmp_path / "missing.sock")
    run(capsys, lb.args(admin_socket=admin))
    files = lb.files()
    with open(lb.pid_file, "w") as handle:
        handle.write("%d\n" % os.getpid())
    runner.commands = []
    result = run(capsys, lb.args(admin_socket=admin, members={"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9003"]}))
    assert result["failed"] is True
    assert result["msg"] == "nginx reloaded but did not serve the new weights within 5 s."
    assert lb.files() == files
    assert [cmd[-1] for cmd in runner.commands] == ["-q", "reload", "reload"]


@pytest.mark.parametrize("overrides,message", [
    ({"weights": {"blue": 150, "green": -50}}, "weight of blue is 150, outside 0 to 100."),
    ({"weights": {"blue": 101}}, "weight of blue is 101, outside 0 to 100."),
    ({"weights": {"blue": 50, "green": 40}}, "weights must sum to 100, these sum to 90."),
    ({"weights": {"red": 100}, "canary_color": None}, "weight color 'red' is unknown: it must be one of blue, green."),
    ({"weights": {"blue": "lots", "green": 10}}, "weight of blue must be a whole number from 0 to 100, not 'lots'."),
    ({"app": "Demo"}, "app 'Demo' is not valid: use lower-case letters, digits and '_', starting with a letter, at most 32 characters."),
    ({"app": "../etc"}, "app '../etc' is not valid"),
    ({"canary_color": "blue"}, "canary color must differ from the stable color blue."),
    ({"weights": None, "stable_color": "green"}, "stable_color needs weights."),
    ({"members": {"blue": ["127.0.0.1:9001"]}}, "members must list at least one server for green."),
    ({"members": {"blue": ["127.0.0.1:9001"], "green": ["nope"]}}, "upstream server 'nope' is not of the form host:port."),
    ({"members": dict(MEMBERS, purple=["127.0.0.1:1"])}, "members color 'purple' is unknown"),
    ({"keepalive": -1}, "keepalive must not be negative."),
])
def test_bad_input_fails_with_one_message_and_touches_nothing(capsys, lb, runner, overrides, message):
    run(capsys, lb.args())
    files = lb.files()
    runner.commands = []
    result = run(capsys, lb.args(**overrides))
    assert result["failed"] is True
    assert result["msg"].startswith(message)
    assert "\n" not in result["msg"]
    assert lb.files() == files
    assert runner.commands == []


def test_bad_input_on_first_run_creates_nothing(capsys, lb):
    result = run(capsys, lb.args(weights={"blue": 99}))
    assert result["failed"] is True
    assert result["msg"] == "weights must sum to 100, these sum to 99."
    assert not os.path.exists(lb.conf_dir)


def test_ansible_choices_reject_unknown_stable_color(capsys, lb):
    result = run(capsys, lb.args(stable_color="red"))
    assert result["failed"] is True
    assert "stable_color" in result["msg"]
    assert not os.path.exists(lb.conf_dir)


def test_members_required_first_time(capsys, lb):
    result = run(capsys, lb.args(members=None))
    assert result["failed"] is True
    assert result["msg"] == "members is required the first time the weights of app demo are set."
    assert not os.path.exists(lb.conf_dir)


def test_nginx_test_failure_fails_and_restores_files(capsys, lb, runner):
    run(capsys, lb.args())
    files = lb.files()
    runner.test_rc = (1, "", "nginx: [emerg] invalid port in upstream \"127.0.0.1:9003\"\n")
    result = run(capsys, lb.args(members={"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9003"]}))
    assert result["failed"] is True
    assert result["msg"] == 'nginx -t rejected the new config: nginx: [emerg] invalid port in upstream "127.0.0.1:9003"'
    assert lb.files() == files


def test_corrupt_state_file_fails_naming_it(capsys, lb, runner):
    os.makedirs(lb.conf_dir)
    state = os.path.join(lb.conf_dir, "demo.state.json")
    with open(state, "w") as handle:
        handle.write("{")
    result = run(capsys, lb.args())
    assert result["failed"] is True
    assert result["msg"].startswith("state file %s is corrupt" % state)
    assert lb.files() == {"demo.state.json": b"{"}
    assert runner.commands == []


def test_state_file_not_utf8_fails_naming_it_and_keeps_its_bytes(capsys, lb, runner):
    os.makedirs(lb.conf_dir)
    state = os.path.join(lb.conf_dir, "demo.state.json")
    data = b'{"weights": {"blue": 100}, "stable": "bl\xfce", "members": {}}'
    with open(state, "wb") as handle:
        handle.write(data)
    result = run(capsys, lb.args())
    assert result["failed"] is True
    assert result["msg"].startswith("state file %s is corrupt" % state)
    assert lb.files() == {"demo.state.json": data}
    assert runner.commands == []


def test_conf_dir_that_is_a_file_fails_cleanly(capsys, lb, tmp_path):
    blocker = tmp_path / "leanvibe"
    blocker.write_text("not a folder")
    result = run(capsys, lb.args())
    assert result["failed"] is True
    assert result["msg"].startswith("could not write the nginx files of app demo in %s" % lb.conf_dir)
    assert blocker.read_text() == "not a folder"
