"""The deployment_state module end to end through main(), on a ledger in tmp_path."""

import functools
import json
import os

import pytest
from ansible.module_utils import basic

from plugin_test_helpers import run_module
from ansible_collections.leanvibe.deploy.plugins.modules import deployment_state


ALICE = {"run_id": "a1" * 16, "controller": "ctl", "pid": 1234, "user": "alice", "started": "2026-11-27T04:58:10.120Z"}
BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}


run = functools.partial(run_module, deployment_state.main)


@pytest.fixture
def ledger(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()

    class Ledger:
        path = str(folder / "demo.ledger.json")

        def args(self, **overrides):
            values = {"path": self.path, "app": "demo", "environment": "local"}
            values.update(overrides)
            return {key: value for key, value in values.items() if value is not None}

        def raw(self):
            with open(self.path, "rb") as handle:
                return handle.read()

        def doc(self):
            return json.loads(self.raw())

        def names(self):
            return sorted(os.listdir(str(folder)))

    return Ledger()


def first_deploy(capsys, ledger):
    return run(capsys, ledger.args(action="record", deployment={"type": "deploy", "version": "1.0.0"}, outcome="deployed",
                                   reasons=["initial release"], active_color="blue", versions={"blue": "1.0.0"},
                                   weights={"blue": 100}))


def test_info_on_a_new_ledger(capsys, ledger):
    result = run(capsys, ledger.args())
    assert result["changed"] is False
    assert result["ledger"]["history"] == [] and result["ledger"]["schema"] == 1
    assert result["lock"] is None and result["in_progress"] is None
    assert ledger.names() == []


def test_record_then_info(capsys, ledger):
    result = first_deploy(capsys, ledger)
    assert result["changed"] is True
    assert result["entry"]["outcome"] == "deployed" and result["entry"]["from_version"] is None
    assert result["msg"] == "deploy of 1.0.0 demo in local recorded as deployed."
    info = run(capsys, ledger.args(action="info"))
    assert info["ledger"]["versions"] == {"blue": "1.0.0"}
    assert info["ledger"]["weights"] == {"blue": 100, "green": 0}
    assert info["ledger"]["history"] == [result["entry"]]


def test_a_whole_canary_run(capsys, ledger):
    first_deploy(capsys, ledger)
    lock = run(capsys, ledger.args(action="lock", holder=ALICE))
    assert lock["changed"] is False
    assert lock["lock"]["holder"] == {"run_id": ALICE["run_id"], "controller": "ctl", "pid": 1234, "user": "alice"}
    begin = run(capsys, ledger.args(action="begin", holder=ALICE, deployment={
        "type": "deploy", "version": "2.0.0", "from_version": "1.0.0", "canary_color": "green"}))
    assert begin["changed"] is True and begin["interrupted"] is None
    for weight in (10, 50):
        verdicts = {"weight": weight, "probes": "pass", "analysis": "pass", "reasons": []}
        step = run(capsys, ledger.args(action="step", holder=ALICE, step=verdicts))
        assert step["changed"] is True
        assert step["step"]["verdicts"] == {"probes": "pass", "analysis": "pass", "reasons": []}
    finish = run(capsys, ledger.args(action="finish", holder=ALICE, outcome="promoted", reasons=["all steps passed"],
                                     active_color="green", versions={"green": "2.0.0"}, weights={"green": 100}), diff=True)
    assert finish["changed"] is True
    assert finish["entry"]["outcome"] == "promoted"
    assert [step["weight"] for step in finish["entry"]["steps"]] == [10, 50]
    assert json.loads(finish["diff"]["before"])["in_progress"]["version"] == "2.0.0"
    assert json.loads(finish["diff"]["after"])["active_color"] == "green"
    unlock = run(capsys, ledger.args(action="unlock", holder=ALICE))
    assert unlock["changed"] is False and unlock["lock"] is None
    doc = ledger.doc()
    assert [entry["outcome"] for entry in doc["history"]] == ["deployed", "promoted"]
    assert doc["versions"] == {"blue": "1.0.0", "green": "2.0.0"}
    assert doc["lock"] is None and doc["in_progress"] is None


def test_lock_conflict_carries_lock_held_by(capsys, ledger):
    run(capsys, ledger.args(action="lock", holder=ALICE))
    before = ledger.raw()
    result = run(capsys, ledger.args(action="lock", holder=BOB))
    assert result["failed"] is True
    assert result["msg"].startswith("deployment lock of demo in local is held by run %s (pid 1234 on host ctl, user alice) "
                                    "since " % ALICE["run_id"])
    assert result["msg"].endswith("; wait, or re-run with force=true.")
    assert result["lock_held_by"] == {"run_id": ALICE["run_id"], "controller": "ctl", "pid": 1234, "user": "alice"}
    assert ledger.raw() == before


def test_holder_dead_takes_over(capsys, ledger):
    run(capsys, ledger.args(action="lock", holder=ALICE))
    result = run(capsys, ledger.args(action="lock", holder=BOB, holder_dead=True))
    assert result["lock"]["holder"]["run_id"] == BOB["run_id"]
    assert result["taken_over_from"]["run_id"] == ALICE["run_id"]


def test_unlock_of_another_run_warns(capsys, ledger, monkeypatch):
    # Captured at the source: once controller code is imported in this process (the lookup tests), module warnings go
    # to Display instead of the result.
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning, *args, **kwargs: warned.append(warning))
    run(capsys, ledger.args(action="lock", holder=ALICE))
    result = run(capsys, ledger.args(action="unlock", holder=BOB))
    assert result["changed"] is False
    assert len(warned) == 1 and warned[0].endswith("; it was left alone.")
    assert "not by run %s" % BOB["run_id"] in warned[0]
    assert ledger.doc()["lock"]["holder"]["run_id"] == ALICE["run_id"]


def test_check_mode_predicts_and_writes_nothing(capsys, ledger):
    result = run(capsys, ledger.args(action="record", deployment={"version": "1.0.0"}, outcome="deployed"), check=True, diff=True)
    assert result["changed"] is True
    assert "diff" in result
    assert ledger.names() == []
    first_deploy(capsys, ledger)
    run(capsys, ledger.args(action="lock", holder=ALICE))
    before = ledger.raw()
    result = run(capsys, ledger.args(action="begin", holder=ALICE, deployment={"version": "2.0.0"}), check=True)
    assert result["changed"] is True and result["in_progress"]["version"] == "2.0.0"
    assert ledger.raw() == before
    info = run(capsys, ledger.args(action="info"), check=True)
    assert info["ledger"]["history"][0]["version"] == "1.0.0"


def test_diff_only_in_diff_mode_and_when_changed(capsys, ledger):
    assert "diff" not in first_deploy(capsys, ledger)
    assert "diff" not in run(capsys, ledger.args(action="lock", holder=ALICE), diff=True)


@pytest.mark.parametrize("overrides,message", [
    ({"action": "record", "deployment": {"version": "1.0.0"}, "outcome": "deployed", "weights": {"blue": 50}},
     "weights must sum to 100, these sum to 50."),
    ({"action": "record", "deployment": {"version": "1.0.0"}, "outcome": "deployed", "versions": {"red": "1.0.0"}},
     "versions color 'red' is unknown: it must be one of blue, green."),
    ({"action": "record", "deployment": {"version": "1.0.0/x"}, "outcome": "deployed"},
     "deployment version: version '1.0.0/x' must not contain path separators"),
    ({"action": "begin", "holder": BOB, "deployment": {"version": "2.0.0"}},
     "begin needs the deployment lock of demo in local, which nobody holds"),
    ({"action": "finish", "holder": BOB, "outcome": "failed"}, "finish needs the deployment lock"),
    ({"action": "lock"}, "action lock needs holder"),
    ({"action": "record", "outcome": "deployed", "deployment": {"type": "canary", "version": "1"}},
     "value of type must be one of: deploy, promote, rollback"),
    ({"active_color": "red"}, "value of active_color must be one of: blue, green"),
    ({"app": "Demo"}, "app 'Demo' is not valid"),
    ({"path": "relative.json"}, "ledger path must be absolute"),
])
def test_bad_input_fails_with_one_sentence_and_writes_nothing(capsys, ledger, overrides, message):
    first_deploy(capsys, ledger)
    before = ledger.raw()
    result = run(capsys, ledger.args(**overrides))
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert ledger.raw() == before


def test_corrupt_ledger_is_refused_and_untouched(capsys, ledger):
    with open(ledger.path, "w") as handle:
        handle.write('{"schema": 1, "app": "demo"')
    result = run(capsys, ledger.args(action="lock", holder=ALICE))
    assert result["failed"] is True
    assert result["msg"].startswith("ledger %s is corrupt (not JSON: " % ledger.path)
    assert result["msg"].endswith("; fix it or move it away.")
    assert ledger.raw() == b'{"schema": 1, "app": "demo"'


def test_missing_folder_fails(capsys, tmp_path):
    path = str(tmp_path / "missing" / "demo.ledger.json")
    result = run(capsys, {"path": path, "app": "demo", "environment": "local", "action": "lock", "holder": ALICE})
    assert result["failed"] is True
    assert result["msg"] == ("folder %s of ledger %s does not exist; create it first (playbooks/site.yml does)."
                             % (os.path.dirname(path), path))
    assert not os.path.exists(os.path.dirname(path))
