"""The rollout_gate module through main(): its arguments, and a failed gate as a module failure (never "Unknown error")."""

import functools

import pytest

from ansible_collections.leanvibe.deploy.plugins.modules import rollout_gate

from plugin_test_helpers import free_port, run_module

run = functools.partial(run_module, rollout_gate.main)
GOOD_SUITE = {"passed": True, "mode": "quick", "url": "http://lb", "success_rate": 1.0, "failed_probes": [],
              "probes": [{"name": "basic_health", "passed": True, "duration_ms": 1.0, "detail": "ok", "status_code": 200}],
              "msg": "Suite passed: all 1 probes passed against http://lb."}


@pytest.fixture
def suite(monkeypatch):
    """The probe suite's report, set by the test; records the calls."""
    calls = []

    class Suite:
        report = GOOD_SUITE

    def fake(target, probe_names=None, success_threshold=0.85, mode="standard"):
        calls.append({"url": target.base_url, "headers": target.headers, "mode": mode, "expect": target.expect_version})
        return Suite.report

    monkeypatch.setattr(rollout_gate, "run_suite", fake)
    Suite.calls = calls
    return Suite


def args(**overrides):
    values = {"weight": 25, "step": 2, "url": "http://127.0.0.1:%d" % free_port(), "mode": "quick", "api_key": "gate-s3cret-key",
              "headers": {"X-Canary": "always"}, "expect_version": "2.0.0"}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def test_a_passed_gate_returns_the_contract_keys(capsys, suite):
    result = run(capsys, args(analyses=[{"verdict": "pass", "reasons": []}]))
    assert result["changed"] is False and "failed" not in result
    assert result["passed"] is True and result["verdict"] == "pass" and result["reasons"] == []
    assert (result["weight"], result["step"]) == (25, 2)
    assert result["checked_at"].endswith("Z") and result["probes"] == GOOD_SUITE["probes"]
    assert result["analysis"]["verdict"] == "pass"
    assert suite.calls[0]["headers"] == {"X-Canary": "always"} and suite.calls[0]["mode"] == "quick"
    assert suite.calls[0]["expect"] == "2.0.0"


def test_a_failed_gate_fails_the_task_with_its_reasons(capsys, suite):
    suite.report = dict(GOOD_SUITE, passed=False, msg="Suite failed: basic_health (503).")
    result = run(capsys, args(analyses=[{"verdict": "fail", "reasons": ["canary p95 900 ms"]}]))
    assert result["failed"] is True and result["passed"] is False and result["verdict"] == "fail"
    assert result["reasons"] == ["probes: Suite failed: basic_health (503).", "traffic: canary p95 900 ms"]
    assert result["msg"] == "gate failed at 25 %: probes: Suite failed: basic_health (503).; traffic: canary p95 900 ms"
    assert result["weight"] == 25 and result["checked_at"]


def test_an_abort_fails_the_gate_without_probing(capsys, suite, tmp_path):
    abort = tmp_path / "abort"
    abort.write_text("")
    result = run(capsys, args(abort_file=str(abort)))
    assert result["failed"] is True and result["reasons"] == ["aborted by the operator"] and result["aborted"] is True
    assert suite.calls == []


def test_check_mode_judges_too(capsys, suite):
    result = run(capsys, args(), check=True)
    assert result["passed"] is True and len(suite.calls) == 1


@pytest.mark.parametrize("overrides, message", [
    ({"weight": 150}, "weight must be a whole percentage from 0 to 100, not 150."),
    ({"url": "ftp://lb"}, "url 'ftp://lb' must start with http:// or https://."),
    ({"api_key": None}, "probe api_functionality needs api_key: give one, or choose probes without it."),
    ({"success_threshold": 2.0}, "success_threshold must be within 0 and 1, not 2."),
    ({"analyses": [{"reasons": []}]}, "analysis 1 is not a traffic_analysis result: it needs a verdict of pass, fail, inconclusive."),
    ({"timeout": 0}, "timeout must be greater than 0, not 0."),
])
def test_bad_arguments_fail_before_any_probe(capsys, suite, overrides, message):
    result = run(capsys, args(**overrides))
    assert result["failed"] is True and result["msg"] == message
    assert "passed" not in result and suite.calls == []


def test_missing_requests_library(capsys, monkeypatch):
    monkeypatch.setattr(rollout_gate, "HAS_REQUESTS", False)
    result = run(capsys, args())
    assert result["failed"] is True and "requests" in result["msg"]


def test_a_registered_probe_result_is_judged_without_probing(capsys, suite):
    given = {"passed": False, "msg": "Suite failed: websocket (403).", "probes": [{"name": "websocket", "passed": False}],
             "changed": False}
    result = run(capsys, {"weight": 10, "step": 1, "probe_result": given, "analyses": [{"verdict": "inconclusive", "reasons": []}]})
    assert result["failed"] is True and result["reasons"] == ["probes: Suite failed: websocket (403)."]
    assert result["probes"] == given["probes"] and suite.calls == []


def test_without_probes_only_the_traffic_counts(capsys, suite):
    result = run(capsys, {"weight": 10, "analyses": [{"verdict": "pass", "reasons": []}]})
    assert result["passed"] is True and result["probes"] == [] and suite.calls == []


@pytest.mark.parametrize("given", [{"msg": "x"}, {"passed": "yes", "msg": "x"}, {"passed": True}])
def test_a_probe_result_that_is_not_one_is_refused(capsys, suite, given):
    result = run(capsys, {"weight": 10, "probe_result": given})
    assert result["failed"] is True
    assert result["msg"] == "probe_result must be the result of a synthetic_probe task, with passed and msg."


def test_url_and_probe_result_exclude_each_other(capsys, suite):
    result = run(capsys, args(probe_result={"passed": True, "msg": "ok"}))
    assert result["failed"] is True and "mutually exclusive" in result["msg"]


def test_failures_before_traffic_fail_the_gate_clean_without_probing(capsys, suite):
    result = run(capsys, args(weight=0, step=0, failures=["2.0.0 on app1: port 9002 in use", " "]))
    assert result["failed"] is True and result["passed"] is False
    assert result["traffic_moved"] is False
    assert result["reasons"] == ["2.0.0 on app1: port 9002 in use"]
    assert result["msg"] == "gate failed before traffic moved: 2.0.0 on app1: port 9002 in use"
    assert suite.calls == []


def test_a_gate_with_traffic_says_it_moved_and_returns_no_facts(capsys, suite):
    result = run(capsys, args())
    assert result["traffic_moved"] is True and "ansible_facts" not in result
    assert run(capsys, args(weight=0, step=0))["msg"] == "gate passed before traffic moved"
