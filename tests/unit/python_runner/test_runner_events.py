"""leanvibe_runner.events.RunInterpreter: recorded and synthetic ansible-runner event streams -> progress, results."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import P95_REASON, Stream, canary_plan, interpret, load_events, validate  # noqa: E402

from leanvibe_runner.codes import ExitCode  # noqa: E402
from leanvibe_runner.events import RunEvent, RunInterpreter  # noqa: E402

PROGRESS_KINDS = ("plan", "phase", "step", "probes", "analysis", "gate", "rollback", "failure", "lock_held")


def kinds(events, skip=("task",)):
    return [event.kind for event in events if event.kind not in skip]


# -- the recorded canary that promoted 2.0.0 -> 2.2.0 in 4 steps --------------------------------------------
@pytest.fixture(scope="module")
def promoted():
    return interpret("canary", load_events("canary_promoted.json"))


def test_promote_stream_progress_in_order(promoted):
    _interpreter, events = promoted
    assert kinds(events) == (
        ["plan", "phase", "probes"]  # the plan, 'started', the canary's own probes on its port
        + ["step", "analysis", "probes", "gate"] * 4
        + ["probes", "phase"])  # the final probes at full traffic, then 'done'
    assert all(isinstance(event, RunEvent) for event in events)


def test_promote_stream_messages(promoted):
    _interpreter, events = promoted
    shown = [event for event in events if event.kind != "task"]
    assert shown[0].message == "canary 2.0.0 -> 2.2.0, steps 10 -> 25 -> 50 -> 100 %"
    assert shown[1].message == "deploying 2.2.0 to blue"
    steps = [event.message for event in events if event.kind == "step"]
    assert steps == ["step 1/4: 10 % of traffic on the canary", "step 2/4: 25 % of traffic on the canary",
                     "step 3/4: 50 % of traffic on the canary", "step 4/4: 100 % of traffic on the canary"]
    gates = [event.message for event in events if event.kind == "gate"]
    assert gates == ["gate at %d %%: PASS" % weight for weight in (10, 25, 50, 100)]
    assert shown[-1].kind == "phase" and shown[-1].message == "promoted 2.2.0"


def test_promote_stream_task_events_name_the_tasks(promoted):
    _interpreter, events = promoted
    tasks = [event for event in events if event.kind == "task"]
    planned = next(event for event in tasks if event.message == "Plan the canary from the version, the steps and the ledger")
    assert planned.data == {"play": "Plan the canary"}
    assert "Gate the step" in [event.message for event in tasks]


def test_promote_stream_plan_event_carries_the_published_plan(promoted):
    _interpreter, events = promoted
    plan = next(event for event in events if event.kind == "plan")
    assert plan.data["planned_steps"] == [10, 25, 50, 100]
    assert plan.data["phase"] == "planned"
    assert plan.data["from_version"] == "2.0.0"


def test_promote_stream_result(promoted):
    interpreter, _events = promoted
    result = interpreter.result(0, "successful")
    assert result.status == "promoted"
    assert result.exit_code == ExitCode.OK and result.ok
    assert (result.version, result.from_version) == ("2.2.0", "2.0.0")
    assert [step.weight for step in result.steps] == [10, 25, 50, 100]
    assert all(step.verdict == "pass" and step.probes == "pass" for step in result.steps)
    # The recorded run had too little traffic for a verdict; inconclusive does not fail the gate.
    assert {step.analysis for step in result.steps} == {"inconclusive"}
    assert result.rolled_back is False and result.reasons == [] and result.rollback_ms is None
    assert result.details == {"stable_color": "green", "canary_color": "blue", "planned_steps": [10, 25, 50, 100]}
    assert not interpreter.failures and interpreter.final_stats_seen
    validate(result)


# -- the recorded canary 2.2.0 -> 2.3.0 rolled back at its first gate ----------------------------------------
@pytest.fixture(scope="module")
def rolled_back():
    return interpret("canary", load_events("canary_rolled_back.json"))


def test_rollback_stream_progress_in_order(rolled_back):
    _interpreter, events = rolled_back
    assert kinds(events) == ["plan", "phase", "probes", "step", "analysis", "probes", "gate", "rollback", "phase",
                             "failure"]
    gate = next(event for event in events if event.kind == "gate")
    assert gate.message == "gate at 25 %%: FAIL (%s)" % P95_REASON
    assert gate.data["verdict"] == "fail"
    rollback = next(event for event in events if event.kind == "rollback")
    assert rollback.message == "traffic back on 2.2.0 (blue) in 15 ms"
    assert rollback.data["duration_ms"] == 15
    phase = [event for event in events if event.kind == "phase"][-1]
    assert phase.message.startswith("rolled back to 2.2.0: gate failed at 25 %")
    analysis = next(event for event in events if event.kind == "analysis")
    assert analysis.data["verdict"] == "fail" and analysis.data["host"] == "lb-local"


def test_rollback_stream_failed_gate_is_not_a_failure_event(rolled_back):
    _interpreter, events = rolled_back
    failures = [event for event in events if event.kind == "failure"]
    assert len(failures) == 1
    assert failures[0].data["task"] == "End the run rolled back"
    assert failures[0].data["unreachable"] is False


def test_rollback_stream_result(rolled_back):
    interpreter, _events = rolled_back
    result = interpreter.result(2, "failed")
    assert result.exit_code == ExitCode.FAILED_CLEAN
    assert result.status == "rolled_back"
    assert result.rolled_back is True
    assert any("p95" in reason for reason in result.reasons)
    assert result.reasons == ["gate failed at 25 %: " + P95_REASON]
    assert (result.version, result.from_version) == ("2.3.0", "2.2.0")
    assert len(result.steps) == 1
    step = result.steps[0]
    assert (step.weight, step.verdict, step.probes, step.analysis) == (25, "fail", "pass", "fail")
    assert step.reasons == [P95_REASON]
    assert isinstance(result.rollback_ms, int) and not isinstance(result.rollback_ms, bool) and result.rollback_ms == 15
    validate(result)


# -- the recorded probe, status and history runs -------------------------------------------------------------
def test_probe_stream_passed():
    interpreter, events = interpret("probe", load_events("probe_passed.json"))
    assert kinds(events) == ["probes", "phase"]
    assert [event.message for event in events if event.kind == "phase"] == ["probes passed"]
    result = interpreter.result(0, "successful")
    assert (result.status, result.exit_code) == ("passed", ExitCode.OK)
    assert [probe["name"] for probe in result.details["probes"]] == ["basic_health", "api_functionality"]
    validate(result)


def test_status_stream_not_serving():
    interpreter, events = interpret("status", load_events("status_not_serving.json"))
    assert [event.message for event in events if event.kind == "phase"] == ["the LB answers -1: not_serving "]
    result = interpreter.result(0, "successful")
    assert (result.status, result.exit_code) == ("not_serving", ExitCode.NEEDS_HUMAN)
    assert result.reasons == ["the LB at http://127.0.0.1:8000 does not answer /health with 200"]
    assert result.details["active_color"] == "green"
    assert result.details["weights"] == {"blue": 0, "green": 100}
    assert "command" not in result.details and "phase" not in result.details
    validate(result)


def test_history_stream_serving():
    interpreter, _events = interpret("history", load_events("history_serving.json"))
    result = interpreter.result(0, "successful")
    assert (result.command, result.status, result.exit_code, result.version) == (
        "history", "serving", ExitCode.OK, "2.2.0")
    assert result.reasons == []
    assert len(result.details["history"]) >= 1
    validate(result)


def test_recorded_missing_ansible_playbook_is_a_usage_error():
    interpreter, events = interpret("status", load_events("status_rc127.json"))
    assert events == []
    result = interpreter.result(127, "failed")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert result.reasons == ["ansible-playbook ended with failed (rc 127)"]
    validate(result)


# -- synthetic streams ---------------------------------------------------------------------------------------
def test_lock_held_by_another_run():
    holder = {"run_id": "abc", "pid": 4242, "host": "ci-7", "user": "deploy"}
    stream = canary_plan(Stream()).failed(
        "Take the deploy lock", "leanvibe.deploy.deployment_state",
        {"msg": "deployment lock of demo held by run abc", "lock_held_by": holder})
    interpreter, events = interpret("canary", stream.events)
    assert kinds(events) == ["plan", "lock_held", "failure"]
    lock = events[1]
    assert lock.message == "deployment lock of demo held by run abc"
    assert lock.data == {"holder": holder}
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("locked", ExitCode.LOCKED)
    assert result.lock_held_by == holder
    assert result.reasons == ["deployment lock of demo held by run abc"]
    validate(result)


def test_lock_failure_with_ignore_errors_is_no_failure_event():
    stream = Stream().failed("Take the deploy lock", "leanvibe.deploy.deployment_state",
                             {"msg": "held", "lock_held_by": {"run_id": "x"}}, ignore_errors=True)
    interpreter, events = interpret("status", stream.events)
    assert kinds(events) == ["lock_held"]
    assert interpreter.failures == []


def test_a_successful_deployment_state_call_is_no_lock():
    stream = Stream().ok("Read the ledger", "leanvibe.deploy.deployment_state",
                         {"msg": "ok", "lock_held_by": {"run_id": "x"}})
    interpreter, events = interpret("canary", stream.events)
    assert events == [] and interpreter.lock_held_by is None


@pytest.mark.parametrize("plan", [False, True], ids=["phase-none", "phase-planned"])
def test_canary_failing_before_changes_is_invalid(plan):
    stream = canary_plan(Stream()) if plan else Stream()
    stream.failed("Check the requested version", "ansible.builtin.assert",
                  {"msg": "app_version must be given (-e app_version=X)"})
    interpreter, events = interpret("canary", stream.events)
    assert interpreter.phase == ("planned" if plan else None)
    failure = events[-1]
    assert failure.kind == "failure"
    assert failure.message == "Check the requested version on lb1: app_version must be given (-e app_version=X)"
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert result.reasons == ["app_version must be given (-e app_version=X)"]
    validate(result)


def test_canary_failing_after_it_started_is_unknown():
    stream = canary_plan(Stream()).publish(phase="started")
    stream.failed("Run the release in its slot", "leanvibe.deploy.slot_release", {"msg": "port 9002 in use"},
                  host="app1")
    interpreter, events = interpret("canary", stream.events)
    assert kinds(events) == ["plan", "phase", "failure"]
    assert events[1].message == "deploying 2.3.0 to green"
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("unknown", ExitCode.NEEDS_HUMAN)
    assert result.reasons == ["port 9002 in use"]
    assert result.rolled_back is False
    validate(result)


def test_unreachable_host_is_a_failure_event():
    stream = canary_plan(Stream()).publish(phase="started").unreachable("Move traffic", {"msg": ""})
    interpreter, events = interpret("canary", stream.events)
    assert events[-1].kind == "failure" and events[-1].data["unreachable"] is True
    assert events[-1].data["msg"] == "unreachable"
    assert events[-1].message == "Move traffic on lb1: unreachable"
    assert interpreter.failures == ["unreachable"]


def test_unreachable_host_after_start_needs_a_human():
    stream = canary_plan(Stream()).publish(phase="started")
    stream.unreachable("Set the traffic weights of the app", {"msg": "ssh: connect to host lb2 port 22: timed out"},
                       host="lb2")
    interpreter, _events = interpret("canary", stream.events)
    result = interpreter.result(4, "failed")  # what ansible-playbook returns when a host was unreachable
    assert (result.status, result.exit_code) == ("unknown", ExitCode.NEEDS_HUMAN)


def test_canary_failing_cleanly_before_taking_traffic():
    stream = canary_plan(Stream()).publish(phase="started")
    stream.publish(phase="failed_clean", status="failed", rolled_back=False,
                   reasons=["canary 2.3.0 on app1: Synthetic probes failed"], rollback_ms=None)
    interpreter, events = interpret("canary", stream.events)
    assert events[-1].message == "failed, traffic stays on 2.2.0: canary 2.3.0 on app1: Synthetic probes failed"
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code, result.rolled_back) == ("failed", ExitCode.FAILED_CLEAN, False)
    assert result.rollback_ms is None
    validate(result)


def test_rollback_command_failing_needs_a_human():
    stream = Stream().failed("Stop with the rollback's reason", "ansible.builtin.fail",
                             {"msg": "demo cannot flip back to 2.0.0 now: no color runs it"})
    interpreter, _events = interpret("rollback", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("rollback_failed", ExitCode.NEEDS_HUMAN)
    assert result.reasons == ["demo cannot flip back to 2.0.0 now: no color runs it"]
    validate(result)


def test_rollback_command_succeeding():
    stream = Stream().ok("Flip traffic to the warm release", "leanvibe.deploy.rollback",
                         {"from_version": "2.3.0", "to_version": "2.2.0", "to_color": "blue", "duration_ms": 12,
                          "reason": "manual rollback", "needs_redeploy": False})
    stream.publish(command="rollback", phase="done", status="rolled_back", rolled_back=True, version="2.2.0",
                   from_version="2.3.0", reasons=["manual rollback"], rollback_ms=12)
    interpreter, events = interpret("rollback", stream.events)
    assert kinds(events) == ["rollback", "phase"]
    assert events[0].data == {"from_version": "2.3.0", "to_version": "2.2.0", "to_color": "blue",
                              "duration_ms": 12, "reason": "manual rollback", "needs_redeploy": False}
    assert events[1].message == "rolled_back: 2.3.0 -> 2.2.0"
    result = interpreter.result(0, "successful")
    assert (result.status, result.exit_code, result.rolled_back, result.rollback_ms) == (
        "rolled_back", ExitCode.OK, True, 12)
    validate(result)


def test_a_rollback_after_a_clean_run_reports_no_flip():
    stream = Stream().ok("Flip traffic to the warm release", "leanvibe.deploy.rollback",
                         {"from_version": "2.2.0", "to_version": "2.2.0", "to_color": "blue", "duration_ms": 0,
                          "already_clean": True, "needs_redeploy": False, "status": "unchanged", "rolled_back": False})
    stream.publish(command="rollback", phase="done", status="unchanged", rolled_back=False, version="2.2.0",
                   from_version="2.2.0", reasons=["the canary of 2.3.0 had already left traffic on 2.2.0"], rollback_ms=0)
    interpreter, events = interpret("rollback", stream.events)
    assert kinds(events) == ["phase"] and interpreter.rollback is None
    result = interpreter.result(0, "successful")
    assert (result.status, result.exit_code, result.rolled_back) == ("unchanged", ExitCode.OK, False)
    validate(result)


def test_a_failed_rollback_module_call_is_not_a_rollback():
    stream = Stream().failed("Flip", "leanvibe.deploy.rollback", {"msg": "no", "to_version": "2.0.0"})
    interpreter, events = interpret("rollback", stream.events)
    assert kinds(events) == ["failure"]
    assert interpreter.rollback is None


def test_rollback_ms_falls_back_to_the_rollback_module_result():
    stream = canary_plan(Stream()).publish(phase="started")
    stream.ok("Roll back", "leanvibe.deploy.rollback", {"to_version": "2.2.0", "to_color": "blue", "duration_ms": 41})
    stream.publish(phase="rolled_back", status="rolled_back", rolled_back=True, reasons=["aborted by the operator"])
    interpreter, _events = interpret("canary", stream.events)
    result = interpreter.result(2, "failed")
    assert result.rollback_ms == 41
    validate(result)


def test_rollback_ms_published_as_text_becomes_an_int():
    stream = canary_plan(Stream()).publish(phase="rolled_back", status="rolled_back", rolled_back=True,
                                           reasons=["x"], rollback_ms="27")
    interpreter, _events = interpret("canary", stream.events)
    assert interpreter.result(2, "failed").rollback_ms == 27


def test_rollback_ms_of_zero_is_kept():
    stream = canary_plan(Stream()).publish(phase="rolled_back", status="rolled_back", rolled_back=True,
                                           reasons=["x"], rollback_ms=0)
    interpreter, _events = interpret("canary", stream.events)
    assert interpreter.result(2, "failed").rollback_ms == 0


def test_probe_command_with_failed_probes_fails_cleanly():
    stream = Stream().ok("Run the synthetic probes", "leanvibe.deploy.synthetic_probe",
                         {"passed": False, "msg": "1 of 6 probes failed", "url": "http://lb", "mode": "quick"})
    stream.publish(command="probe", phase="done", status="failed", reasons=["1 of 6 probes failed"],
                   probes=[{"name": "basic_health", "passed": False, "duration_ms": 3.0, "detail": "503"}])
    stream.failed("Require the suite to pass", "ansible.builtin.assert",
                  {"msg": "Synthetic probes failed against http://lb: 1 of 6 probes failed"})
    interpreter, events = interpret("probe", stream.events)
    assert kinds(events) == ["probes", "phase", "failure"]
    assert events[0].message == "probes FAILED: 1 of 6 probes failed"
    assert events[0].data == {"passed": False, "url": "http://lb", "mode": "quick"}
    assert events[1].message == "probes failed"
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("failed", ExitCode.FAILED_CLEAN)
    assert result.reasons == ["1 of 6 probes failed"]
    assert result.details["probes"][0]["detail"] == "503"
    validate(result)


def test_probe_command_failing_before_publishing_is_invalid():
    stream = Stream().failed("Run the probe suite through the LB", "ansible.builtin.include_role",
                             {"msg": "the role 'leanvibe.deploy.synthetic_probes' was not found"})
    interpreter, _events = interpret("probe", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)


def test_status_command_not_serving_needs_a_human():
    stream = Stream().publish(command="status", phase="done", status="not_serving", version=None,
                              lb_url="http://10.0.0.1", lb_status=-1, reasons=[])
    interpreter, events = interpret("status", stream.events)
    assert events[0].message == "the LB answers -1: not_serving "
    result = interpreter.result(0, "successful")
    assert (result.status, result.exit_code) == ("not_serving", ExitCode.NEEDS_HUMAN)
    assert result.reasons == ["the LB at http://10.0.0.1 does not answer /health with 200"]
    assert result.details["lb_status"] == -1
    validate(result)


def test_status_command_failing_is_unknown():
    stream = Stream().failed("Read the deployment ledger", "leanvibe.deploy.deployment_state",
                             {"msg": "ledger is not valid JSON"})
    interpreter, _events = interpret("status", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("unknown", ExitCode.NEEDS_HUMAN)
    assert result.reasons == ["ledger is not valid JSON"]
    validate(result)


@pytest.mark.parametrize("rc", [4, 5, 127])
@pytest.mark.parametrize("command", ["canary", "rollback", "status", "probe"])
def test_ansible_usage_return_codes_are_usage_errors(rc, command):
    interpreter = RunInterpreter(command)
    result = interpreter.result(rc, "failed")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert result.reasons == ["ansible-playbook ended with failed (rc %d)" % rc]
    validate(result)


@pytest.mark.parametrize("command", ["rollback", "status", "history"])
def test_other_return_codes_of_commands_that_started_nothing_are_not_usage_errors(command):
    result = RunInterpreter(command).result(2, "failed")
    assert result.exit_code == ExitCode.NEEDS_HUMAN


@pytest.mark.parametrize("command", ["canary", "status", "probe", "rollback"])
def test_cancelled_before_changes(command):
    interpreter = RunInterpreter(command)
    if command == "canary":
        interpret_into(interpreter, canary_plan(Stream()).events)
    result = interpreter.result(254, "canceled", cancelled=True)
    assert (result.status, result.exit_code) == ("cancelled", ExitCode.FAILED_CLEAN)
    assert result.cancelled is True
    assert "cancelled by the caller" in result.reasons
    assert result.reasons.count("cancelled by the caller") == 1
    validate(result)


def test_cancelled_canary_that_rolled_back_keeps_its_reasons():
    stream = canary_plan(Stream()).publish(phase="started")
    stream.publish(phase="rolled_back", status="rolled_back", rolled_back=True,
                   reasons=["gate failed at 25 %: aborted by the operator"], rollback_ms=20)
    interpreter, _events = interpret("canary", stream.events)
    result = interpreter.result(2, "failed", cancelled=True)
    assert (result.status, result.exit_code) == ("rolled_back", ExitCode.FAILED_CLEAN)
    assert result.reasons == ["gate failed at 25 %: aborted by the operator", "cancelled by the caller"]
    validate(result)


def test_cancelled_canary_killed_after_it_started_is_unknown():
    stream = canary_plan(Stream()).publish(phase="started")
    interpreter, _events = interpret("canary", stream.events)
    result = interpreter.result(254, "canceled", cancelled=True)
    assert (result.status, result.exit_code, result.cancelled) == ("unknown", ExitCode.NEEDS_HUMAN, True)
    assert result.reasons[-1] == "cancelled by the caller"
    validate(result)


def test_final_stats_override_what_set_stats_events_merged():
    stream = canary_plan(Stream()).publish(phase="started", extra={"a": 1})
    stream.stats({"command": "canary", "phase": "rolled_back", "status": "rolled_back", "version": "2.3.0",
                  "from_version": "2.2.0", "rolled_back": True, "reasons": ["from the final stats"],
                  "rollback_ms": 7})
    interpreter, events = interpret("canary", stream.events)
    assert interpreter.final_stats_seen
    assert interpreter.phase == "rolled_back"
    assert "extra" not in interpreter.published and "planned_steps" not in interpreter.published
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code, result.rollback_ms) == ("rolled_back", ExitCode.FAILED_CLEAN, 7)
    assert result.reasons == ["from the final stats"]
    assert result.details == {}
    validate(result)


def test_final_stats_without_a_result_keep_what_was_merged():
    stream = canary_plan(Stream()).publish(phase="started").stats(None)
    interpreter, _events = interpret("canary", stream.events)
    assert interpreter.final_stats_seen and interpreter.phase == "started"
    assert interpreter.published["planned_steps"] == [25, 50, 100]


def test_published_updates_merge_nested_mappings():
    stream = Stream().publish(command="status", phase="checked", version="1", weights={"blue": 100})
    stream.publish(weights={"green": 0}, phase="done", status="serving")
    interpreter, events = interpret("status", stream.events)
    assert interpreter.published["weights"] == {"blue": 100, "green": 0}
    assert [event.kind for event in events] == ["plan", "phase"]


def test_plan_messages_for_nothing_to_do_and_check_mode():
    for phase, suffix in (("unchanged", "(already serving: nothing to do)"),
                          ("checked", "(check mode: nothing changes)")):
        stream = Stream().publish(command="canary", phase=phase, version="2.2.0", from_version=None,
                                  planned_steps=[50, 100])
        interpreter, events = interpret("canary", stream.events)
        assert events[0].message == "canary nothing -> 2.2.0, steps 50 -> 100 % " + suffix
        result = interpreter.result(0, "successful")
        assert (result.status, result.exit_code) == (phase, ExitCode.OK)
        validate(result)


def test_successful_run_without_a_published_status_is_ok():
    result = RunInterpreter("blue-green").result(0, "successful")
    assert (result.status, result.exit_code) == ("ok", ExitCode.OK)
    validate(result)


def test_steps_use_the_planned_count_and_the_worst_analysis():
    stream = canary_plan(Stream(), steps=(50, 100)).publish(phase="started")
    stream.weights(50)
    stream.ok("Analyse", "leanvibe.deploy.traffic_analysis", {"verdict": "fail", "reasons": ["5xx"]}, host="lb1")
    stream.ok("Analyse", "leanvibe.deploy.traffic_analysis", {"verdict": "pass", "reasons": []}, host="lb2")
    interpreter, events = interpret("canary", stream.events)
    assert [event.message for event in events if event.kind == "step"] == ["step 1/2: 50 % of traffic on the canary"]
    step = interpreter.steps[0]
    assert (step.analysis, step.probes, step.verdict) == ("fail", None, "running")
    analyses = [event.message for event in events if event.kind == "analysis"]
    assert analyses == ["traffic on lb1: fail", "traffic on lb2: pass"]


def test_the_gate_carries_the_probes_and_the_verdict_of_the_step():
    stream = Stream().weights(10).gate(10, ["probes: 503"], probes={"passed": False, "msg": "503", "mode": "quick"})
    interpreter, events = interpret("canary", stream.events)
    step = interpreter.steps[0]
    assert (step.verdict, step.probes, step.reasons) == ("fail", "fail", ["probes: 503"])
    assert kinds(events) == ["step", "probes", "gate"]
    assert events[-1].message == "gate at 10 %: FAIL (probes: 503)"
    # The gate's event says why; no separate failure for the gate's task.
    assert interpreter.failures == []


def test_a_gate_with_reasons_on_an_ok_event_still_fails_the_step():
    stream = Stream().weights(10).gate(10, ["traffic: p95"], failed=False)
    interpreter, events = interpret("canary", stream.events)
    assert interpreter.steps[0].verdict == "fail"
    assert events[-1].message == "gate at 10 %: FAIL (traffic: p95)"


def test_a_gate_before_traffic_moved_is_a_failure_not_a_step():
    stream = Stream().gate(0, ["2.3.0 on app1: port in use"])
    interpreter, events = interpret("canary", stream.events)
    assert interpreter.steps == []
    assert kinds(events) == ["failure"]
    assert interpreter.failures == ["gate failed at 0 %: 2.3.0 on app1: port in use"]


def test_weights_without_canary_traffic_are_no_step():
    # blue-green's X-Canary route (the new color at 0 %), a promotion, the other LBs sent back after a rollback.
    stream = Stream().weights(0).weights(0, canary=None, stable="green")
    stream.failed("Set the traffic weights of the app", "leanvibe.deploy.nginx_upstream", {"msg": "nginx -t failed"})
    interpreter, _events = interpret("canary", stream.events)
    assert interpreter.steps == []


def test_module_results_after_the_gate_do_not_change_the_step():
    stream = Stream().weights(10).gate(10)
    stream.ok("Final probes", "leanvibe.deploy.synthetic_probe", {"passed": False, "msg": "x"})
    stream.ok("Analyse", "leanvibe.deploy.traffic_analysis", {"verdict": "fail"})
    interpreter, _events = interpret("canary", stream.events)
    step = interpreter.steps[0]
    assert (step.verdict, step.probes, step.analysis) == ("pass", None, None)


def test_loop_items_publish_but_do_not_count_as_module_results():
    stream = Stream()
    stream._add("runner_item_on_ok", task="Stop", host="lb1", resolved_action="leanvibe.deploy.rollback",
                res={"to_version": "1", "duration_ms": 3})
    stream._add("runner_item_on_ok", task="Publish", host="lb1", resolved_action="ansible.builtin.set_stats",
                res={"ansible_stats": {"data": {"leanvibe_result": {"phase": "done", "status": "serving"}}}})
    interpreter, events = interpret("status", stream.events)
    assert interpreter.rollback is None
    assert kinds(events) == ["phase"]


@pytest.mark.parametrize("event", [
    {"event": "runner_on_skipped", "event_data": {"task": "t", "res": {"msg": "x"}}},
    {"event": "runner_on_start", "event_data": {"task": "t"}},
    {"event": "verbose", "stdout": "text"},
    {"event": "runner_on_failed", "event_data": {"task": "t", "res": "not a dict"}},
    {"event": "playbook_on_play_start", "event_data": {"play": "p"}},
    {},
])
def test_other_events_are_ignored(event):
    interpreter = RunInterpreter("canary")
    assert interpreter.feed(event) == []
    assert interpreter.failures == [] and interpreter.published == {}


def test_task_action_is_used_without_resolved_action():
    stream = Stream()
    stream._add("runner_on_ok", task="Probe", host="lb1", task_action="synthetic_probe",
                res={"passed": True, "msg": "fine"})
    _interpreter, events = interpret("probe", stream.events)
    assert events[0].message == "probes passed: fine"


def test_two_load_balancers_give_one_step_per_weight():
    stream = canary_plan(Stream(), steps=(50, 100)).publish(phase="started")
    for weight in (50, 100):
        for host in ("lb1", "lb2"):  # the weights change on every LB
            stream.weights(weight, host=host)
        for host in ("lb1", "lb2"):
            stream.ok("Analyse", "leanvibe.deploy.traffic_analysis", {"verdict": "pass"}, host=host)
        stream.gate(weight, probes={"passed": True, "msg": "ok"})  # run_once
    stream.publish(phase="done", status="promoted")
    interpreter, _events = interpret("canary", stream.events)
    result = interpreter.result(0, "successful")
    assert [(step.weight, step.verdict, step.probes) for step in result.steps] == [(50, "pass", "pass"),
                                                                                  (100, "pass", "pass")]


def interpret_into(interpreter, events):
    for event in events:
        interpreter.feed(event)


def test_rollback_refused_before_any_change_is_a_usage_error():
    stream = Stream().failed("Flip traffic to the warm release", "leanvibe.deploy.rollback",
                             {"msg": "version 9.9.9 of demo was never deployed in local", "refused": True})
    stream.failed("Stop with the rollback's reason", "ansible.builtin.fail",
                  {"msg": "version 9.9.9 of demo was never deployed in local"})
    interpreter, _events = interpret("rollback", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("invalid", ExitCode.USAGE)
    assert result.reasons == ["version 9.9.9 of demo was never deployed in local"]
    validate(result)


def test_a_playbook_that_refuses_its_hosts_is_a_usage_error():
    # tasks/check_hosts.yml publishes the refusal, then fails: nothing has changed.
    problem = "inventory /srv/inv has no host in group lb; this playbook needs hosts in groups lb and app."
    for command in ("canary", "blue-green", "rollback", "probe", "status"):
        stream = Stream().publish(phase="invalid", status="invalid", reasons=[problem])
        stream.failed("Stop before anything changes", "ansible.builtin.fail", {"msg": problem}, host="app1")
        interpreter, _events = interpret(command, stream.events)
        result = interpreter.result(2, "failed")
        assert (result.status, result.exit_code, result.reasons) == ("invalid", ExitCode.USAGE, [problem]), command
        validate(result)


def test_rollback_whose_ledger_cannot_be_read_is_refused_like_the_rollback_module_refuses():
    corrupt = "ledger /srv/demo.ledger.json is corrupt (not JSON: x); fix it or move it away."
    stream = Stream().failed("Read the deployment ledger", "leanvibe.deploy.deployment_state", {"msg": corrupt})
    stream.failed("Stop with the rollback's reason", "ansible.builtin.fail", {"msg": corrupt})
    interpreter, _events = interpret("rollback", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code, result.reasons) == ("invalid", ExitCode.USAGE, [corrupt])
    validate(result)


def test_rollback_whose_ledger_fails_after_the_flip_still_needs_a_human():
    stream = Stream().ok("Flip traffic to the warm release", "leanvibe.deploy.rollback",
                         {"from_version": "2.3.0", "to_version": "2.2.0", "to_color": "blue", "duration_ms": 12})
    stream.failed("Release the deploy lock", "leanvibe.deploy.deployment_state", {"msg": "could not write ledger x."})
    interpreter, _events = interpret("rollback", stream.events)
    result = interpreter.result(2, "failed")
    assert (result.status, result.exit_code) == ("rollback_failed", ExitCode.NEEDS_HUMAN)


def test_rollback_that_must_redeploy_first_says_so_and_is_no_flip():
    stream = Stream().ok("Flip traffic to the warm release", "leanvibe.deploy.rollback",
                         {"from_version": "3.0.0", "to_version": "1.0.0", "to_color": None, "target_color": "green",
                          "needs_redeploy": True, "duration_ms": 9})
    interpreter, events = interpret("rollback", stream.events)
    assert kinds(events) == ["phase"]
    assert events[0].message == "1.0.0 is not warm: redeploying it to green"
    assert interpreter.rollback is None
