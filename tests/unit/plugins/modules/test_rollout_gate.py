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
