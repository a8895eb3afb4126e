"""The monitoring dashboard in a real environment: site.yml brings it up next to nginx and the slots, the playbooks'
webhook feeds it deploy, step, promote and rollback events, its scheduler probes the real LB, and
`leanvibe-deploy report` reads its uptime. The tests run in order on one environment.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, MONITORING_PORT, SECOND_ENV_OFFSET, LocalEnv, Traffic, wait_for

# Its own environment beside the worker's session one, on ports of its own.
MONITOR_URL = "http://127.0.0.1:%d" % (MONITORING_PORT + SECOND_ENV_OFFSET)
TOKEN = "test-monitor-token"
FAST = {"canary_step_pause_s": 2, "canary_abort_delay_s": 0}


@pytest.fixture(scope="module")
def monitored_env(tmp_path_factory, artifact_dir):
    env = LocalEnv(str(tmp_path_factory.mktemp("run")), artifact_dir, SECOND_ENV_OFFSET, monitoring_enabled=True, monitoring_token=TOKEN,
                   monitoring_environments=[{"name": "local", "url": "{{ lb_url }}", "interval_s": 5, "mode": "quick",
                                             "api_key": "{{ app_api_key }}"}])
    try:
        env.first_site = env.playbook("site.yml")
        yield env
    finally:
        env.stop()


def get(path):
    with urllib.request.urlopen(MONITOR_URL + path, timeout=10) as response:
        body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body.decode()


def post(path, body, token=TOKEN):
    """(status, JSON answer) of a POST; 4xx answers too."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(MONITOR_URL + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def events():
    """Deployment events the dashboard holds, oldest first."""
    return list(reversed(get("/api/deployments?limit=1000")["deployments"]))


def monitor_tasks_changed(run):
    return sorted({name for name, host, result in run.tasks() if host == "monitor-local" and result.get("changed")})


def test_site_brings_the_dashboard_up_and_a_second_run_changes_nothing(monitored_env):
    assert "Keep the monitoring service running, restarted when its config changed" in monitor_tasks_changed(monitored_env.first_site)
    health = get("/healthz")
    assert health["status"] == "ok" and health["scheduler"]["running"] is True, health
    again = monitored_env.playbook("site.yml")
    assert monitor_tasks_changed(again) == []
    assert wait_for(lambda: get("/healthz")["scheduler"]["rounds"] >= 1, timeout=30), "no probe round within 30 s"
    # The scheduler probes the real LB: the version it saw is the one site.yml put on blue.
    overview = get("/api/overview")["environments"][0]
    assert overview["name"] == "local" and overview["last_round"]["passed"] is True, overview
    assert overview["current"]["version"] == "1.0.0", overview["current"]


def test_canary_events_arrive_in_order_with_their_weights(monitored_env):
    run = monitored_env.canary("2.0.0", canary_steps=[50, 100], **FAST)
    assert run.rc == 0, run.failure_messages()
    seen = [(event["event"], event["version"], event["weights"]) for event in events()]
    assert seen == [
        ("deploy", "2.0.0", {"1.0.0": 100}),
        ("step", "2.0.0", {"1.0.0": 50, "2.0.0": 50}),
        ("step", "2.0.0", {"1.0.0": 0, "2.0.0": 100}),
        ("promote", "2.0.0", {"2.0.0": 100}),
    ], seen
    current = get("/api/overview")["environments"][0]["current"]
    assert (current["version"], current["weights"]) == ("2.0.0", {"2.0.0": 100}), current


def test_automatic_rollback_is_a_marker_with_its_reason_and_its_timing_is_in_the_ledger(monitored_env):
    # 40 req/s at 25 % for 2 s is about 20 canary requests, the default min_requests: a loaded machine sends fewer,
    # and an inconclusive gate lets the slow canary through. 10 leave room, and 400 ms stays above the p95 limit.
    with Traffic(monitored_env, rate=40, seconds=90):
        run = monitored_env.canary("2.1.0", canary_steps=[25, 100], app_env={"LEANVIBE_FAULT_LATENCY_MS": "400"},
                                   canary_analysis={"min_requests": 10}, **FAST)
    assert run.rc != 0
    last = events()[-1]
    assert (last["event"], last["version"], last["to_version"], last["weights"]) == ("rollback", "2.1.0", "2.0.0", {"2.0.0": 100}), last
    assert any("p95" in reason for reason in last["reasons"]), last["reasons"]
    markers = get("/api/latency?environment=local&window=1h")["markers"]
    assert [marker["event"] for marker in markers if marker["version"] == "2.1.0"][-1] == "rollback", markers
    entry = monitored_env.read_ledger()["history"][-1]
    record = entry["rollback"]
    assert entry["outcome"] == "rolled_back" and record["detected"] is not None, entry
    assert record["detected"] <= record["started"] <= record["restored"], record
    assert isinstance(record["duration_ms"], int) and record["duration_ms"] >= 0, record


def test_report_reads_the_ledger_and_the_dashboards_uptime(monitored_env):
    proc = subprocess.run([os.path.join(BIN, "leanvibe-deploy"), "report", "-i", "local", "-e", "@" + monitored_env.vars_file,
                           "--json", "-q"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["monitoring"]["url"] == MONITOR_URL and report["monitoring"]["reachable"] is True, report["monitoring"]
    figures = report["figures"]
    assert figures["deployments"]["value"] == 2, figures["deployments"]
    assert (figures["rollbacks"]["value"], figures["mttr"]["data_points"]) == (1, 1), (figures["rollbacks"], figures["mttr"])
    rounds = get("/api/uptime?environment=local&window=24h")["rounds"]
    uptime = figures["uptime"]["24h"]
    # Rounds go on in the background between the report and this read: the report's count cannot be larger.
    assert 1 <= uptime["data_points"] <= rounds and uptime["value"] is not None, uptime


def test_run_probes_needs_the_token(monitored_env):
    before = get("/healthz")["scheduler"]["rounds"]
    assert post("/api/run-probes", {}, token=None)[0] == 401
    assert post("/api/run-probes", {}, token="not-the-token")[0] == 403
    assert get("/healthz")["scheduler"]["rounds"] - before <= 1  # at most a scheduled round in between
    status, answer = post("/api/run-probes", {"environment": "local"})
    assert status == 200 and answer["results"]["local"]["passed"] is True, answer
    assert answer["results"]["local"]["version"] == "2.0.0", answer


def test_metrics_answer_in_the_seed_shape_and_for_prometheus(monitored_env):
    rows = get("/api/metrics?hours=24")
    assert {row["endpoint"] for row in rows} == {"basic_health", "api_functionality"}, rows
    for row in rows:
        assert set(row) == {"environment", "endpoint", "avg_response_time", "success_rate", "total_checks"}, row
        assert row["environment"] == "local" and row["total_checks"] >= 1
    text = get("/metrics")
    assert 'leanvibe_deployment_events_total{environment="local",event="rollback"} 1.0' in text
    assert 'leanvibe_serving_weight_percent{environment="local",version="2.0.0"} 100.0' in text


def test_bad_events_are_refused_and_nothing_is_stored(monitored_env):
    count = len(events())
    good = {"event": "promote", "app": "demo", "environment": "local", "version": "9.9.9"}
    for body, status in (
            (dict(good, environment="nowhere"), 404),
            (dict(good, event="explode"), 422),
            (dict(good, version=""), 422),
            (dict(good, weights={"9.9.9": 140}), 422),
            (["not", "an", "object"], 422)):
        got, answer = post("/api/events", body)
        assert got == status and answer["detail"], (body, got, answer)
    assert post("/api/events", good, token=None)[0] == 401
    assert len(events()) == count
    with pytest.raises(urllib.error.HTTPError) as caught:
        get("/api/uptime?environment=local&window=90d")
    assert caught.value.code == 422


def test_stopping_the_environment_stops_the_dashboard(monitored_env):
    monitored_env.stop()
    time.sleep(0.2)
    with pytest.raises(OSError):
        get("/healthz")
