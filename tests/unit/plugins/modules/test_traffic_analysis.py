"""The traffic_analysis module end to end through main(), on crafted access logs in tmp_path."""

import functools
import json
import time

import pytest

from plugin_test_helpers import run_module
from ansible_collections.leanvibe.deploy.plugins.modules import traffic_analysis


def line(msec, color, status=200, ms=10, header=""):
    return json.dumps({"time": "", "msec": round(msec, 3), "app": "demo", "remote_addr": "127.0.0.1", "method": "GET",
                       "uri": "/api/v1/tasks", "status": status, "bytes_sent": 2, "request_time": ms / 1000.0,
                       "upstream": "leanvibe_demo_" + color, "upstream_addr": "", "upstream_status": str(status),
                       "upstream_response_time": "", "canary_header": header})


@pytest.fixture
def access_log(tmp_path):
    """access_log(canary_errors=0) -> path of a log of the last ~20 s: 100 stable and 100 canary requests."""

    def make(canary_errors=0, canary_ms=10):
        now = time.time()
        path = tmp_path / "demo.access.log"
        with open(str(path), "w", encoding="utf-8") as handle:
            handle.write(line(now - 3600, "blue") + "\n")
            for index in range(100):
                msec = now - 20 + index * 0.1
                handle.write(line(msec, "blue") + "\n")
                handle.write(line(msec + 0.05, "green", 500 if index < canary_errors else 200, canary_ms) + "\n")
            handle.write(line(now - 1, "green", 500, header="always") + "\n")
            handle.write("not json\n")
        return str(path)

    return make


run = functools.partial(run_module, traffic_analysis.main)


def module_args(path, **overrides):
    values = {"log_path": path, "app": "demo", "stable_color": "blue", "canary_color": "green", "window_s": 300}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def test_healthy_canary_passes_and_changes_nothing(capsys, access_log):
    path = access_log()
    with open(path, "rb") as handle:
        before = handle.read()
    result = run(capsys, module_args(path))
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert (result["verdict"], result["passed"]) == ("pass", True)
    assert result["stable"]["requests"] == 100 and result["canary"]["requests"] == 100
    assert result["unreadable_lines"] == 1
    assert result["scan"]["synthetic_excluded"] == 1 and result["scan"]["stopped_early"] is True
    assert result["reasons"][0].startswith("canary green held over 100 requests: 5xx rate 0.0 % ≤ limit 1.0 %")
    assert result["window"]["until"] - result["window"]["since"] == pytest.approx(300)
    assert "pass" in result["msg"] and "diff" not in result
    with open(path, "rb") as handle:
        assert handle.read() == before


def test_check_mode_runs_the_analysis(capsys, access_log):
    result = run(capsys, module_args(access_log(canary_errors=30)), check=True)
    assert result["changed"] is False and result["verdict"] == "fail"
    assert result["canary"]["errors"] == 30


def test_failed_verdict_is_reported_without_failing_by_default(capsys, access_log):
    result = run(capsys, module_args(access_log(canary_errors=30)))
    assert result.get("failed") is not True
    assert (result["verdict"], result["passed"]) == ("fail", False)
    assert result["reasons"] == ["canary 5xx rate 30.0 % over 100 requests > limit 1.0 % "
                                 "(max of max_error_rate 1.0 % and 2 × stable 5xx rate 0.0 %)"]


def test_fail_on_verdict_fails_the_task_with_the_reasons(capsys, access_log):
    result = run(capsys, module_args(access_log(canary_errors=30, canary_ms=400), fail_on_verdict=True))
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == ("canary green of demo failed: canary 5xx rate 30.0 % over 100 requests > limit 1.0 % "
                             "(max of max_error_rate 1.0 % and 2 × stable 5xx rate 0.0 %); "
                             "canary p95 400 ms > limit 65 ms (1.5 × stable p95 10 ms + 50 ms).")
    assert result["verdict"] == "fail" and len(result["reasons"]) == 2


def test_fail_on_verdict_does_not_fail_a_pass_or_inconclusive(capsys, access_log):
    path = access_log()
    assert run(capsys, module_args(path, fail_on_verdict=True))["verdict"] == "pass"
    inconclusive = run(capsys, module_args(path, fail_on_verdict=True, min_requests=500))
    assert inconclusive.get("failed") is not True and inconclusive["verdict"] == "inconclusive"
    failed = run(capsys, module_args(path, fail_on_verdict=True, min_requests=500, insufficient_data="fail"))
    assert failed["failed"] is True and "fewer than min_requests 500" in failed["msg"]


def test_options_reach_the_judge(capsys, access_log):
    path = access_log(canary_errors=3, canary_ms=100)
    assert run(capsys, module_args(path))["verdict"] == "fail"
    result = run(capsys, module_args(path, max_error_rate=0.05, p95_factor=10, p95_slack_ms=0, max_p95_ms=150,
                                     exclude_synthetic=False))
    assert result["verdict"] == "pass", result["reasons"]
    assert result["canary"]["requests"] == 101
    assert result["limits"] == {"max_error_rate": 0.05, "error_rate_factor": 2.0, "p95_factor": 10.0, "p95_slack_ms": 0.0,
                                "max_p95_ms": 150.0, "min_requests": 20, "insufficient_data": "inconclusive"}


def test_since_and_until_as_iso_and_epoch(capsys, access_log):
    path = access_log()
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 300))
    by_iso = run(capsys, module_args(path, window_s=None, since=iso))
    by_epoch = run(capsys, module_args(path, window_s=None, since=now - 300, until="%.3f" % now))
    assert by_iso["canary"]["requests"] == by_epoch["canary"]["requests"] == 100
    early = run(capsys, module_args(path, window_s=None, since=now - 4000, until=now - 3000, min_requests=1))
    assert early["stable"]["requests"] == 1 and early["verdict"] == "inconclusive"


@pytest.mark.parametrize("overrides, message", [
    (dict(stable_color="green"), "stable_color and canary_color are both green: they must differ."),
    (dict(canary_color="red"), "value of canary_color must be one of: blue, green, got: red"),
    (dict(max_error_rate=1.5), "max_error_rate must be a rate between 0 and 1, not 1.5."),
    (dict(max_error_rate=-0.01), "max_error_rate must be a rate between 0 and 1, not -0.01."),
    (dict(error_rate_factor=-2), "error_rate_factor must be a number not below 0, not -2.0."),
    (dict(p95_factor=-1.5), "p95_factor must be a number not below 0, not -1.5."),
    (dict(p95_slack_ms=-50), "p95_slack_ms must be a number not below 0, not -50.0."),
    (dict(max_p95_ms=-1), "max_p95_ms must be a number not below 0, not -1.0."),
    (dict(min_requests=-1), "min_requests must be a number not below 0, not -1."),
    (dict(since=1700000000), "give either since or window_s, not both."),
    (dict(window_s=None), "give since (the window's start) or window_s (the last N seconds)."),
    (dict(window_s=None, since="last tuesday"), "since 'last tuesday' is neither epoch seconds nor an ISO 8601 time."),
    (dict(window_s=None, since="2024-02-30T10:00:00Z"), "since '2024-02-30T10:00:00Z' is neither epoch seconds nor an ISO 8601 time."),
    (dict(window_s=-60), "window_s must be a positive number of seconds, not -60.0."),
    (dict(until="soon"), "until 'soon' is neither epoch seconds nor an ISO 8601 time."),
    (dict(app="../etc"), "app '../etc' is not valid: use lower-case letters, digits and '_', starting with a letter, at most 32 characters."),
])
def test_bad_arguments_fail_with_one_sentence(capsys, access_log, overrides, message):
    result = run(capsys, module_args(access_log(), **overrides))
    assert result["failed"] is True
    assert result["msg"] == message
    assert set(result) - {"invocation"} == {"failed", "msg"}


@pytest.mark.parametrize("name", ["missing.log", "folder"])
def test_bad_log_path_fails_with_one_sentence(capsys, tmp_path, name):
    (tmp_path / "folder").mkdir()
    path = str(tmp_path / name)
    result = run(capsys, module_args(path))
    expected = "log_path %s does not exist." if name == "missing.log" else "log_path %s is not a file."
    assert result["msg"] == expected % path
    assert set(result) - {"invocation"} == {"failed", "msg"}


def test_unreadable_log_file_fails_with_one_sentence(capsys, access_log, monkeypatch):
    from ansible_collections.leanvibe.deploy.plugins.module_utils import traffic

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(traffic, "open_binary", refuse)
    path = access_log()
    result = run(capsys, module_args(path))
    assert result["msg"] == "could not read log_path %s: Permission denied." % path
    assert set(result) - {"invocation"} == {"failed", "msg"}
