"""The rollback module end to end through main(): a fake Lua admin endpoint and nginx, real member health servers."""

import functools
import json
import os

import pytest
from ansible.module_utils import basic
from plugin_test_helpers import FakeAdmin, FakeRunCommand, HealthServer, free_port, run_module

from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import NginxControl, WeightsDoc, apply_weights
from ansible_collections.leanvibe.deploy.plugins.module_utils import nginx as nginx_utils
from ansible_collections.leanvibe.deploy.plugins.modules import rollback as rollback_module


BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}
OPTIONS = {"keepalive": 16, "max_fails": 2, "fail_timeout": 7, "backup_other_color": True}


run = functools.partial(run_module, rollback_module.main)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Blue runs 1.0.0 (warm), green runs 2.0.0 with all traffic; nginx runs with Lua; the ledger records both."""
    runner = FakeRunCommand()
    monkeypatch.setattr(basic.AnsibleModule, "run_command", runner)
    admin = FakeAdmin()
    monkeypatch.setattr(nginx_utils, "AdminClient", lambda path: admin)
    blue, green = HealthServer(), HealthServer()
    blue.serve(version="1.0.0")
    green.serve(version="2.0.0")
    blue.start()
    green.start()

    class Site:
        conf_dir = str(tmp_path / "leanvibe")
        pid_file = str(tmp_path / "nginx.pid")
        state_dir = tmp_path / "state"
        ledger_path = str(tmp_path / "state" / "demo.ledger.json")

        def args(self, **overrides):
            values = {"app": "demo", "environment": "local", "ledger": self.ledger_path, "conf_dir": self.conf_dir,
                      "admin_socket": "/run/leanvibe/admin.sock", "pid_file": self.pid_file,
                      "nginx_binary": "/usr/sbin/nginx", "slot_timeout": 1, "check_timeout": 1, "check_count": 3}
            values.update(overrides)
            return {key: value for key, value in values.items() if value is not None}

        def files(self):
            result = {}
            for folder in (self.conf_dir, str(self.state_dir)):
                for name in sorted(os.listdir(folder)):
                    with open(os.path.join(folder, name), "rb") as handle:
                        result[name] = handle.read()
            return result

        def doc(self):
            with open(self.ledger_path) as handle:
                return json.load(handle)

    env = Site()
    env.runner, env.admin, env.blue, env.green = runner, admin, blue, green
    members = {"blue": ["127.0.0.1:%d" % blue.port], "green": ["127.0.0.1:%d" % green.port]}
    nginx = NginxControl(runner, "/usr/sbin/nginx", pid_file=env.pid_file)
    apply_weights("demo", env.conf_dir, WeightsDoc({"green": 100}, "green"), members, OPTIONS, nginx, admin)
    with open(env.pid_file, "w") as handle:
        handle.write("%d\n" % os.getpid())
    admin.live = WeightsDoc({"green": 100}, "green")
    runner.commands = []
    env.state_dir.mkdir()
    env.ledger = Ledger(env.ledger_path, "demo", "local")
    run_action(env.ledger, "record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "active_color": "blue",
                                      "versions": {"blue": "1.0.0"}, "weights": {"blue": 100}})
    run_action(env.ledger, "record", {"deployment": {"version": "2.0.0", "from_version": "1.0.0"}, "outcome": "promoted",
                                      "active_color": "green", "versions": {"green": "2.0.0"}, "weights": {"green": 100}})
    yield env
    blue.stop()
    green.stop()


def test_default_target_from_history_flips_live(capsys, site):
    files = site.files()
    result = run(capsys, site.args(lb_url="http://127.0.0.1:%d" % site.blue.port), diff=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert (result["from_version"], result["to_version"], result["to_color"]) == ("2.0.0", "1.0.0", "blue")
    assert result["target_source"].startswith("the version before 2.0.0")
    assert result["method"] == "live"
    assert result["needs_redeploy"] is False and result["target_color"] is None
    assert isinstance(result["duration_ms"], int) and result["duration_ms"] <= result["total_ms"]
    assert isinstance(result["flipped_at"], float)
    assert result["check"]["passed"] is True
    assert site.admin.puts == [WeightsDoc({"blue": 100}, "blue")]
    assert site.runner.commands == []
    # The conf was rendered with non-default options: the flip kept it, only the weights and the state changed.
    changed = sorted(name for name, data in site.files().items() if files.get(name) != data)
    assert changed == ["demo.ledger.json", "demo.state.json", "demo.weights"]
    assert result["diff"]["before"] == WeightsDoc({"green": 100}, "green").render()
    assert result["diff"]["after"] == WeightsDoc({"blue": 100}, "blue").render()
    doc = site.doc()
    assert (doc["active_color"], doc["weights"]) == ("blue", {"blue": 100, "green": 0})
    assert doc["versions"] == {"blue": "1.0.0", "green": "2.0.0"}
    assert doc["history"][-1] == result["entry"]
    assert (result["entry"]["type"], result["entry"]["outcome"], result["entry"]["reasons"]) == (
        "rollback", "rolled_back", ["manual rollback"])


def test_second_rollback_is_already_serving(capsys, site):
    run(capsys, site.args())
    files = site.files()
    result = run(capsys, site.args())
    assert result["changed"] is False
    assert result["msg"] == "demo in local already serves 1.0.0 from blue at 100 %; nothing to roll back."
    assert site.files() == files
    assert len(site.admin.puts) == 1


def test_cold_target_needs_redeploy(capsys, site):
    site.blue.stop()
    files = site.files()
    result = run(capsys, site.args())
    assert result.get("failed") is not True, result
    assert (result["changed"], result["needs_redeploy"], result["target_color"], result["to_version"]) == (False, True, "blue", "1.0.0")
    assert result["method"] == "none" and result["entry"] is None
    assert site.files() == files and site.admin.puts == []


def test_redeployed_to_the_idle_color_then_flipped(capsys, site):
    """rollback.yml: the target is in no color; it is redeployed to target_color, and the second call flips to it."""
    run_action(site.ledger, "record", {"deployment": {"version": "0.9.0"}, "outcome": "failed"})
    first = run(capsys, site.args(target_version="0.9.0"))
    assert (first["changed"], first["needs_redeploy"], first["target_color"]) == (False, True, "blue")
    site.blue.serve(version="0.9.0")  # what the app_slot role does
    second = run(capsys, site.args(target_version="0.9.0"))
    assert second.get("failed") is not True, second
    assert (second["changed"], second["needs_redeploy"], second["to_color"]) == (True, False, "blue")
    doc = site.doc()
    assert doc["versions"] == {"blue": "0.9.0", "green": "2.0.0"}
    assert (doc["active_color"], doc["history"][-1]["version"]) == ("blue", "0.9.0")


def test_never_deployed_target_is_refused_with_files_byte_identical(capsys, site):
    files = site.files()
    result = run(capsys, site.args(target_version="3.3.3"))
    assert result["failed"] is True
    assert result["msg"] == ("version 3.3.3 of demo was never deployed in local: it is in no color and in no history entry of "
                             "ledger %s; nothing was changed." % site.ledger_path)
    assert result["refused"] is True
    assert site.files() == files and site.admin.puts == [] and site.runner.commands == []


def test_emergency_skips_the_check_and_takes_the_lock(capsys, site):
    run_action(site.ledger, "lock", {"holder": BOB})
    dead = "http://127.0.0.1:%d" % free_port()
    refused = run(capsys, site.args(lb_url=dead))
    assert refused["failed"] is True
    assert refused["lock_held_by"]["run_id"] == BOB["run_id"]
    assert site.admin.puts == []
    result = run(capsys, site.args(lb_url=dead, emergency=True, autonomous=True, reason="gate failed"))
    assert result.get("failed") is not True, result
    assert result["check"] is None
    assert result["msg"].endswith("; emergency: no check through the LB.")
    assert result["lock_taken_over_from"]["run_id"] == BOB["run_id"]
    doc = site.doc()
    assert doc["lock"] is None
    assert (doc["history"][-1]["autonomous"], doc["history"][-1]["reasons"]) == (True, ["gate failed"])


def test_failed_check_fails_the_module_but_keeps_the_flip(capsys, site):
    dead = "http://127.0.0.1:%d" % free_port()
    result = run(capsys, site.args(lb_url=dead, check_timeout=0.3))
    assert result["failed"] is True
    assert "traffic stays on blue, the best known state." in result["msg"]
    assert "refused" not in result  # it failed on the way, after the flip
    assert result["changed"] is True and result["to_color"] == "blue"
    assert site.admin.live == WeightsDoc({"blue": 100}, "blue")
    assert site.doc()["history"][-1]["outcome"] == "rolled_back"


def test_check_mode_writes_nothing(capsys, site):
    files = site.files()
    result = run(capsys, site.args(), check=True, diff=True)
    assert (result["changed"], result["method"], result["to_color"]) == (True, "live", "blue")
    assert result["diff"]["after"] == WeightsDoc({"blue": 100}, "blue").render()
    assert site.files() == files and site.admin.puts == []


def test_without_lua_the_flip_reloads(capsys, site):
    result = run(capsys, site.args(admin_socket=None))
    assert result.get("failed") is not True, result
    assert result["method"] == "reload"
    assert [command[-2:] for command in site.runner.commands] == [["-t", "-q"], ["-s", "reload"]]


@pytest.mark.parametrize("overrides,message", [
    ({"app": "Demo"}, "app 'Demo' is not valid"),
    ({"environment": "no way"}, "environment 'no way' is not valid"),
    ({"target_version": "../1"}, "target_version must be letters, digits, '.', '_', '+' or '-'"),
    ({"target_version": 2.1}, "target_version must be letters, digits, '.', '_', '+' or '-'"),
    ({"target_version": True}, "target_version must be letters, digits, '.', '_', '+' or '-'"),
    ({"slot_timeout": 0}, "slot_timeout must be greater than 0."),
    ({"lb_url": "127.0.0.1:8000"}, "lb_url must start with http:// or https://"),
    ({"holder": {"run_id": "x y"}}, "holder run_id 'x y' is not valid"),
])
def test_bad_input_is_one_sentence_and_changes_nothing(capsys, site, overrides, message):
    files = site.files()
    result = run(capsys, site.args(**overrides))
    assert result["failed"] is True
    assert result["msg"].startswith(message)
    assert result["refused"] is True
    assert site.files() == files and site.admin.puts == []


def test_missing_ledger_fails(capsys, site):
    os.unlink(site.ledger_path)
    result = run(capsys, site.args())
    assert result["failed"] is True
    assert result["msg"] == "ledger %s does not exist, so demo in local has no release to roll back to." % site.ledger_path


def test_result_keys_the_playbook_routes_on(capsys, site):
    result = run(capsys, site.args(emergency=True, webhooks=["http://127.0.0.1:1/api/events"]))
    assert result.get("failed") is not True, result
    assert (result["status"], result["rolled_back"], result["already_clean"]) == ("rolled_back", True, False)
    assert result["reason"] == "emergency rollback"
    assert result["event"]["event"] == "rollback" and result["event"]["to_version"] == "1.0.0"
    # The webhooks are the action plugin's: the module never echoes them.
    assert "http://127.0.0.1:1" not in json.dumps(result)


def test_after_a_clean_canary_nothing_moves(capsys, site):
    files = site.files()
    result = run(capsys, site.args(emergency=True, previous_run={"command": "canary", "phase": "failed_clean", "version": "2.1.0"}))
    assert (result["changed"], result["already_clean"], result["status"], result["event"]) == (False, True, "unchanged", None)
    assert result["msg"] == "nothing to roll back: the canary of 2.1.0 had already left traffic on 2.0.0"
    assert site.files() == files


def test_redeploy_errors_fail_without_being_a_refusal(capsys, site):
    result = run(capsys, site.args(target_version="1.0.0", redeploy_errors=["1.0.0 on app-1: no artifact"]))
    assert result["failed"] is True
    assert result["msg"] == "demo 1.0.0 did not redeploy, traffic stays on 2.0.0: 1.0.0 on app-1: no artifact"
    assert not result.get("refused")
