"""leanvibe_monitor.scheduler against a real loopback LB, a closed port, and a store that fails and recovers."""

import dataclasses
import logging
import threading
import time

import pytest
from monitor_test_helpers import API_KEY, config_dict, env_dict, free_port, poll

from leanvibe_monitor.config import parse_config
from leanvibe_monitor.metrics import MonitorMetrics
from leanvibe_monitor.scheduler import Scheduler, round_rows, version_from_report
from leanvibe_monitor.store import Store


def fast(config, interval_s=0.05):
    """The config with intervals below the 5 s a file may ask for: the loop, not the clock, is under test."""
    return dataclasses.replace(config, environments=tuple(dataclasses.replace(env, interval_s=interval_s) for env in config.environments))


def make(store, *environments, interval_s=0.05):
    config = fast(parse_config(config_dict(list(environments))), interval_s)
    metrics = MonitorMetrics(store, config.environment_names)
    return Scheduler(config, store, metrics, prune_retry_s=0.1), metrics


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def running():
    """running(scheduler) starts it and stops it when the test ends."""
    started = []

    def start(scheduler):
        scheduler.start()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        assert scheduler.stop(5) is True


def test_a_round_against_a_healthy_lb_is_stored_with_version_and_status_codes(lb, sqlite_store, caplog):
    lb.version = "2.4.1"
    scheduler, metrics = make(sqlite_store, env_dict("local", lb.url, mode="quick", probes=None, api_key=API_KEY))
    with caplog.at_level(logging.INFO, logger="leanvibe_monitor"):
        result = scheduler.run_round("local")
    assert (result["passed"], result["up"], result["version"], result["stored"], result["error"]) == (True, True, "2.4.1", True, None)
    assert [(probe["name"], probe["status_code"]) for probe in result["probes"]] == [("basic_health", 200), ("api_functionality", 204)]
    last = sqlite_store.last_round("local")
    assert (last["id"], last["version"], last["up"], last["passed"], last["success_rate"]) == (result["round_id"], "2.4.1", True, True, 1.0)
    assert last["health_ms"] == result["probes"][0]["duration_ms"]
    assert [row["endpoint"] for row in sqlite_store.metrics(0)] == ["api_functionality", "basic_health"]
    assert sample(metrics, "leanvibe_probe_rounds_total", environment="local", result="passed") == 1.0
    assert sample(metrics, "leanvibe_probe_checks_total", environment="local", probe="api_functionality", result="passed") == 1.0
    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert lines == ["local (up, %.0f ms, version 2.4.1): Suite passed: all 2 probes passed against %s." % (result["duration_ms"], lb.url)]


def test_a_closed_port_is_a_failed_round_that_is_stored(sqlite_store):
    url = "http://127.0.0.1:%d" % free_port()
    scheduler, metrics = make(sqlite_store, env_dict("down", url))
    result = scheduler.run_round("down")
    assert (result["passed"], result["up"], result["version"], result["stored"], result["success_rate"]) == (False, False, None, True, 0.0)
    assert all("connection refused" in probe["detail"] and probe["status_code"] is None for probe in result["probes"])
    last = sqlite_store.last_round("down")
    assert (last["passed"], last["up"], last["version"]) == (False, False, None)
    assert last["msg"].startswith("Suite failed: 0 of 2 probes passed against %s" % url)
    assert sqlite_store.window("down", "24h", 86400)["uptime_pct"] == 0.0
    assert sample(metrics, "leanvibe_probe_rounds_total", environment="down", result="failed") == 1.0
    assert scheduler.status()["last_error"] is None  # a down target is data, not a scheduler fault


def test_threads_probe_every_environment_until_stopped(lb, sqlite_store, running):
    closed = "http://127.0.0.1:%d" % free_port()
    scheduler, metrics = make(sqlite_store, env_dict("up", lb.url), env_dict("down", closed))
    running(scheduler)
    assert scheduler.running is True and scheduler.status()["running"] is True
    poll(lambda: sqlite_store.count("probe_rounds", "up") >= 3 and sqlite_store.count("probe_rounds", "down") >= 3)
    started = time.monotonic()
    assert scheduler.stop(5) is True
    assert time.monotonic() - started < 3
    assert scheduler.running is False
    count = sqlite_store.count("probe_rounds")
    time.sleep(0.2)
    assert sqlite_store.count("probe_rounds") == count  # nothing runs after stop()
    status = scheduler.status()
    assert status["rounds"] == count and status["environments"]["down"]["rounds"] >= 3
    assert sample(metrics, "leanvibe_probe_rounds_total", environment="down", result="failed") >= 3


def test_the_interval_is_kept(lb, sqlite_store, running):
    scheduler, _metrics = make(sqlite_store, env_dict("local", lb.url), interval_s=0.3)
    running(scheduler)
    time.sleep(1.0)
    scheduler.stop(5)
    assert 3 <= sqlite_store.count("probe_rounds") <= 5  # at 0, 0.3, 0.6, 0.9 s


def test_an_unwritable_store_is_counted_and_the_loop_recovers_with_it(lb, tmp_path, running, caplog):
    path = tmp_path / "monitor.db"
    path.mkdir()  # a directory where the database file goes: unwritable, even for root
    store = Store("sqlite:///%s" % path)
    scheduler, metrics = make(store, env_dict("local", lb.url))
    with caplog.at_level(logging.INFO, logger="leanvibe_monitor"):
        running(scheduler)
        poll(lambda: sample(metrics, "leanvibe_scheduler_errors_total", environment="local", kind="store") >= 2)
        status = scheduler.status()
        assert status["running"] is True
        assert status["last_error"] == ("environment local: round not stored: cannot write to the SQLite database %s: it is a directory."
                                        % path)
        assert status["environments"]["local"]["errors"] >= 2
        path.rmdir()  # the database recovers
        poll(lambda: store.count("probe_rounds") >= 2)
        poll(lambda: scheduler.status()["last_error"] is None)
    assert scheduler.status()["environments"]["local"]["rounds"] > store.count("probe_rounds")  # the lost rounds ran
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "retention: cannot prune the SQLite database %s: it is a directory." % path in errors  # retried, then fine
    errors = [message for message in errors if message.startswith("environment ")]
    assert errors[0] == "environment local: round not stored: cannot write to the SQLite database %s: it is a directory." % path


def test_an_engine_fault_is_counted_and_the_loop_goes_on(lb, sqlite_store, running):
    scheduler, metrics = make(sqlite_store, env_dict("local", lb.url))
    real_engine = scheduler.engine
    calls = []

    class BrokenOnce:
        """The probe engine with a bug in its first call."""

        def __getattr__(self, name):
            return getattr(real_engine, name)

        @staticmethod
        def run_suite(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise RuntimeError("boom")
            return real_engine.run_suite(*args, **kwargs)

    scheduler.engine = BrokenOnce()
    running(scheduler)
    poll(lambda: sqlite_store.count("probe_rounds") >= 2)
    assert sample(metrics, "leanvibe_scheduler_errors_total", environment="local", kind="probe") == 1.0
    assert scheduler.status()["errors"] == 1


def test_manual_rounds_wait_for_a_scheduled_one(lb, sqlite_store):
    scheduler, _metrics = make(sqlite_store, env_dict("local", lb.url))
    results = []
    with scheduler.states["local"].run_lock:  # a scheduled round in flight
        thread = threading.Thread(target=lambda: results.append(scheduler.run_round("local")))
        thread.start()
        time.sleep(0.2)
        assert results == [] and lb.requests == []
    thread.join(5)
    assert results[0]["stored"] is True
    with pytest.raises(KeyError):
        scheduler.run_round("nowhere")


def test_retention_runs_at_start(lb, sqlite_store, running):
    old = time.time() - 40 * 86400
    sqlite_store.record_round({"id": "ancient", "timestamp": "x", "ts": old, "environment": "local", "url": lb.url, "passed": True,
                               "up": True, "success_rate": 1.0, "duration_ms": 1.0, "health_ms": 1.0, "version": "0.1", "msg": "m"}, [])
    scheduler, _metrics = make(sqlite_store, env_dict("local", lb.url), interval_s=60)
    running(scheduler)
    poll(lambda: scheduler.housekeeping.rounds >= 1)
    assert sqlite_store.rounds_between("local", 0, time.time() - 30 * 86400) == []


def test_version_from_report():
    def report(detail, passed=True):
        return {"probes": [{"name": "basic_health", "passed": passed, "detail": detail}]}

    assert version_from_report(report("healthy, version 1.2.3")) == "1.2.3"
    assert version_from_report(report("healthy, version None")) is None
    assert version_from_report(report("HTTP 503 from /health", passed=False)) is None
    assert version_from_report({"probes": []}) is None


def test_round_rows_without_basic_health():
    report = {"passed": True, "success_rate": 1.0, "duration_ms": 8.0, "url": "http://lb", "msg": "ok",
              "probes": [{"name": "websocket", "passed": True, "duration_ms": 7.0, "detail": "answered pong", "status_code": 101}]}
    round_row, checks = round_rows("e", "rid", 1000.0, report)
    assert (round_row["up"], round_row["health_ms"], round_row["version"]) == (True, None, None)
    assert checks == [{"timestamp": round_row["timestamp"], "ts": 1000.0, "environment": "e", "endpoint": "websocket", "status_code": 101,
                       "response_time_ms": 7.0, "success": True, "detail": "answered pong", "round_id": "rid"}]
