"""Unit tests of module_utils/gate.py: the verdict of one rollout step."""

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.gate import aborted, combine_analyses, judge, validate_analyses

PASSED = {"passed": True, "mode": "quick", "url": "http://lb", "success_rate": 1.0, "failed_probes": [],
          "probes": [{"name": "basic_health", "passed": True}], "msg": "Suite passed: all 2 probes passed against http://lb."}
FAILED = dict(PASSED, passed=False, failed_probes=["basic_health"], msg="Suite failed: 1 of 2 probes passed; failed: basic_health (503).")
GOOD = {"verdict": "pass", "reasons": ["canary 5xx 0 %"]}
BAD = {"verdict": "fail", "reasons": ["canary 5xx rate 12 % is above 2 %"]}
THIN = {"verdict": "inconclusive", "reasons": ["only 3 canary requests"]}


def test_a_step_with_good_probes_and_traffic_passes():
    result = judge(25, 2, PASSED, [GOOD, THIN], now=1796236205.12)
    assert result["passed"] is True and result["verdict"] == "pass" and result["reasons"] == []
    assert (result["weight"], result["step"]) == (25, 2)
    assert result["checked_at"] == "2026-12-02T18:30:05.120Z" and result["checked_at_epoch"] == 1796236205.12
    assert result["analysis"]["verdict"] == "inconclusive"
    assert result["verdicts"] == {"probes": "pass", "analysis": "inconclusive"}
    assert result["msg"] == "gate passed at 25 %"
    assert result["probes"] == PASSED["probes"] and result["probe_summary"]["failed_probes"] == []


def test_reasons_name_each_cause_in_order():
    result = judge(50, 3, FAILED, [GOOD, BAD], aborted=True)
    assert result["passed"] is False and result["verdict"] == "fail"
    assert result["reasons"] == ["aborted by the operator", "probes: " + FAILED["msg"], "traffic: canary 5xx rate 12 % is above 2 %"]
    assert result["msg"] == "gate failed at 50 %: " + "; ".join(result["reasons"])
    assert result["verdicts"] == {"probes": "fail", "analysis": "fail"}


def test_an_abort_without_probes_fails_alone():
    result = judge(10, 1, None, [], aborted=True)
    assert result["reasons"] == ["aborted by the operator"] and result["probes"] == [] and result["probe_summary"] is None
    assert result["verdicts"]["probes"] == "pass"


def test_no_analysis_passes_the_traffic():
    assert combine_analyses([]) == {"verdict": "pass", "reasons": [], "lbs": 0, "by_lb": []}


@pytest.mark.parametrize("analyses, message", [
    ("fail", "analyses must be a list of traffic_analysis results"),
    ([{"reasons": []}], "analysis 1 is not a traffic_analysis result: it needs a verdict of pass, fail, inconclusive."),
    ([GOOD, {"verdict": "maybe"}], "analysis 2 is not a traffic_analysis result"),
    ([{"verdict": "fail", "reasons": "5xx"}], "analysis 1: reasons must be a list."),
])
def test_bad_analyses_are_refused(analyses, message):
    with pytest.raises(ValidationError) as caught:
        validate_analyses(analyses)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("weight", [-1, 101, True, "25", 2.5])
def test_bad_weights_are_refused(weight):
    with pytest.raises(ValidationError, match="weight must be a whole percentage from 0 to 100"):
        judge(weight, 1, PASSED, [])


def test_the_abort_file(tmp_path):
    path = tmp_path / "abort"
    assert aborted(None) is False and aborted(str(path)) is False
    path.write_text("")
    assert aborted(str(path)) is True
