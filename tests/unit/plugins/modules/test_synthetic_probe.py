"""The synthetic_probe module through main(): argument checks, and a read-only run against a loopback server."""

import functools
import json

import pytest

from ansible_collections.leanvibe.deploy.plugins.modules import synthetic_probe

from plugin_test_helpers import free_port, run_module


SECRET = "probe-s3cret-key"


run = functools.partial(run_module, synthetic_probe.main)


@pytest.mark.parametrize("overrides, message", [
    ({"probes": ["basic_health", "latency"]}, "probe 'latency' is unknown: use basic_health, database_health, api_functionality, "
                                              "websocket, performance, security_headers."),
    ({"success_threshold": 1.2}, "success_threshold must be within 0 and 1, not 1.2."),
    ({"success_threshold": -0.5}, "success_threshold must be within 0 and 1, not -0.5."),
    ({"url": "ftp://lb.example.com"}, "url 'ftp://lb.example.com' must start with http:// or https://."),
    ({"url": "https://"}, "url 'https://' has no host."),
    ({"url": "lb.example.com:8000"}, "url 'lb.example.com:8000' must start with http:// or https://."),
    ({"timeout": 0}, "timeout must be greater than 0, not 0."),
    ({"timeout": -3}, "timeout must be greater than 0, not -3."),
    ({"probes": ["api_functionality"], "api_key": None}, "probe api_functionality needs api_key: give one, or choose probes without it."),
    ({"headers": {"X-Bad": "a\nb"}}, "header X-Bad must not contain line breaks or NUL characters."),
    ({"performance_requests": 0}, "performance_requests must be a whole number from 1 to 1000, not 0."),
])
def test_bad_arguments_fail_with_one_sentence(capsys, overrides, message):
    args = {"url": "http://127.0.0.1:%d" % free_port(), "api_key": SECRET, "probes": ["basic_health"]}
    args.update(overrides)
    result = run(capsys, {key: value for key, value in args.items() if value is not None})
    assert result["failed"] is True
    assert result["msg"] == message
    assert "passed" not in result and "probes" not in result


def test_unknown_mode_rejected_by_choices(capsys):
    result = run(capsys, {"url": "http://127.0.0.1:1", "mode": "thorough"})
    assert result["failed"] is True
    assert "mode" in result["msg"] and "thorough" in result["msg"]


def test_missing_requests_library(capsys, monkeypatch):
    monkeypatch.setattr(synthetic_probe, "HAS_REQUESTS", False)
    result = run(capsys, {"url": "http://127.0.0.1:1", "probes": ["basic_health"]})
    assert result["failed"] is True
    assert "requests" in result["msg"]


def test_websocket_client_needed_only_for_the_websocket_probe(capsys, monkeypatch, health_server):
    monkeypatch.setattr(synthetic_probe, "HAS_WEBSOCKET_CLIENT", False)
    result = run(capsys, {"url": "http://127.0.0.1:1", "mode": "standard", "api_key": SECRET})
    assert result["failed"] is True
    assert "websocket-client" in result["msg"]
    health_server.serve(version="1.0.0")
    health_server.start()
    result = run(capsys, {"url": health_server.url(""), "probes": ["basic_health"]})
    assert result.get("failed") is not True, result
    assert result["passed"] is True


def test_runs_in_check_mode_and_never_changes(capsys, health_server):
    health_server.serve(version="1.0.0")  # {"status": "healthy", "version": "1.0.0"} on every path
    health_server.start()
    args = {"url": health_server.url(""), "probes": ["basic_health", "database_health"], "expect_version": "1.0.0",
            "headers": {"X-Canary": "always"}}
    result = run(capsys, args, check=True)
    assert result.get("failed") is not True, result
    assert result["changed"] is False
    assert sorted(health_server.paths) == ["/health", "/health/database"]  # concurrent: any order
    assert [probe["name"] for probe in result["probes"]] == ["basic_health", "database_health"]
    assert [probe["passed"] for probe in result["probes"]] == [True, False]
    assert result["probes"][1]["detail"] == "/health/database reports database_connected null"
    assert (result["passed"], result["success_rate"], result["failed_probes"]) == (False, 0.5, ["database_health"])
    assert result["mode"] is None
    assert result["msg"].startswith("Suite failed: 1 of 2 probes passed against %s (50%%, 85%% needed); failed: database_health: "
                                    % health_server.url(""))
    assert set(result["probes"][0]) == {"name", "passed", "duration_ms", "detail", "status_code"}
    assert result["duration_ms"] >= 0


def test_target_faults_are_results_not_failures(capsys):
    result = run(capsys, {"url": "http://127.0.0.1:%d" % free_port(), "mode": "critical-path-only", "api_key": SECRET,
                          "timeout": 2})
    assert result.get("failed") is not True, result
    assert (result["changed"], result["passed"], result["success_rate"], result["mode"]) == (False, False, 0.0, "critical-path-only")
    assert result["failed_probes"] == ["basic_health", "database_health", "api_functionality"]
    assert all("connection refused" in probe["detail"] for probe in result["probes"])
    assert SECRET not in json.dumps(result)
