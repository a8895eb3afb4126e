"""leanvibe_runner.result: RunResult.to_dict() and the shipped JSON Schema (result.schema.json)."""

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import Stream, canary_plan, interpret, load_events, schema_errors, validate  # noqa: E402

from leanvibe_runner import RunResult, StepResult, result_schema  # noqa: E402
from leanvibe_runner.codes import ExitCode  # noqa: E402
from leanvibe_runner.events import RunInterpreter  # noqa: E402
from leanvibe_runner.result import SCHEMA_VERSION  # noqa: E402


def _recorded(name, command, rc, status):
    interpreter, _events = interpret(command, load_events(name))
    return interpreter.result(rc, status)


def _synthetic(command, stream, rc, status, cancelled=False):
    interpreter, _events = interpret(command, stream.events)
    return interpreter.result(rc, status, cancelled=cancelled)


# Every kind of result the interpreter gives, each with the (status, exit code) it must have.
SCENARIOS = {
    "promoted": (lambda: _recorded("canary_promoted.json", "canary", 0, "successful"), "promoted", 0),
    "rolled_back": (lambda: _recorded("canary_rolled_back.json", "canary", 2, "failed"), "rolled_back", 1),
    "probe_passed": (lambda: _recorded("probe_passed.json", "probe", 0, "successful"), "passed", 0),
    "not_serving": (lambda: _recorded("status_not_serving.json", "status", 0, "successful"), "not_serving", 3),
    "history": (lambda: _recorded("history_serving.json", "history", 0, "successful"), "serving", 0),
    "rc127": (lambda: _recorded("status_rc127.json", "status", 127, "failed"), "invalid", 2),
    "locked": (lambda: _synthetic("canary", canary_plan(Stream()).failed(
        "Take the deploy lock", "leanvibe.deploy.deployment_state",
        {"msg": "held", "lock_held_by": {"run_id": "r1", "pid": 1}}), 2, "failed"), "locked", 4),
    "invalid_phase_none": (lambda: _synthetic("canary", Stream().failed(
        "Check", "ansible.builtin.assert", {"msg": "bad steps"}), 2, "failed"), "invalid", 2),
    "invalid_planned": (lambda: _synthetic("canary", canary_plan(Stream()).failed(
        "Preflight", "leanvibe.deploy.slot_release", {"msg": "no artifact"}), 2, "failed"), "invalid", 2),
    "unknown": (lambda: _synthetic("canary", canary_plan(Stream()).publish(phase="started").failed(
        "Deploy", "leanvibe.deploy.slot_release", {"msg": "boom"}), 2, "failed"), "unknown", 3),
    "rollback_failed": (lambda: _synthetic("rollback", Stream().failed(
        "Stop", "ansible.builtin.fail", {"msg": "no color runs 2.0.0"}), 2, "failed"), "rollback_failed", 3),
    "probe_failed": (lambda: _synthetic("probe", Stream().publish(
        command="probe", phase="done", status="failed", reasons=["1 of 6 failed"], probes=[]).failed(
        "Require", "ansible.builtin.assert", {"msg": "failed"}), 2, "failed"), "failed", 1),
    "status_not_serving": (lambda: _synthetic("status", Stream().publish(
        command="status", phase="done", status="not_serving", lb_url="http://x", lb_status=-1), 0, "successful"),
        "not_serving", 3),
    "rc4": (lambda: RunInterpreter("canary").result(4, "failed"), "invalid", 2),
    "rc5": (lambda: RunInterpreter("rollback").result(5, "failed"), "invalid", 2),
    "cancelled": (lambda: _synthetic("canary", canary_plan(Stream()), 254, "canceled", cancelled=True),
                  "cancelled", 1),
    "cancelled_rolled_back": (lambda: _synthetic("canary", canary_plan(Stream()).publish(phase="started").publish(
        phase="rolled_back", status="rolled_back", rolled_back=True, reasons=["aborted"], rollback_ms=9),
        2, "failed", cancelled=True), "rolled_back", 1),
    "final_stats": (lambda: _synthetic("canary", canary_plan(Stream()).stats(
        {"phase": "failed_clean", "status": "failed", "reasons": ["probes failed"], "version": "2.3.0"}),
        2, "failed"), "failed", 1),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_interpreted_result_validates(name):
    build, status, exit_code = SCENARIOS[name]
    result = build()
    assert (result.status, int(result.exit_code)) == (status, exit_code)
    data = validate(result)
    # What --json prints must validate too, after the round trip through JSON text.
    validate(json.loads(json.dumps(data, sort_keys=True, default=str)))


def test_the_schema_is_a_valid_draft_2020_12_schema():
    schema = result_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_the_schema_requires_every_field_to_dict_gives():
    data = RunResult(command="status", status="serving", exit_code=ExitCode.OK).to_dict()
    assert set(result_schema()["required"]) == set(data)


def test_to_dict_has_a_plain_int_exit_code_and_the_schema_version():
    result = RunResult(command="canary", status="locked", exit_code=ExitCode.LOCKED,
                       steps=[StepResult(weight=10, verdict="fail", probes="pass", analysis="fail", reasons=["5xx"])],
                       lock_held_by={"run_id": "x"})
    data = result.to_dict()
    assert isinstance(data["exit_code"], int) and not isinstance(data["exit_code"], bool) and data["exit_code"] == 4
    assert data["schema_version"] == 1
    assert data["steps"] == [{"weight": 10, "verdict": "fail", "probes": "pass", "analysis": "fail",
                              "reasons": ["5xx"]}]
    assert json.loads(json.dumps(data))["exit_code"] == 4
    assert isinstance(result.exit_code, ExitCode)  # the object keeps its enum
    validate(data)


def test_ok_is_exit_code_zero_only():
    assert RunResult(command="c", status="promoted", exit_code=ExitCode.OK).ok
    assert not RunResult(command="c", status="rolled_back", exit_code=ExitCode.FAILED_CLEAN).ok


def test_step_result_defaults():
    assert StepResult(weight=25).to_dict() == {"weight": 25, "verdict": "running", "probes": None, "analysis": None,
                                               "reasons": []}


@pytest.fixture
def good():
    return RunResult(command="canary", status="rolled_back", exit_code=ExitCode.FAILED_CLEAN, version="2.3.0",
                     from_version="2.2.0", steps=[StepResult(weight=25, verdict="fail", reasons=["p95"])],
                     rolled_back=True, reasons=["gate failed"], duration_s=1.5, rollback_ms=33).to_dict()


def test_the_good_dict_validates(good):
    assert schema_errors(good) == []


@pytest.mark.parametrize("change", [
    lambda d: d.update(exit_code=7),
    lambda d: d.update(exit_code="1"),
    lambda d: d.update(reasons=[]),  # rolled_back true with no reasons
    lambda d: d.update(exit_code=2),  # a usage error must be 'invalid'
    lambda d: d.update(exit_code=4),  # exit 4 must be 'locked'
    lambda d: d.update(exit_code=0, status="failed"),
    lambda d: d.update(status="exploded"),
    lambda d: d.update(schema_version=2),
    lambda d: d.update(surprise=True),
    lambda d: d.pop("details"),
    lambda d: d.update(rolled_back="yes"),
    lambda d: d.update(rollback_ms=-1),
    lambda d: d.update(rollback_ms=1.5),
    lambda d: d.update(duration_s=-0.1),
    lambda d: d.update(reasons=[1]),
    lambda d: d["steps"][0].update(weight=0),
    lambda d: d["steps"][0].update(weight=101),
    lambda d: d["steps"][0].update(verdict="skipped"),
    lambda d: d["steps"][0].update(analysis="unknown"),
    lambda d: d["steps"][0].update(extra=1),
    lambda d: d["steps"][0].pop("probes"),
], ids=["exit7", "exit-text", "rolled-back-no-reasons", "exit2-not-invalid", "exit4-not-locked", "exit0-failed",
        "status", "schema-version", "extra-field", "missing-field", "rolled-back-text", "negative-ms", "float-ms",
        "negative-duration", "reason-not-text", "weight0", "weight101", "verdict", "analysis", "step-extra",
        "step-missing"])
def test_broken_dicts_fail_validation(good, change):
    broken = copy.deepcopy(good)
    change(broken)
    assert schema_errors(broken), "the schema accepted %r" % broken
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
