"""leanvibe_monitor.store on SQLite (tmp_path) and on a real PostgreSQL server (skipped where none can start)."""

import sqlite3
import threading
import time

import pytest
from monitor_test_helpers import check_row, event_row, free_port, round_row

from leanvibe_monitor.store import (DatabaseUrl, Store, StoreError, describe_database, iso, main_version, open_store,
                                    parse_database_url, serving_weights)

NOW = time.time()
HOUR = 3600.0
DAY = 86400.0


def add_round(store, environment, ts, round_id, passed=True, up=True, version="1.0.0", checks=None):
    if checks is None:
        checks = [check_row(environment, ts, round_id, "basic_health", up, 5.0),
                  check_row(environment, ts, round_id, "database_health", passed, 15.0)]
    store.record_round(round_row(environment, ts, round_id, passed=passed, up=up, version=version), checks)


# --- writes and reads, on both backends -------------------------------------------------------------------


def test_rounds_and_checks_feed_the_seed_metrics(store):
    add_round(store, "prod", NOW - 60, "r1")
    add_round(store, "prod", NOW - 30, "r2", passed=False)
    add_round(store, "stage", NOW - 30, "r3")
    add_round(store, "prod", NOW - 2 * DAY, "old")  # outside 24 h
    assert store.count("probe_rounds") == 4 and store.count("health_checks", "prod") == 6
    rows = store.metrics(NOW - 24 * HOUR)
    assert rows == [
        {"environment": "prod", "endpoint": "basic_health", "avg_response_time": 5.0, "success_rate": 100.0, "total_checks": 2},
        {"environment": "prod", "endpoint": "database_health", "avg_response_time": 15.0, "success_rate": 50.0, "total_checks": 2},
        {"environment": "stage", "endpoint": "basic_health", "avg_response_time": 5.0, "success_rate": 100.0, "total_checks": 1},
        {"environment": "stage", "endpoint": "database_health", "avg_response_time": 15.0, "success_rate": 100.0, "total_checks": 1},
    ]
    assert [row["environment"] for row in store.metrics(NOW - 24 * HOUR, "stage")] == ["stage", "stage"]
    assert store.metrics(NOW - 24 * HOUR, "nowhere") == []


def test_check_columns_round_trip(store):
    store.record_round(round_row("prod", NOW, "r1", passed=False, up=False, version=None, health_ms=None),
                       [check_row("prod", NOW, "r1", "basic_health", False, 2.5, status_code=None)])
    last = store.last_round("prod")
    assert (last["id"], last["passed"], last["up"], last["version"], last["health_ms"], last["msg"]) == (
        "r1", False, False, None, None, "Suite failed.")
    assert last["ts"] == pytest.approx(NOW) and last["at"].endswith("+00:00")
    assert store.metrics(0) == [{"environment": "prod", "endpoint": "basic_health", "avg_response_time": 2.5, "success_rate": 0.0,
                                 "total_checks": 1}]


def test_windows_count_rounds_and_checks(store):
    assert store.window("prod", "24h", DAY, now=NOW) == {"window": "24h", "start": iso(NOW - DAY), "end": iso(NOW), "uptime_pct": None,
                                                         "success_rate_pct": None, "rounds": 0, "checks": 0}
    for index in range(3):
        add_round(store, "prod", NOW - 60 * (index + 1), "up%d" % index)
    add_round(store, "prod", NOW - 300, "down", passed=False, up=False)
    add_round(store, "prod", NOW - 3 * DAY, "older", passed=False, up=False)
    day = store.window("prod", "24h", DAY, now=NOW)
    assert (day["uptime_pct"], day["success_rate_pct"], day["rounds"], day["checks"]) == (75.0, 75.0, 4, 8)
    week = store.window("prod", "7d", 7 * DAY, now=NOW)
    assert (week["uptime_pct"], week["success_rate_pct"], week["rounds"], week["checks"]) == (60.0, 60.0, 5, 10)
    assert week["window"] == "7d" and week["start"] < week["end"]


def test_last_round_and_rounds_between(store):
    assert store.last_round("prod") is None
    add_round(store, "prod", NOW - 20, "a")
    add_round(store, "prod", NOW - 10, "b", up=False)
    add_round(store, "other", NOW - 5, "c")
    assert store.last_round("prod")["id"] == "b"
    assert store.last_round_times(["prod", "other", "nowhere"]) == {"prod": pytest.approx(NOW - 10), "other": pytest.approx(NOW - 5)}
    assert store.last_round_times(["other"]) == {"other": pytest.approx(NOW - 5)}
    rounds = store.rounds_between("prod", NOW - 60, NOW)
    assert [(up, passed, health) for _ts, health, _duration, up, passed in rounds] == [(True, True, 5.0), (False, True, 5.0)]
    assert rounds[0][0] < rounds[1][0]


def test_events_round_trip_newest_first(store):
    first = store.record_event(event_row("prod", NOW - 300, "deploy", weights={"1.0.0": 100}, text="goes out"))
    second = store.record_event(event_row("prod", NOW - 200, "step", weights={"1.0.0": 75, "2.0.0": 25}, from_version="1.0.0"))
    third = store.record_event(event_row("prod", NOW - 100, "rollback", to_version="1.0.0", reasons=["p95 too high"], rollback_ms=412.5))
    store.record_event(event_row("other", NOW - 50, "promote"))
    assert first < second < third
    events = store.events("prod")
    assert [event["event"] for event in events] == ["rollback", "step", "deploy"]
    assert events[0]["reasons"] == ["p95 too high"] and events[0]["rollback_ms"] == 412.5 and events[0]["to_version"] == "1.0.0"
    assert events[1]["weights"] == {"1.0.0": 75, "2.0.0": 25} and events[2]["text"] == "goes out"
    assert events[2]["payload"] == {"event": "deploy"}
    assert [event["event"] for event in store.events(limit=2)] == ["promote", "rollback"]
    window = store.events("prod", start=NOW - 250, end=NOW - 150, oldest_first=True)
    assert [event["event"] for event in window] == ["step"]


def test_current_serving_from_events_then_from_probes(store):
    assert store.current_serving("prod") == {"version": None, "weights": {}, "since": None, "source": None}
    add_round(store, "prod", NOW - 400, "v0", version="0.9.0")
    add_round(store, "prod", NOW - 300, "v1a", version="1.0.0")
    add_round(store, "prod", NOW - 200, "down", version=None, up=False)
    add_round(store, "prod", NOW - 100, "v1b", version="1.0.0")
    probe = store.current_serving("prod")
    assert (probe["version"], probe["weights"], probe["source"]) == ("1.0.0", {"1.0.0": 100.0}, "probe")
    assert probe["since"] == iso(NOW - 300)  # the first round of the current streak of 1.0.0

    store.record_event(event_row("prod", NOW - 90, "deploy"))  # no weights: says nothing about traffic
    assert store.current_serving("prod")["source"] == "probe"
    store.record_event(event_row("prod", NOW - 80, "step", version="2.0.0", from_version="1.0.0", weights={"1.0.0": 90, "2.0.0": 10}))
    step = store.current_serving("prod")
    assert (step["version"], step["weights"], step["source"]) == ("1.0.0", {"1.0.0": 90.0, "2.0.0": 10.0}, "event")
    store.record_event(event_row("prod", NOW - 70, "step", version="2.0.0", from_version="1.0.0", weights={"1.0.0": 50, "2.0.0": 50}))
    assert store.current_serving("prod")["version"] == "1.0.0"  # a tie: the stable version is still current
    store.record_event(event_row("prod", NOW - 60, "promote", version="2.0.0"))
    promoted = store.current_serving("prod")
    assert (promoted["version"], promoted["weights"]) == ("2.0.0", {"2.0.0": 100.0})
    store.record_event(event_row("prod", NOW - 50, "failure", version="3.0.0"))  # traffic unchanged
    assert store.current_serving("prod")["version"] == "2.0.0"
    store.record_event(event_row("prod", NOW - 40, "rollback", version="2.0.0", to_version="1.0.0"))
    rolled = store.current_serving("prod")
    assert (rolled["version"], rolled["weights"], rolled["since"]) == ("1.0.0", {"1.0.0": 100.0}, store.events("prod", limit=1)[0]["at"])


def test_retention_prunes_old_rows_of_every_table(store):
    add_round(store, "prod", NOW - 31 * DAY, "old")
    add_round(store, "prod", NOW - 29 * DAY, "recent")
    store.record_event(event_row("prod", NOW - 40 * DAY, "promote", ts=NOW - 40 * DAY))
    store.record_event(event_row("prod", NOW - DAY, "promote"))
    assert store.prune(30, now=NOW) == {"health_checks": 2, "probe_rounds": 1, "deployment_events": 1}
    assert (store.count("probe_rounds"), store.count("health_checks"), store.count("deployment_events")) == (1, 2, 1)
    assert store.last_round("prod")["id"] == "recent"
    assert store.prune(30, now=NOW) == {"health_checks": 0, "probe_rounds": 0, "deployment_events": 0}


def test_concurrent_writers_and_readers(store):
    errors = []

    def write(worker):
        try:
            for index in range(15):
                add_round(store, "prod", NOW - index, "w%d-%d" % (worker, index))
                store.window("prod", "24h", DAY)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert (store.count("probe_rounds"), store.count("health_checks")) == (90, 180)


def test_open_store_twice_keeps_the_data(store):
    add_round(store, "prod", NOW, "r1")
    again = open_store(store.url)
    try:
        assert again.count("probe_rounds") == 1
    finally:
        again.close()


# --- SQLite specifics ----------------------------------------------------------------------------------------


def test_sqlite_uses_wal_and_creates_its_folder(tmp_path):
    path = tmp_path / "deep" / "er" / "monitor.db"
    store = open_store("sqlite:///%s" % path)
    assert store.kind == "sqlite" and store.description == "SQLite database %s" % path
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
            "health_checks", "probe_rounds", "deployment_events"}


def test_metrics_search_the_window_not_every_row_kept(sqlite_store, monkeypatch):
    """/api/metrics?hours=24 reads the window through an index: at 30 days, a scan of every check took 5 times longer."""
    add_round(sqlite_store, "prod", NOW - 2 * DAY, "old")
    add_round(sqlite_store, "prod", NOW - 60, "new")
    statements = []
    real_run = sqlite_store._run  # pylint: disable=protected-access  # to see the statements and their plans

    def recording_run(operations, action):
        statements.extend((operation[0], operation[1]) for operation in operations)
        return real_run(operations, action)

    monkeypatch.setattr(sqlite_store, "_run", recording_run)
    assert [row["total_checks"] for row in sqlite_store.metrics(NOW - DAY)] == [1, 1]
    assert [row["total_checks"] for row in sqlite_store.metrics(NOW - DAY, "prod")] == [1, 1]
    assert len(statements) == 2
    with sqlite3.connect(sqlite_store.url.path) as conn:
        for statement, params in statements:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]
            assert any(step.startswith("SEARCH health_checks USING INDEX health_checks_") for step in plan), plan
            assert not any(step.startswith("SCAN health_checks") for step in plan), plan


def test_last_round_times_seek_each_environment_not_every_round_kept(sqlite_store, monkeypatch):
    """/metrics reads the latest round of each configured environment with an index seek, not a walk of every round."""
    for index in range(3):
        add_round(sqlite_store, "prod", NOW - 60 * index, "prod%d" % index)
    add_round(sqlite_store, "stage", NOW - 30, "stage")
    statements = []
    real_run = sqlite_store._run  # pylint: disable=protected-access  # to see the statements and their plans

    def recording_run(operations, action):
        statements.extend((operation[0], operation[1]) for operation in operations)
        return real_run(operations, action)

    monkeypatch.setattr(sqlite_store, "_run", recording_run)
    assert sqlite_store.last_round_times(["prod", "stage", "idle"]) == {"prod": pytest.approx(NOW), "stage": pytest.approx(NOW - 30)}
    assert len(statements) == 3
    with sqlite3.connect(sqlite_store.url.path) as conn:
        for statement, params in statements:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]
            assert plan == ["SEARCH probe_rounds USING COVERING INDEX probe_rounds_env_ts (environment=?)"], plan


def test_a_directory_as_database_is_one_sentence(tmp_path):
    """Root ignores file modes: a directory in the file's place fails for root too."""
    with pytest.raises(StoreError) as caught:
        open_store("sqlite:///%s" % tmp_path)
    assert str(caught.value) == "cannot write to the SQLite database %s: it is a directory." % tmp_path


def test_a_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as caught:
        open_store("sqlite:///%s/monitor.db" % blocker)
    assert str(caught.value) == "cannot create the folder %s of the SQLite database %s/monitor.db: File exists." % (blocker, blocker)
    with pytest.raises(StoreError, match=r"^cannot create the folder /proc/leanvibe of the SQLite database /proc/leanvibe/m\.db: "):
        open_store("sqlite:////proc/leanvibe/m.db")


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "monitor.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError) as caught:
        open_store("sqlite:///%s" % path)
    assert str(caught.value) == "cannot write to the SQLite database %s: file is not a database." % path


def test_a_store_recovers_when_the_database_comes_back(tmp_path):
    path = tmp_path / "monitor.db"
    path.mkdir()  # unwritable: a directory where the file goes
    store = Store("sqlite:///%s" % path)
    with pytest.raises(StoreError, match="it is a directory"):
        add_round(store, "prod", NOW, "lost")
    with pytest.raises(StoreError, match=r"^cannot read the SQLite database .*: it is a directory\.$"):
        store.count("probe_rounds")
    path.rmdir()
    add_round(store, "prod", NOW, "kept")  # the schema is created on the way
    assert store.count("probe_rounds") == 1


# --- PostgreSQL specifics ------------------------------------------------------------------------------------


def test_postgresql_sql_generation_without_a_server():
    """The dialect, checked at unit level: parameter style and column types (no server needed)."""
    store = Store("postgresql://monitor:pw@db.example.com:5432/leanvibe")
    assert store.kind == "postgresql"
    assert store.description == "PostgreSQL database postgresql://monitor@db.example.com:5432/leanvibe"
    assert store.sql("SELECT a FROM t WHERE x = ? AND y >= ?") == "SELECT a FROM t WHERE x = %s AND y >= %s"
    schema = store.schema_statements()
    assert schema[0].startswith("SELECT pg_advisory_xact_lock(")
    assert "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in schema[1] and "ts DOUBLE PRECISION NOT NULL" in schema[1]
    assert not any("AUTOINCREMENT" in statement or " REAL" in statement for statement in schema)
    sqlite_schema = Store("sqlite:////tmp/x.db").schema_statements()
    assert "id INTEGER PRIMARY KEY AUTOINCREMENT" in sqlite_schema[0] and "ts REAL NOT NULL" in sqlite_schema[0]
    assert len(sqlite_schema) == len(schema) - 1  # the same tables and indexes, less the advisory lock


def test_unreachable_postgresql_is_one_sentence_without_the_password():
    port = free_port()
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://monitor:s3cret@127.0.0.1:%d/leanvibe" % port)
    message = str(caught.value)
    assert message.startswith("cannot write to the PostgreSQL database postgresql://monitor@127.0.0.1:%d/leanvibe: " % port)
    assert "s3cret" not in message and "\n" not in message and message.endswith(".")


@pytest.mark.postgres
def test_postgresql_reconnects_after_the_server_closed_the_connection(postgres_url):
    import psycopg  # pylint: disable=import-outside-toplevel

    store = open_store(postgres_url)
    try:
        add_round(store, "prod", NOW, "before")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leanvibe-monitor'")
        with pytest.raises(StoreError, match=r"^cannot write to the PostgreSQL database postgresql://postgres@127\.0\.0\.1:\d+/postgres: "):
            add_round(store, "prod", NOW, "lost")
        add_round(store, "prod", NOW, "after")  # a new connection
        assert store.last_round("prod")["id"] == "after" and store.count("probe_rounds") == 2
        assert store._query("SHOW statement_timeout") == [("15s",)]  # pylint: disable=protected-access  # a hung server fails a call
    finally:
        store.close()


# --- URLs and helpers ---------------------------------------------------------------------------------------------


def test_parse_database_url(tmp_path):
    assert parse_database_url("sqlite:///x.db", base_dir=tmp_path) == DatabaseUrl("sqlite", "sqlite:///%s/x.db" % tmp_path,
                                                                                  "%s/x.db" % tmp_path)
    assert parse_database_url("postgres://u@h/db").kind == "postgresql"
    assert describe_database("sqlite:////a/b.db") == "SQLite database /a/b.db"
    assert describe_database("postgresql://u:p@h/db") == "PostgreSQL database postgresql://u@h/db"
    with pytest.raises(StoreError, match=r"^database URL PostgreSQL database postgresql:///db has no host\.$"):
        parse_database_url("postgresql:///db")


def test_serving_weights_and_main_version():
    assert serving_weights({"event": "step", "weights": {"1": 90, "2": 10, "0": 0}}) == {"1": 90.0, "2": 10.0}
    assert serving_weights({"event": "promote", "version": "2"}) == {"2": 100.0}
    assert serving_weights({"event": "rollback", "version": "2", "to_version": "1"}) == {"1": 100.0}
    assert serving_weights({"event": "rollback", "version": "2"}) == {}
    assert serving_weights({"event": "failure", "version": "2"}) == {}
    assert main_version({}) is None
    assert main_version({"a": 50.0, "b": 50.0}, {"from_version": "b"}) == "b"
    assert main_version({"a": 50.0, "b": 50.0}) == "a"
