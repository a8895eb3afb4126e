"""leanvibe_monitor.app through fastapi.testclient, probing a real loopback LB (and a closed port)."""

import json
import random
import time
import tracemalloc
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from monitor_test_helpers import TOKEN, check_row, config_dict, env_dict, free_port, poll, round_row
from prometheus_client.parser import text_string_to_metric_families

from leanvibe_monitor import app as app_module
from leanvibe_monitor.app import create_app, latency_points
from leanvibe_monitor.store import Store, iso

AUTH = {"Authorization": "Bearer " + TOKEN}
W_KEYS = {"window", "start", "end", "uptime_pct", "success_rate_pct", "rounds", "checks"}
CONTRACT_METRICS = {"leanvibe_probe_rounds", "leanvibe_probe_checks", "leanvibe_probe_response_time_seconds", "leanvibe_uptime_ratio",
                    "leanvibe_success_ratio", "leanvibe_deployment_events", "leanvibe_serving_weight_percent",
                    "leanvibe_scheduler_errors", "leanvibe_last_round_timestamp_seconds"}


@pytest.fixture
def make_client(lb, sqlite_store):
    """make_client(**config overrides) -> a started TestClient; environments 'local' (the LB) and 'staging' (a closed port)."""
    clients = []

    def make(store=None, start_scheduler=False, **overrides):
        environments = [env_dict("local", lb.url), env_dict("staging", "http://127.0.0.1:%d" % free_port())]
        app = create_app(config_dict(environments, **overrides), store=store or sqlite_store, start_scheduler=start_scheduler)
        client = TestClient(app)
        client.__enter__()  # pylint: disable=unnecessary-dunder-call  # the lifespan runs until the test ends
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def event(**overrides):
    body = {"event": "promote", "app": "demo", "environment": "local", "version": "2.0.0", "from_version": "1.0.0",
            "text": "demo 2.0.0 promoted in local (was 1.0.0)", "at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat()}
    body.update(overrides)
    return body


def rows(client):
    store = client.app.state.store
    return store.count("probe_rounds"), store.count("health_checks"), store.count("deployment_events")


# --- page, health, headers ------------------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "scheduler": {"running": False, "last_error": None, "rounds": 0, "errors": 0,
                                                             "environments": response.json()["scheduler"]["environments"]}}
    assert set(response.json()["scheduler"]["environments"]) == {"local", "staging"}
    assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["X-Frame-Options"] == "DENY"


def test_the_page_and_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "LeanVibe monitoring" in page.text
    chart = client.get("/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200 and "javascript" in chart.headers["content-type"]
    assert client.get("/static/nothing-here.js").status_code == 404


def test_a_placeholder_page_when_the_page_is_not_installed(monkeypatch, tmp_path, make_client):
    monkeypatch.setattr(app_module, "STATIC_DIR", tmp_path)
    client = make_client()
    page = client.get("/")
    assert page.status_code == 200 and "The dashboard page is not installed" in page.text


def test_the_scheduler_runs_with_the_app_and_stops_with_it(make_client):
    client = make_client(start_scheduler=True)
    poll(lambda: client.get("/healthz").json()["scheduler"]["rounds"] >= 2)
    assert client.get("/healthz").json()["scheduler"]["running"] is True
    scheduler = client.app.state.scheduler
    client.__exit__(None, None, None)
    assert scheduler.running is False


# --- POST /api/run-probes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Basic " + TOKEN}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
    ({"X-LeanVibe-Token": "wrong"}, 403),
    ({"Authorization": "Bearer " + TOKEN + "x"}, 403),
    ({"Authorization": "bearer " + TOKEN}, 200),
    ({"X-LeanVibe-Token": TOKEN}, 200),
])
def test_run_probes_needs_the_token(client, headers, status):
    response = client.post("/api/run-probes", json={"environment": "local"}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"detail": "this endpoint needs the token: send Authorization: Bearer <token> or X-LeanVibe-Token."}
    elif status == 403:
        assert response.json() == {"detail": "the token is wrong."}
    assert rows(client)[0] == (1 if status == 200 else 0)


def test_run_probes_runs_and_stores_a_round_per_environment(client, lb):
    lb.version = "3.1.0"
    response = client.post("/api/run-probes", json={}, headers=AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert set(results) == {"local", "staging"}
    local, staging = results["local"], results["staging"]
    assert (local["passed"], local["success_rate"], local["up"], local["version"], local["stored"]) == (True, 1.0, True, "3.1.0", True)
    assert local["msg"] == "Suite passed: all 2 probes passed against %s." % lb.url
    assert [(probe["name"], probe["passed"], probe["status_code"]) for probe in local["probes"]] == [
        ("basic_health", True, 200), ("database_health", True, 200)]
    assert (staging["passed"], staging["up"], staging["stored"]) == (False, False, True)
    assert rows(client) == (2, 4, 0)
    only = client.post("/api/run-probes", json={"environment": "local"}, headers=AUTH).json()["results"]
    assert list(only) == ["local"]
    assert client.post("/api/run-probes", headers=AUTH).status_code == 200  # no body at all: every environment
    assert rows(client)[0] == 5


@pytest.mark.parametrize("body, status, detail", [
    ({"environment": "prod"}, 404, "environment 'prod' is not monitored: use local, staging."),
    ({"environment": 5}, 422, "environment must be the name of a monitored environment."),
    ({"env": "local"}, 422, "key 'env' is unknown: the body takes only environment."),
    ([], 422, "the body must be a JSON object: {} or {\"environment\": \"<name>\"}."),
    ("local", 422, "the body must be a JSON object: {} or {\"environment\": \"<name>\"}."),
    (b"{not json", 422, "the body is not valid JSON."),
])
def test_run_probes_bad_input(client, body, status, detail):
    if isinstance(body, bytes):
        response = client.post("/api/run-probes", content=body, headers=dict(AUTH, **{"Content-Type": "application/json"}))
    else:
        response = client.post("/api/run-probes", json=body, headers=AUTH)
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert rows(client) == (0, 0, 0)


# --- POST /api/events --------------------------------------------------------------------------------------------


def test_events_from_the_playbooks_are_stored(client):
    bodies = [
        event(event="deploy", version="2.0.0", weights={"1.0.0": 100}, text="demo 2.0.0 goes out as a canary"),
        event(event="step", weights={"1.0.0": 90, "2.0.0": 10}),
        event(event="rollback", version="2.0.0", to_version="1.0.0", weights={"1.0.0": 100}, reasons=["p95 404 ms > limit", ""],
              rollback_ms=412),
        event(event="failure", version="2.0.1", reasons=["health check failed"], rollback_ms=None, from_version=""),
        event(event="promote", version="2.0.2", at="2030-01-01T00:00:00Z", extra_field={"kept": True}),
    ]
    ids = []
    for body in bodies:
        response = client.post("/api/events", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert rows(client)[2] == 5
    listed = client.get("/api/deployments").json()["deployments"]
    assert [row["event"] for row in listed] == ["promote", "failure", "rollback", "step", "deploy"]  # newest event time first
    promote, failure, rollback = listed[0], listed[1], listed[2]
    assert (promote["at"], promote["outcome"]) == ("2030-01-01T00:00:00.000+00:00", "promoted")
    assert (failure["from_version"], failure["rollback_ms"], failure["outcome"]) == (None, None, "failed")
    assert (rollback["reasons"], rollback["rollback_ms"], rollback["to_version"], rollback["weights"]) == (
        ["p95 404 ms > limit"], 412.0, "1.0.0", {"1.0.0": 100})
    stored = client.app.state.store.events("local", limit=1)[0]
    assert stored["payload"]["extra_field"] == {"kept": True}


def test_an_event_without_at_takes_the_time_it_arrived(client):
    body = event()
    del body["at"]
    before = time.time()
    assert client.post("/api/events", json=body, headers=AUTH).status_code == 201
    stored = client.app.state.store.events("local", limit=1)[0]
    assert before - 1 <= stored["at_ts"] <= time.time() + 1


def test_a_naive_at_is_utc(client):
    assert client.post("/api/events", json=event(at="2026-03-01T12:00:00.5"), headers=AUTH).status_code == 201
    assert client.get("/api/deployments").json()["deployments"][0]["at"] == "2026-03-01T12:00:00.500+00:00"


MALFORMED = [
    ([], 422, "the event must be a JSON object with event, app, environment and version."),
    ("promote", 422, "the event must be a JSON object with event, app, environment and version."),
    (b"", 422, "the event must be a JSON object with event, app, environment and version."),
    (b"{\"event\": ", 422, "the body is not valid JSON."),
    (b"{\"event\": NaN}", 422, "the body is not valid JSON."),
    (b"\xff\xfe", 422, "the body is not valid JSON."),
    (event(environment=None), 422, "environment is required: the name of a monitored environment."),
    (event(environment="prod"), 404, "environment 'prod' is not monitored: use local, staging."),
    (event(event="deployed"), 422, "event must be one of deploy, step, promote, rollback, failure, not \"deployed\"."),
    (event(event=None), 422, "event must be one of deploy, step, promote, rollback, failure, not null."),
    (event(app=""), 422, "app must be the application's name, a string of 1 to 200 characters."),
    (event(app=["demo"]), 422, "app must be the application's name, a string of 1 to 200 characters."),
    (event(version=None), 422, "version is required: the released version as a string."),
    (event(version=""), 422, "version is required: the released version as a string."),
    (event(version=True), 422, "version must be a version string, not true."),
    (event(version={"v": 1}), 422, "version must be a version string, not {\"v\": 1}."),
    (event(version="x" * 129), 422, "version must be 1 to 128 printable characters, not \"%s...." % ("x" * 56)),
    (event(version="2.0\u0000rc"), 422, "version must be 1 to 128 printable characters, not \"2.0\\u0000rc\"."),
    (event(to_version=["1"]), 422, "to_version must be a version string, not [\"1\"]."),
    (event(weights={"1.0.0": 101}), 422, "weights[\"1.0.0\"] must be a number from 0 to 100, not 101."),
    (event(weights={"1.0.0": -1}), 422, "weights[\"1.0.0\"] must be a number from 0 to 100, not -1."),
    (event(weights={"1.0.0": "50"}), 422, "weights[\"1.0.0\"] must be a number from 0 to 100, not \"50\"."),
    (event(weights={"1.0.0": True}), 422, "weights[\"1.0.0\"] must be a number from 0 to 100, not true."),
    (event(weights=[100]), 422, "weights must be an object of at most 20 version: percent pairs."),
    (event(reasons="slow"), 422, "reasons must be a list of at most 50 strings."),
    (event(reasons=[1]), 422, "reasons must be a list of at most 50 strings."),
    (event(text=5), 422, "text must be a string of at most 4000 characters."),
    (event(at="yesterday"), 422, "at must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not \"yesterday\"."),
    (event(at=1700000000), 422, "at must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not 1700000000."),
    (event(at="2026-13-01T00:00:00"), 422, "at must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not \"2026-13-01T00:00:00\"."),
    (event(rollback_ms=-5), 422, "rollback_ms must be a number of milliseconds, not -5."),
    (event(rollback_ms="fast"), 422, "rollback_ms must be a number of milliseconds, not \"fast\"."),
]


@pytest.mark.parametrize("body, status, detail", MALFORMED, ids=[str(index) for index in range(len(MALFORMED))])
def test_malformed_events_are_rejected_and_nothing_is_stored(client, body, status, detail):
    if isinstance(body, bytes):
        response = client.post("/api/events", content=body, headers=dict(AUTH, **{"Content-Type": "application/json"}))
    else:
        response = client.post("/api/events", json=body, headers=AUTH)
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert rows(client) == (0, 0, 0)
    assert client.app.state.metrics.registry.get_sample_value("leanvibe_deployment_events_total",
                                                              {"environment": "local", "event": "promote"}) is None


@pytest.mark.parametrize("headers, status", [({}, 401), ({"Authorization": "Bearer nope"}, 403)])
def test_events_need_the_token_and_auth_comes_first(client, headers, status):
    response = client.post("/api/events", json=event(environment="prod", event="bogus"), headers=headers)
    assert response.status_code == status
    assert rows(client) == (0, 0, 0)


def test_an_oversized_body_is_413(client):
    response = client.post("/api/events", json=event(text="x" * (70 * 1024)), headers=AUTH)
    assert (response.status_code, response.json()) == (413, {"detail": "the body is over 64 KiB."})
    assert rows(client) == (0, 0, 0)


def test_numeric_versions_and_a_numeric_rollback_string_are_accepted(client):
    response = client.post("/api/events", json=event(version=3, event="rollback", to_version=2, rollback_ms="250.5",
                                                     weights={"2": 100, "": 0}), headers=AUTH)
    assert response.status_code == 201
    row = client.get("/api/deployments").json()["deployments"][0]
    assert (row["version"], row["to_version"], row["rollback_ms"], row["weights"]) == ("3", "2", 250.5, {"2": 100})


# --- reads ---------------------------------------------------------------------------------------------------------


def seed_rounds(client, environment="local", count=3, start=None, step=60.0, version="1.0.0"):
    store = client.app.state.store
    start = time.time() - count * step if start is None else start
    for index in range(count):
        ts = start + index * step
        round_id = "%s-%d-%f" % (environment, index, ts)
        up = index != 1
        store.record_round(round_row(environment, ts, round_id, passed=up, up=up, version=version, health_ms=10.0 + index),
                           [check_row(environment, ts, round_id, "basic_health", up, 10.0 + index),
                            check_row(environment, ts, round_id, "database_health", True, 20.0)])


def test_metrics_keep_the_seed_shape(client):
    client.post("/api/run-probes", json={}, headers=AUTH)
    body = client.get("/api/metrics?hours=24").json()
    assert [(row["environment"], row["endpoint"]) for row in body] == [
        ("local", "basic_health"), ("local", "database_health"), ("staging", "basic_health"), ("staging", "database_health")]
    for row in body:
        assert set(row) == {"environment", "endpoint", "avg_response_time", "success_rate", "total_checks"}
        assert row["total_checks"] == 1 and isinstance(row["avg_response_time"], float)
    assert [row["success_rate"] for row in body] == [100.0, 100.0, 0.0, 0.0]
    assert [row["environment"] for row in client.get("/api/metrics?environment=staging").json()] == ["staging", "staging"]
    assert client.get("/api/metrics").json() == body  # hours defaults to 24


@pytest.mark.parametrize("query, status, detail", [
    ("hours=0", 422, "hours must be a whole number from 1 to 720, not '0'."),
    ("hours=721", 422, "hours must be a whole number from 1 to 720, not '721'."),
    ("hours=1.5", 422, "hours must be a whole number from 1 to 720, not '1.5'."),
    ("hours=abc", 422, "hours must be a whole number from 1 to 720, not 'abc'."),
    ("environment=prod", 404, "environment 'prod' is not monitored: use local, staging."),
])
def test_metrics_bad_query(client, query, status, detail):
    response = client.get("/api/metrics?" + query)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_overview(client, lb):
    empty = client.get("/api/overview").json()
    assert [env["name"] for env in empty["environments"]] == ["local", "staging"]
    assert empty["environments"][0]["current"] == {"version": None, "weights": {}, "since": None, "source": None}
    assert empty["environments"][0]["last_round"] is None
    assert empty["environments"][0]["windows"]["24h"]["uptime_pct"] is None

    lb.version = "1.4.0"
    client.post("/api/run-probes", json={}, headers=AUTH)
    body = client.get("/api/overview").json()
    assert datetime.fromisoformat(body["generated_at"]).tzinfo is not None
    local, staging = body["environments"]
    assert (local["url"], local["interval_s"], local["probes"]) == (lb.url, 5, ["basic_health", "database_health"])
    assert (local["current"]["version"], local["current"]["weights"], local["current"]["source"]) == ("1.4.0", {"1.4.0": 100.0}, "probe")
    assert set(local["last_round"]) >= {"at", "passed", "up", "success_rate", "duration_ms", "msg"}
    assert (local["last_round"]["passed"], local["last_round"]["up"], staging["last_round"]["up"]) == (True, True, False)
    assert set(local["windows"]) == {"24h", "7d", "30d"}
    for label, window in local["windows"].items():
        assert set(window) == W_KEYS and window["window"] == label
        assert (window["uptime_pct"], window["success_rate_pct"], window["rounds"], window["checks"]) == (100.0, 100.0, 1, 2)
    assert (staging["windows"]["24h"]["uptime_pct"], staging["windows"]["24h"]["success_rate_pct"]) == (0.0, 0.0)

    client.post("/api/events", json=event(event="step", version="2.0.0", weights={"1.4.0": 75, "2.0.0": 25}), headers=AUTH)
    current = client.get("/api/overview").json()["environments"][0]["current"]
    assert (current["version"], current["weights"], current["source"]) == ("1.4.0", {"1.4.0": 75.0, "2.0.0": 25.0}, "event")


@pytest.mark.parametrize("window, seconds", [("1h", 3600), ("24h", 86400), ("7d", 604800), ("30d", 2592000), ("720h", 2592000),
                                             ("2d", 172800)])
def test_uptime_windows(client, window, seconds):
    seed_rounds(client, count=4, start=time.time() - 47 * 3600, step=12 * 3600)  # -47 h, -35 h, -23 h, -11 h
    body = client.get("/api/uptime?environment=local&window=" + window).json()
    assert set(body) == W_KEYS | {"environment"} and (body["environment"], body["window"]) == ("local", window)
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert abs((end - start).total_seconds() - seconds) < 0.01
    expected = {3600: 0, 86400: 2, 172800: 4, 604800: 4, 2592000: 4}[seconds]
    assert body["rounds"] == expected


def test_uptime_counts(client):
    seed_rounds(client, count=4)  # the second round is down
    body = client.get("/api/uptime?environment=local&window=24h").json()
    assert (body["uptime_pct"], body["success_rate_pct"], body["rounds"], body["checks"]) == (75.0, 87.5, 4, 8)
    assert client.get("/api/uptime?environment=local").json()["window"] == "24h"


@pytest.mark.parametrize("path, status, detail", [
    ("/api/uptime?environment=local&window=0h", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '0h'."),
    ("/api/uptime?environment=local&window=31d", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '31d'."),
    ("/api/uptime?environment=local&window=721h", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '721h'."),
    ("/api/uptime?environment=local&window=1w", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '1w'."),
    ("/api/uptime?environment=local&window=24", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '24'."),
    ("/api/uptime?environment=local&window=-1h", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '-1h'."),
    ("/api/uptime?environment=local&window=", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not ''."),
    ("/api/uptime?window=24h", 422, "environment is required: use local, staging."),
    ("/api/uptime?environment=prod", 404, "environment 'prod' is not monitored: use local, staging."),
    ("/api/latency?environment=local&window=45d", 422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not '45d'."),
    ("/api/latency?environment=prod", 404, "environment 'prod' is not monitored: use local, staging."),
    ("/api/latency", 422, "environment is required: use local, staging."),
    ("/api/latency?environment=local&max_points=5", 422, "max_points must be a whole number from 10 to 1000000, not '5'."),
    ("/api/deployments?limit=0", 422, "limit must be a whole number from 1 to 1000, not '0'."),
    ("/api/deployments?limit=1001", 422, "limit must be a whole number from 1 to 1000, not '1001'."),
    ("/api/deployments?environment=prod", 404, "environment 'prod' is not monitored: use local, staging."),
])
def test_read_endpoints_bad_query(client, path, status, detail):
    response = client.get(path)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_latency_points_and_markers(client):
    now = time.time()
    seed_rounds(client, count=3, start=now - 300, step=60)
    seed_rounds(client, "staging", count=2, start=now - 300, step=60)
    seed_rounds(client, count=1, start=now - 3 * 86400)  # outside the window
    for body in (event(event="step", version="2.0.0", weights={"1.0.0": 90, "2.0.0": 10}, at=iso(now - 200)),
                 event(event="rollback", version="2.0.0", to_version="1.0.0", reasons=["error rate 5%"], at=iso(now - 100)),
                 event(event="promote", at=iso(now - 5 * 86400))):  # outside the window
        assert client.post("/api/events", json=body, headers=AUTH).status_code == 201
    body = client.get("/api/latency?environment=local&window=24h").json()
    assert (body["environment"], body["window"]) == ("local", "24h")
    assert [(point["ms"], point["up"], point["passed"]) for point in body["points"]] == [(10.0, True, True), (11.0, False, False),
                                                                                         (12.0, True, True)]
    assert [point["t"] for point in body["points"]] == pytest.approx([(now - 300 + 60 * index) * 1000 for index in range(3)], abs=1)
    markers = body["markers"]
    assert [marker["event"] for marker in markers] == ["step", "rollback"]
    assert markers[0]["t"] == pytest.approx((now - 200) * 1000, abs=1)
    assert (markers[1]["version"], markers[1]["to_version"], markers[1]["from_version"], markers[1]["reasons"]) == (
        "2.0.0", "1.0.0", "1.0.0", ["error rate 5%"])
    assert {"t", "event", "version", "from_version", "to_version", "reasons", "text"} <= set(markers[0])


def test_latency_downsampling_keeps_the_spikes():
    rounds = [(1000.0 + index, 5.0 if index != 37 else 900.0, 20.0, index != 50, True) for index in range(100)]
    points = latency_points(rounds, 10)
    assert len(points) == 10
    assert max(point["ms"] for point in points) == 900.0
    assert sum(1 for point in points if not point["up"]) == 1
    assert latency_points(rounds) == latency_points(rounds, 100)  # one per round when it fits
    assert latency_points([(1.0, None, 33.0, True, True)]) == [{"t": 1000.0, "ms": 33.0, "up": True, "passed": True}]


def reference_latency_points(rounds, max_points=None):
    """latency_points as it was before it bucketed plain lists: a dict per round, then the buckets."""
    points = [{"t": round(ts * 1000.0, 3), "ms": health if health is not None else duration, "up": up, "passed": passed}
              for ts, health, duration, up, passed in rounds]
    if max_points is None or len(points) <= max_points:
        return points
    first, last = points[0]["t"], points[-1]["t"]
    width = (last - first) / max_points or 1.0
    buckets = {}
    for point in points:
        key = min(int((point["t"] - first) / width), max_points - 1)
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = dict(point)
            continue
        up, passed = bucket["up"] and point["up"], bucket["passed"] and point["passed"]
        if point["ms"] > bucket["ms"]:
            bucket.update(point)
        bucket["up"], bucket["passed"] = up, passed
    return [buckets[key] for key in sorted(buckets)]


def latency_datasets():
    """Rounds as rounds_between returns them, and a few shapes that probe the bucket edges."""
    rng = random.Random(20261127)
    yield [(1.79e9 + 30 * index + rng.random() * 0.5, None if rng.random() < 0.02 else round(6 * rng.lognormvariate(0, 0.35), 1),
            round(30 * rng.lognormvariate(0, 0.35), 1), rng.random() > 0.01, rng.random() > 0.02) for index in range(5000)]
    # Times just under a bucket edge that their rounding to 0.001 ms moves onto it (width 2 ms at max_points 100).
    times = [0.0] + [index / 1000.0 - rng.choice((4e-7, -4e-7, 4.9e-7, 0.0)) for index in range(1, 200)] + [0.2]
    yield [(ts, float(index % 7), 1.0, index % 5 != 0, index % 3 != 0) for index, ts in enumerate(times)]
    yield [(1.7e9 + index / 3.0, rng.choice((None, 1.0, 2.0, 2.0)), 9.0, rng.random() > 0.1, True) for index in range(997)]
    yield [(5.0, float(index % 4), 1.0, index != 3, True) for index in range(50)]  # one instant: every round in one bucket
    yield [(rng.random() * 1000.0, rng.random(), 1.0, rng.random() > 0.1, rng.random() > 0.1) for index in range(300)]  # any order


def test_latency_downsampling_is_unchanged_by_bucketing_plain_rows():
    for rounds in latency_datasets():
        for max_points in (None, 1, 2, 7, 10, 100, 2000, len(rounds) - 1, len(rounds)):
            assert latency_points(rounds, max_points) == reference_latency_points(rounds, max_points), max_points


def test_latency_downsampling_builds_only_the_points_it_keeps():
    """The page asks 2,000 points of 86,400 rounds: a dict per round held 20 MB at once and took most of the time."""
    rounds = [(1.79e9 + 30 * index, 5.0 + index % 17, 20.0, index % 1000 != 0, True) for index in range(20000)]
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        points = latency_points(rounds, 200)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()
    assert len(points) == 200 and sum(1 for point in points if not point["up"]) == 20
    assert peak < 500000, peak  # 200 points and their buckets: 55 kB; a dict per round was 4.4 MB


def test_deployments_newest_first_with_a_limit(client):
    now = time.time()
    for index in range(5):
        body = event(event="step", version="2.0.%d" % index, at=iso(now - 100 + index), environment="local" if index % 2 else "staging")
        client.post("/api/events", json=body, headers=AUTH)
    listed = client.get("/api/deployments?limit=3").json()["deployments"]
    assert [row["version"] for row in listed] == ["2.0.4", "2.0.3", "2.0.2"]
    assert [row["version"] for row in client.get("/api/deployments?environment=local").json()["deployments"]] == ["2.0.3", "2.0.1"]
    assert set(listed[0]) == {"id", "timestamp", "at", "environment", "app", "event", "version", "from_version", "to_version", "weights",
                              "reasons", "text", "rollback_ms", "outcome"}


# --- /metrics --------------------------------------------------------------------------------------------------------


def test_prometheus_metrics(client, lb):
    lb.version = "1.0.0"
    client.post("/api/run-probes", json={}, headers=AUTH)
    client.post("/api/events", json=event(event="step", version="2.0.0", weights={"1.0.0": 80, "2.0.0": 20}), headers=AUTH)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert CONTRACT_METRICS <= set(families)
    assert all(name.startswith("leanvibe_") for name in families)

    def value(name, **labels):
        matches = [sample.value for family in families.values() for sample in family.samples
                   if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())]
        assert len(matches) == 1, (name, labels, matches)
        return matches[0]

    assert value("leanvibe_probe_rounds_total", environment="local", result="passed") == 1.0
    assert value("leanvibe_probe_rounds_total", environment="staging", result="failed") == 1.0
    assert value("leanvibe_probe_checks_total", environment="staging", probe="basic_health", result="failed") == 1.0
    assert value("leanvibe_probe_response_time_seconds_count", environment="local", probe="basic_health") == 1.0
    assert value("leanvibe_uptime_ratio", environment="local", window="24h") == 1.0
    assert value("leanvibe_uptime_ratio", environment="staging", window="30d") == 0.0
    assert value("leanvibe_success_ratio", environment="local", window="7d") == 1.0
    assert value("leanvibe_deployment_events_total", environment="local", event="step") == 1.0
    assert value("leanvibe_serving_weight_percent", environment="local", version="2.0.0") == 20.0
    assert value("leanvibe_serving_weight_percent", environment="local", version="1.0.0") == 80.0
    assert value("leanvibe_scheduler_errors_total", environment="local", kind="store") == 0.0
    assert abs(value("leanvibe_last_round_timestamp_seconds", environment="local") - time.time()) < 60
    assert value("leanvibe_store_up") == 1.0


def test_each_app_has_its_own_registry(make_client):
    first, second = make_client(), make_client()
    first.post("/api/run-probes", json={"environment": "local"}, headers=AUTH)
    assert first.app.state.metrics.registry is not second.app.state.metrics.registry
    assert second.app.state.metrics.registry.get_sample_value("leanvibe_probe_rounds_total",
                                                              {"environment": "local", "result": "passed"}) == 0.0


# --- a failing database ----------------------------------------------------------------------------------------------


def test_a_failing_database_is_503_with_one_sentence(make_client, tmp_path):
    path = tmp_path / "gone.db"
    path.mkdir()
    client = make_client(store=Store("sqlite:///%s" % path))
    detail = "cannot read the SQLite database %s: it is a directory." % path
    for url in ("/api/overview", "/api/metrics", "/api/uptime?environment=local", "/api/latency?environment=local", "/api/deployments"):
        response = client.get(url)
        assert (response.status_code, response.json()) == (503, {"detail": detail}), url
    response = client.post("/api/events", json=event(), headers=AUTH)
    assert (response.status_code, response.json()) == (503, {"detail": detail.replace("read", "write to")})
    probes = client.post("/api/run-probes", json={"environment": "local"}, headers=AUTH).json()["results"]["local"]
    assert (probes["passed"], probes["stored"]) == (True, False)
    assert probes["error"] == "environment local: round not stored: " + detail.replace("read", "write to")
    assert client.get("/healthz").json()["scheduler"]["last_error"] == probes["error"]
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and "leanvibe_store_up 0.0" in scrape.text
    assert "leanvibe_scheduler_errors_total{environment=\"local\",kind=\"store\"} 1.0" in scrape.text


def test_create_app_opens_the_configured_database(lb, tmp_path):
    database = tmp_path / "data" / "monitor.db"
    app = create_app(config_dict([env_dict("local", lb.url)], database="sqlite:///%s" % database), start_scheduler=False)
    with TestClient(app) as client:
        assert client.post("/api/run-probes", json={}, headers=AUTH).json()["results"]["local"]["stored"] is True
    assert database.is_file()
    assert json.loads(json.dumps(app.state.store.last_round("local")))["passed"] is True
