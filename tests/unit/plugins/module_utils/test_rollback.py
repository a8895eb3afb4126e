"""Rollback logic (module_utils/rollback.py): the target, warm members, the flip and its ledger entry."""

import json
import os
import time

import pytest
from plugin_test_helpers import FakeAdmin, FakeRunCommand, HealthServer, free_port

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_document import empty_ledger
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import (
    NginxControl,
    UpstreamFiles,
    WeightsDoc,
    apply_weights,
    render_upstreams,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.rollback import (
    RollbackError,
    RollbackSpec,
    check_lb,
    check_members,
    colors_running,
    conf_options,
    default_target,
    rollback,
    validate_detected_at,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import parse_iso

ALICE = {"run_id": "a1" * 16, "controller": "ctl", "pid": 1234, "user": "alice"}
BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}
OPTIONS = {"keepalive": 32, "max_fails": 3, "fail_timeout": 5, "backup_other_color": True}


def entry(version, from_version, outcome, entry_id="x"):
    return {"id": entry_id, "type": "deploy", "version": version, "from_version": from_version, "outcome": outcome,
            "started": "2026-11-27T04:58:12.345Z", "finished": "2026-11-27T04:58:13.345Z", "reasons": []}


# --- the target -----------------------------------------------------------------------------------------------------

def test_default_target_is_what_served_before_the_newest_release():
    doc = empty_ledger("demo", "local")
    doc.update(active_color="green", versions={"blue": "1.0.0", "green": "2.0.0"})
    doc["history"] = [entry("1.0.0", None, "deployed", "a"), entry("2.0.0", "1.0.0", "promoted", "b"),
                      entry("2.1.0", "2.0.0", "failed", "c"), entry("2.0.0", "2.1.0", "rolled_back", "d")]
    assert default_target(doc) == ("1.0.0", "the version before 2.0.0 (history entry b)")


def test_default_target_during_a_deployment_is_the_version_it_replaces():
    doc = empty_ledger("demo", "local")
    doc.update(active_color="green", versions={"blue": "1.0.0", "green": "2.0.0"})
    doc["history"] = [entry("2.0.0", "1.0.0", "promoted")]
    doc["in_progress"] = {"id": "y", "type": "deploy", "version": "2.1.0", "from_version": "2.0.0", "steps": []}
    assert default_target(doc)[0] == "2.0.0"


def test_default_target_falls_back_to_the_idle_color_then_none():
    doc = empty_ledger("demo", "local")
    doc.update(active_color="green", versions={"blue": "1.0.0", "green": "2.0.0"})
    doc["history"] = [entry("1.0.0", None, "deployed")]
    assert default_target(doc) == ("1.0.0", "the version of the idle color blue")
    doc["versions"] = {"green": "2.0.0"}
    assert default_target(doc) == (None, None)


def test_colors_running_prefers_the_given_color():
    doc = empty_ledger("demo", "local")
    doc["versions"] = {"blue": "1.0.0", "green": "1.0.0"}
    assert colors_running(doc, "1.0.0", prefer="green") == ["green", "blue"]
    assert colors_running(doc, "2.0.0") == []


# --- warm members and the check through the LB ----------------------------------------------------------------------

@pytest.fixture
def servers():
    started = []

    def make(version, status=200):
        server = HealthServer()
        server.serve(status=status, version=version)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def member(server):
    return "127.0.0.1:%d" % server.port


def test_members_all_answering_the_version_are_warm(servers):
    first, second = servers("1.0.0"), servers("1.0.0")
    warm, report = check_members([member(first), member(second)], "1.0.0", 1)
    assert warm is True
    assert report == {member(first): "healthy", member(second): "healthy"}
    assert first.paths == ["/health"] and second.paths == ["/health"]


def test_one_member_with_another_version_or_down_is_cold(servers):
    good, wrong = servers("1.0.0"), servers("2.0.0")
    dead = "127.0.0.1:%d" % free_port()
    warm, report = check_members([member(good), member(wrong), dead], "1.0.0", 1)
    assert warm is False
    assert report[member(good)] == "healthy"
    assert report[member(wrong)] == "serves version 2.0.0, not 1.0.0"
    assert "refused" in report[dead].lower()


def test_members_are_checked_concurrently_within_the_timeout(listening_socket):
    stuck = ["127.0.0.1:%d" % listening_socket() for _index in range(4)]  # accept, never answer
    started = time.monotonic()
    warm, report = check_members(stuck, "1.0.0", 0.3)
    assert warm is False
    assert time.monotonic() - started < 1.0
    assert len(report) == 4


def test_check_lb_needs_the_version_n_times_in_a_row(servers):
    lb = servers("1.0.0")
    result = check_lb("http://127.0.0.1:%d/" % lb.port, "1.0.0", count=3, timeout=2)
    assert (result["passed"], result["attempts"], result["in_a_row"]) == (True, 3, 3)
    assert result["url"] == "http://127.0.0.1:%d/health" % lb.port
    result = check_lb("http://127.0.0.1:%d" % lb.port, "2.0.0", count=3, timeout=0.3)
    assert result["passed"] is False
    assert result["detail"] == "serves version 1.0.0, not 2.0.0"


def test_conf_options_are_read_back_from_the_conf_in_place():
    members = {"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9002"]}
    for options in (OPTIONS, {"keepalive": 8, "max_fails": 1, "fail_timeout": 10, "backup_other_color": False}):
        assert conf_options("demo", members, render_upstreams("demo", members, options)) == options
    doc = WeightsDoc({"blue": 90, "green": 10}, "blue", "green")
    assert conf_options("demo", members, render_upstreams("demo", members, OPTIONS, doc), doc) == OPTIONS
    assert conf_options("demo", members, None) == OPTIONS


# --- rollback() against a fake nginx --------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path, servers):
    """Blue runs 1.0.0, green runs 2.0.0 and takes all traffic; the ledger says so; nginx runs with Lua."""

    class Site:
        pass

    env = Site()
    env.conf_dir = str(tmp_path / "leanvibe")
    env.pid_file = str(tmp_path / "nginx.pid")
    env.runner = FakeRunCommand()
    env.blue, env.green = servers("1.0.0"), servers("2.0.0")
    env.members = {"blue": [member(env.blue)], "green": [member(env.green)]}
    env.nginx = NginxControl(env.runner, "/usr/sbin/nginx", pid_file=env.pid_file)
    live = WeightsDoc({"green": 100}, "green")
    env.admin = FakeAdmin()
    apply_weights("demo", env.conf_dir, live, env.members, OPTIONS, env.nginx, env.admin)  # nginx stopped: files
    with open(env.pid_file, "w") as handle:
        handle.write("%d\n" % os.getpid())
    env.admin.live = live
    env.runner.commands = []
    (tmp_path / "state").mkdir()
    env.ledger = Ledger(str(tmp_path / "state" / "demo.ledger.json"), "demo", "local")
    run_action(env.ledger, "record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "active_color": "blue",
                                      "versions": {"blue": "1.0.0"}, "weights": {"blue": 100}})
    run_action(env.ledger, "record", {"deployment": {"version": "2.0.0", "from_version": "1.0.0"}, "outcome": "promoted",
                                      "active_color": "green", "versions": {"green": "2.0.0"}, "weights": {"green": 100}})

    def params(**overrides):
        values = {"app": "demo", "environment": "local", "ledger": env.ledger.path, "conf_dir": env.conf_dir,
                  "reason": "manual rollback", "slot_timeout": 1, "check_timeout": 1, "check_count": 3}
        values.update(overrides)
        return values

    def files():
        result = {}
        for folder in (env.conf_dir, os.path.dirname(env.ledger.path)):
            for name in sorted(os.listdir(folder)):
                with open(os.path.join(folder, name), "rb") as handle:
                    result[name] = handle.read()
        return result

    def doc():
        with open(env.ledger.path) as handle:
            return json.load(handle)

    env.params, env.files, env.doc = params, files, doc
    return env


def test_warm_flip_goes_live_and_writes_one_entry(site):
    result = rollback(RollbackSpec(site.params()), site.nginx, site.admin)
    assert result["changed"] is True
    assert (result["from_version"], result["to_version"], result["to_color"], result["method"]) == ("2.0.0", "1.0.0", "blue", "live")
    assert site.admin.puts == [WeightsDoc({"blue": 100}, "blue")]
    assert site.runner.commands == []  # no nginx -t, no reload
    assert 0 <= result["duration_ms"] <= result["total_ms"]
    assert result["needs_redeploy"] is False and result["check"] is None
    doc = site.doc()
    assert (doc["active_color"], doc["weights"]) == ("blue", {"blue": 100, "green": 0})
    assert len(doc["history"]) == 3
    assert doc["history"][-1] == result["entry"]
    assert {key: result["entry"][key] for key in ("type", "version", "from_version", "outcome", "reasons", "autonomous")} == {
        "type": "rollback", "version": "1.0.0", "from_version": "2.0.0", "outcome": "rolled_back",
        "reasons": ["manual rollback"], "autonomous": False}
    assert WeightsDoc.parse(open(UpstreamFiles(site.conf_dir, "demo").weights).read()) == WeightsDoc({"blue": 100}, "blue")


def test_rollback_closes_the_deployment_in_progress_as_its_entry(site):
    run_action(site.ledger, "lock", {"holder": ALICE})
    run_action(site.ledger, "begin", {"holder": ALICE, "deployment": {"version": "2.1.0", "from_version": "2.0.0",
                                                                      "canary_color": "blue"}})
    run_action(site.ledger, "step", {"holder": ALICE, "step": {"weight": 10}})
    site.blue.serve(version="2.1.0")
    site.admin.live = WeightsDoc({"green": 90, "blue": 10}, "green", "blue")
    result = rollback(RollbackSpec(site.params(holder=ALICE, autonomous=True, reason="canary 5xx 30 %")), site.nginx, site.admin)
    assert (result["to_version"], result["to_color"]) == ("2.0.0", "green")
    assert site.admin.live == WeightsDoc({"green": 100}, "green")
    doc = site.doc()
    assert len(doc["history"]) == 3  # the canary's entry, closed by the rollback: no second entry
    closed = doc["history"][-1]
    assert (closed["version"], closed["type"], closed["outcome"], closed["reasons"], closed["autonomous"]) == (
        "2.1.0", "deploy", "rolled_back", ["canary 5xx 30 %"], True)
    assert [step["weight"] for step in closed["steps"]] == [10]
    assert doc["in_progress"] is None
    assert doc["lock"]["holder"]["run_id"] == ALICE["run_id"]  # the caller keeps its lock


def test_entry_records_when_the_failure_was_seen_and_when_traffic_was_back(site):
    run_action(site.ledger, "lock", {"holder": ALICE})
    run_action(site.ledger, "begin", {"holder": ALICE, "deployment": {"version": "2.1.0", "from_version": "2.0.0",
                                                                      "canary_color": "blue"}})
    site.blue.serve(version="2.1.0")
    site.admin.live = WeightsDoc({"green": 90, "blue": 10}, "green", "blue")
    gate_failed = time.time() - 2.5
    result = rollback(RollbackSpec(site.params(holder=ALICE, autonomous=True, detected_at=str(gate_failed))), site.nginx, site.admin)
    record = site.doc()["history"][-1]["rollback"]
    assert record["duration_ms"] == result["duration_ms"]
    detected, begun, restored = (parse_iso(record[key]).timestamp() for key in ("detected", "started", "restored"))
    assert abs(detected - gate_failed) < 0.002
    assert detected < begun <= restored
    assert abs(restored - result["flipped_at"]) < 0.002


def test_manual_rollback_records_no_detection_time(site):
    rollback(RollbackSpec(site.params()), site.nginx, site.admin)
    record = site.doc()["history"][-1]["rollback"]
    assert record["detected"] is None
    assert parse_iso(record["started"]) <= parse_iso(record["restored"])


@pytest.mark.parametrize("value, expected", [
    ("2026-11-26T10:00:00.250Z", 1795687200.25),
    ("1795687200.25", 1795687200.25),
    (1795687200.25, 1795687200.25),
    ("", None),
    (None, None),
])
def test_detected_at_takes_iso_or_epoch_seconds(value, expected):
    moment = validate_detected_at(value)
    assert (moment.timestamp() if moment else None) == expected


@pytest.mark.parametrize("value", ["yesterday", "-5", "0", "1e20", "nan", "2026-13-01T00:00:00Z"])
def test_detected_at_that_is_no_time_is_refused_before_anything_changes(site, value):
    files = site.files()
    with pytest.raises(ValidationError, match="detected_at must be an ISO 8601 time or seconds since the epoch"):
        rollback(RollbackSpec(site.params(detected_at=value)), site.nginx, site.admin)
    assert site.files() == files


def test_cold_target_needs_a_redeploy_and_changes_nothing(site):
    site.blue.serve(status=503, body="down")
    files = site.files()
    result = rollback(RollbackSpec(site.params()), site.nginx, site.admin)
    assert result["changed"] is False
    assert (result["needs_redeploy"], result["target_color"], result["to_version"], result["to_color"]) == (True, "blue", "1.0.0", None)
    assert "redeploy 1.0.0 to blue" in result["msg"]
    assert result["warm"] == {"blue": {member(site.blue): "HTTP 503"},
                              "green": {member(site.green): "serves version 2.0.0, not 1.0.0"}}
    assert result["msg"] == ("demo in local cannot flip back to 1.0.0 now: blue runs it but is not warm (%s: HTTP 503); "
                             "redeploy 1.0.0 to blue and roll back again." % member(site.blue))
    assert site.files() == files and site.admin.puts == []


def test_version_in_no_color_needs_a_redeploy(site):
    run_action(site.ledger, "record", {"deployment": {"version": "0.9.0"}, "outcome": "failed"})
    result = rollback(RollbackSpec(site.params(target_version="0.9.0")), site.nginx, site.admin)
    assert (result["needs_redeploy"], result["target_color"]) == (True, "blue")
    assert "no color runs it" in result["msg"]


def test_never_deployed_target_is_refused_and_nothing_changes(site):
    files = site.files()
    with pytest.raises(ValidationError, match=r"^version 9\.9\.9 of demo was never deployed in local: it is in no color "):
        rollback(RollbackSpec(site.params(target_version="9.9.9")), site.nginx, site.admin)
    assert site.files() == files and site.admin.puts == []


def test_already_serving_is_unchanged(site):
    files = site.files()
    result = rollback(RollbackSpec(site.params(target_version="2.0.0")), site.nginx, site.admin)
    assert result["changed"] is False
    assert result["msg"] == "demo in local already serves 2.0.0 from green at 100 %; nothing to roll back."
    assert site.files() == files and site.admin.puts == []


def test_failed_check_fails_but_the_flip_stays(site):
    dead = "http://127.0.0.1:%d" % free_port()
    with pytest.raises(RollbackError) as exc:
        rollback(RollbackSpec(site.params(lb_url=dead, check_timeout=0.3)), site.nginx, site.admin)
    message = str(exc.value)
    assert message.startswith("demo in local rolled back from 2.0.0 to 1.0.0 on blue in ")
    assert "but %s/health did not answer 1.0.0 3 times in a row within 0.3 s" % dead in message
    assert message.endswith("traffic stays on blue, the best known state.")
    assert exc.value.result["check"]["passed"] is False
    assert site.admin.live == WeightsDoc({"blue": 100}, "blue")
    assert site.doc()["active_color"] == "blue"


def test_passing_check_through_the_lb(site):
    result = rollback(RollbackSpec(site.params(lb_url="http://127.0.0.1:%d" % site.blue.port)), site.nginx, site.admin)
    assert result["check"]["passed"] is True and result["check"]["in_a_row"] == 3
    assert result["msg"].endswith("answers 1.0.0.")


def test_lock_of_another_run_blocks_unless_emergency(site):
    run_action(site.ledger, "lock", {"holder": BOB})
    files = site.files()
    with pytest.raises(LockConflict, match="wait, or roll back with emergency=true to take it over"):
        rollback(RollbackSpec(site.params()), site.nginx, site.admin)
    assert site.files() == files
    result = rollback(RollbackSpec(site.params(emergency=True, holder=ALICE, lb_url="http://127.0.0.1:1")), site.nginx, site.admin)
    assert result["lock_taken_over_from"]["run_id"] == BOB["run_id"]
    assert result["check"] is None
    assert site.doc()["lock"]["holder"]["run_id"] == ALICE["run_id"]


def test_check_mode_predicts_and_writes_nothing(site):
    files = site.files()
    result = rollback(RollbackSpec(site.params()), site.nginx, site.admin, check_mode=True)
    assert (result["changed"], result["method"], result["to_color"]) == (True, "live", "blue")
    assert result["entry"] is None
    assert site.files() == files and site.admin.puts == []


# --- what the playbook routes on: validation, the run before, the redeploy, the outcome ---------------------------------

# rollback.yml fails with this sentence (the bad-input matrix of tests/integration keeps the case ../x).
@pytest.mark.parametrize("value, shown", [
    ("../x", '"../x"'), ("1.0 beta", '"1.0 beta"'), ("a/b", '"a/b"'), (True, "true"), (2.1, "2.1"), ([1], "[1]"),
])
def test_target_version_that_is_no_version_is_refused_in_one_sentence(site, value, shown):
    with pytest.raises(ValidationError) as exc:
        RollbackSpec(site.params(target_version=value))
    message = str(exc.value)
    assert message.startswith("target_version must be letters, digits, '.', '_', '+' or '-'"), message
    assert message.endswith("without path separators or spaces (got %s)." % shown), message


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("1.0.0", "1.0.0"), (3, "3")])
def test_target_version_empty_means_the_previous_release_and_a_whole_number_is_text(site, value, expected):
    assert RollbackSpec(site.params(target_version=value)).target_version == expected


def test_reason_defaults_by_emergency(site):
    assert RollbackSpec(site.params(reason=None)).reason == "manual rollback"
    assert RollbackSpec(site.params(reason=None, emergency=True)).reason == "emergency rollback"
    assert RollbackSpec(site.params(reason="5xx", emergency=True)).reason == "5xx"


def test_warm_flip_says_rolled_back_and_carries_its_event(site):
    result = rollback(RollbackSpec(site.params(reason=None, emergency=True)), site.nginx, site.admin)
    assert (result["status"], result["rolled_back"], result["already_clean"]) == ("rolled_back", True, False)
    event = result["event"]
    assert {key: value for key, value in event.items() if key != "at"} == {
        "event": "rollback", "version": "2.0.0", "to_version": "1.0.0", "weights": {"1.0.0": 100},
        "reasons": ["emergency rollback"], "rollback_ms": result["duration_ms"],
        "text": "demo rolled back in local from 2.0.0 to 1.0.0", "app": "demo", "environment": "local"}
    assert parse_iso(event["at"])


def test_nothing_moved_is_unchanged_without_event(site):
    result = rollback(RollbackSpec(site.params(target_version="2.0.0")), site.nginx, site.admin)
    assert (result["status"], result["rolled_back"], result["event"]) == ("unchanged", False, None)


def test_needs_redeploy_is_its_own_status_without_event(site):
    site.blue.stop()
    result = rollback(RollbackSpec(site.params()), site.nginx, site.admin)
    assert (result["status"], result["rolled_back"], result["event"], result["needs_redeploy"]) == (
        "needs_redeploy", False, None, True)


def test_check_mode_has_no_event(site):
    result = rollback(RollbackSpec(site.params()), site.nginx, site.admin, check_mode=True)
    assert (result["status"], result["event"]) == ("rolled_back", None)


@pytest.mark.parametrize("command", ["canary", "blue-green"])
@pytest.mark.parametrize("phase", ["rolled_back", "failed_clean", "planned", "checked", "unchanged"])
def test_after_a_run_that_left_traffic_clean_nothing_moves(site, command, phase):
    files = site.files()
    previous = {"command": command, "phase": phase, "version": "2.1.0", "status": "rolled_back"}
    result = rollback(RollbackSpec(site.params(previous_run=previous, emergency=True)), site.nginx, site.admin)
    assert (result["changed"], result["already_clean"], result["status"], result["rolled_back"], result["event"]) == (
        False, True, "unchanged", False, None)
    assert (result["from_version"], result["to_version"], result["to_color"], result["duration_ms"]) == ("2.0.0", "2.0.0", "green", 0)
    assert result["msg"] == "nothing to roll back: the %s of 2.1.0 had already left traffic on 2.0.0" % command
    assert result["reason"] == "the %s of 2.1.0 had already left traffic on 2.0.0" % command
    assert site.files() == files and site.admin.puts == []


@pytest.mark.parametrize("previous, overrides", [
    ({"command": "canary", "phase": "failed"}, {}),                      # the failed run may have left traffic anywhere
    ({"command": "canary", "phase": "done", "status": "promoted"}, {}),  # a promotion: roll it back
    ({"command": "rollback", "phase": "done"}, {}),
    ({"command": "canary", "phase": "rolled_back"}, {"target_version": "1.0.0"}),  # a target is always honoured
    ("canary rolled_back", {}),                                          # not a mapping: says nothing
    ([], {}),
])
def test_a_run_before_that_did_not_leave_traffic_clean_does_not_stop_the_rollback(site, previous, overrides):
    result = rollback(RollbackSpec(site.params(previous_run=previous, **overrides)), site.nginx, site.admin)
    assert (result["already_clean"], result["rolled_back"], result["to_version"]) == (False, True, "1.0.0")


def test_redeploy_errors_fail_with_them_and_change_nothing(site):
    run_action(site.ledger, "record", {"deployment": {"version": "0.9.0"}, "outcome": "failed"})
    files = site.files()
    errors = ["0.9.0 on app-1: artifact missing", "0.9.0 on app-2: port in use"]
    with pytest.raises(RollbackError) as exc:
        rollback(RollbackSpec(site.params(target_version="0.9.0", redeploy_errors=errors)), site.nginx, site.admin)
    assert str(exc.value) == ("demo 0.9.0 did not redeploy, traffic stays on 2.0.0: 0.9.0 on app-1: artifact missing; "
                              "0.9.0 on app-2: port in use")
    assert exc.value.result["changed"] is False
    assert site.files() == files and site.admin.puts == []
