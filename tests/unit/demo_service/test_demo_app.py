"""The HTTP and WebSocket contract of the demo service, through FastAPI's TestClient."""

import socket
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from demo_service_helpers import API_KEY, AUTH
from starlette.websockets import WebSocketDisconnect

from leanvibe_demo.__main__ import main
from leanvibe_demo.app import create_app
from leanvibe_demo.db import Database
from leanvibe_demo.faults import start_crash_timer
from leanvibe_demo.settings import DEV_VERSION, ConfigError

TASKS = "/api/v1/tasks"


def assert_recent_utc(timestamp):
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - parsed) < timedelta(seconds=30)


# --- health and version -------------------------------------------------------------------


def test_health_without_version_file_reports_dev_version(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == DEV_VERSION == "0.0.0+dev"
    assert_recent_utc(body["timestamp"])


def test_version_comes_from_release_root_and_is_read_once(make_client, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    (release / "VERSION").write_text("2.5.0-rc1\n")
    client = make_client(release_root=release)
    (release / "VERSION").write_text("9.9.9\n")  # a later change must not leak into the running process
    assert client.get("/health").json()["version"] == "2.5.0-rc1"
    assert client.get("/health/complete").json()["version"] == "2.5.0-rc1"
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["version"] == "2.5.0-rc1"


def test_health_complete_checks_database_only_without_redis(client):
    response = client.get("/health/complete")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body["checks"]) == {"database"}
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["database"]["response_time_ms"] >= 0
    assert_recent_utc(body["timestamp"])


def test_health_database_healthy(client):
    response = client.get("/health/database")
    assert response.status_code == 200
    body = response.json()
    assert body["database_connected"] is True
    assert body["status"] == "healthy"
    assert isinstance(body["response_time_ms"], float)


def break_sqlite(tmp_path):
    """Replace the SQLite file with a directory: every later connection fails."""
    data = tmp_path / "data"
    for path in data.glob("leanvibe.db*"):
        path.unlink()
    (data / "leanvibe.db").mkdir()


def test_database_failure_gives_503_everywhere(client, tmp_path):
    break_sqlite(tmp_path)
    response = client.get("/health/database")
    assert response.status_code == 503
    body = response.json()
    assert body["database_connected"] is False
    assert body["status"] == "unhealthy"
    assert "sqlite" in body["error"]

    complete = client.get("/health/complete")
    assert complete.status_code == 503
    assert complete.json()["status"] == "unhealthy"
    assert complete.json()["checks"]["database"]["status"] == "unhealthy"
    assert complete.json()["checks"]["database"]["error"]

    assert client.get("/health").status_code == 200  # liveness does not depend on the database
    created = client.post(TASKS, json={"title": "x"}, headers=AUTH)
    assert created.status_code == 503
    assert created.json() == {"detail": "database unavailable"}


def test_unreachable_postgres_is_reported_without_the_password(make_client):
    client = make_client(DATABASE_URL="postgresql://demo:secretpw@127.0.0.1:1/leanvibe")
    response = client.get("/health/database")
    assert response.status_code == 503
    body = response.json()
    assert body["database_connected"] is False
    assert body["error"].startswith("postgresql:")
    assert "secretpw" not in response.text
    assert client.get("/health/complete").status_code == 503


def test_postgres_without_psycopg_is_a_clear_config_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` raise ImportError
    with pytest.raises(ConfigError, match="psycopg is not installed"):
        create_app({"DATABASE_URL": "postgres://u@db/x", "LEANVIBE_DATA_DIR": str(tmp_path)})


def test_unsupported_database_url_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="mysql"):
        create_app({"DATABASE_URL": "mysql://u@db/x", "LEANVIBE_DATA_DIR": str(tmp_path)})


# --- redis check --------------------------------------------------------------------------


def test_redis_healthy(make_client, fake_redis):
    port, received = fake_redis(b"+PONG\r\n")
    response = make_client(REDIS_URL=f"redis://127.0.0.1:{port}/0").get("/health/complete")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "healthy"
    assert checks["redis"]["response_time_ms"] >= 0
    assert received == [b"*1\r\n$4\r\nPING\r\n"]


def test_redis_password_is_sent_with_auth(make_client, fake_redis):
    port, received = fake_redis(b"+OK\r\n+PONG\r\n")
    response = make_client(REDIS_URL=f"redis://:s3cret@127.0.0.1:{port}").get("/health/complete")
    assert response.status_code == 200
    assert received[0].startswith(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n")


def test_redis_error_reply_makes_complete_unhealthy(make_client, fake_redis):
    port, _received = fake_redis(b"-NOAUTH Authentication required.\r\n")
    response = make_client(REDIS_URL=f"redis://127.0.0.1:{port}").get("/health/complete")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["checks"]["redis"]["status"] == "unhealthy"
    assert "NOAUTH" in body["checks"]["redis"]["error"]


def test_redis_down_makes_complete_unhealthy(make_client):
    # A port that was just free and is closed again: connection refused.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    response = make_client(REDIS_URL=f"redis://127.0.0.1:{closed_port}").get("/health/complete")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["error"]


def test_silent_redis_times_out_after_one_second(make_client, fake_redis):
    port, _received = fake_redis(None)
    client = make_client(REDIS_URL=f"redis://127.0.0.1:{port}")
    started = time.monotonic()
    response = client.get("/health/complete")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert "timed out" in response.json()["checks"]["redis"]["error"]
    assert 0.9 <= elapsed < 3


# --- tasks API ----------------------------------------------------------------------------


def test_task_lifecycle(client):
    created = client.post(TASKS, json={"title": "write tests", "description": "all of them"}, headers=AUTH)
    assert created.status_code == 201
    task = created.json()
    assert set(task) == {"id", "title", "description", "created_at"}
    assert task["title"] == "write tests"
    assert task["description"] == "all of them"
    assert_recent_utc(task["created_at"])

    assert client.get(f"{TASKS}/{task['id']}", headers=AUTH).json() == task
    other = client.post(TASKS, json={"title": "no description"}, headers=AUTH).json()
    assert other["description"] is None
    listed = client.get(TASKS, headers=AUTH)
    assert listed.status_code == 200
    assert listed.json() == [other, task]  # newest first

    deleted = client.delete(f"{TASKS}/{task['id']}", headers=AUTH)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"{TASKS}/{task['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"{TASKS}/{task['id']}", headers=AUTH).status_code == 404
    assert client.get(TASKS, headers=AUTH).json() == [other]


def test_list_limit(client):
    for i in range(3):
        client.post(TASKS, json={"title": f"t{i}"}, headers=AUTH)
    assert [t["title"] for t in client.get(TASKS, params={"limit": 2}, headers=AUTH).json()] == ["t2", "t1"]
    assert client.get(TASKS, params={"limit": 0}, headers=AUTH).status_code == 422


def test_unknown_task_is_404(client):
    response = client.get(f"{TASKS}/424242", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "task not found"}


@pytest.mark.parametrize(
    "body",
    [{}, {"title": ""}, {"title": "x" * 201}, {"title": 5}, {"title": "ok", "description": "d" * 2001}, [], "not an object"],
)
def test_bad_task_body_is_422(client, body):
    assert client.post(TASKS, json=body, headers=AUTH).status_code == 422


def test_length_limits_are_inclusive(client):
    response = client.post(TASKS, json={"title": "x" * 200, "description": "d" * 2000}, headers=AUTH)
    assert response.status_code == 201


def test_non_integer_id_is_422(client):
    assert client.get(f"{TASKS}/abc", headers=AUTH).status_code == 422


ENDPOINTS = [("get", TASKS, None), ("post", TASKS, {"title": "t"}), ("get", f"{TASKS}/1", None), ("delete", f"{TASKS}/1", None)]


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": API_KEY}, {"Authorization": f"Basic {API_KEY}"}, {"Authorization": "Bearer "}],
    ids=["none", "wrong", "no-scheme", "basic", "empty"],
)
def test_api_rejects_missing_or_wrong_key(client, method, path, body, headers):
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_api_accepts_right_key(client, method, path, body):
    response = client.request(method, path, json=body, headers={"Authorization": f"bearer {API_KEY}"})
    assert response.status_code in (200, 201, 404)  # 404: task 1 may not exist; never 401


def test_auth_is_checked_before_anything_else(client):
    bad_json = {"Content-Type": "application/json"}
    assert client.post(TASKS, content=b"{not json", headers=bad_json).status_code == 401
    assert client.post(TASKS, content=b"{not json", headers={**bad_json, **AUTH}).status_code == 422
    assert client.get("/api/v1/unknown").status_code == 401
    assert client.get("/api/v1/unknown", headers=AUTH).status_code == 404


@pytest.mark.parametrize("key", [None, ""])
def test_no_configured_key_locks_the_api(make_client, key):
    client = make_client(LEANVIBE_API_KEY=key)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}, AUTH):
        assert client.get(TASKS, headers=headers).status_code == 401
    assert client.get("/health").status_code == 200


# --- websocket ----------------------------------------------------------------------------


def test_websocket_ping_pong(client):
    with client.websocket_connect("/ws") as ws:
        for _attempt in range(2):
            ws.send_json({"type": "ping", "id": 1})
            reply = ws.receive_json()
            assert reply["type"] == "pong"
            assert reply["version"] == DEV_VERSION
            assert_recent_utc(reply["timestamp"])


@pytest.mark.parametrize("message", ["not json", '{"type": "hello"}', "[1, 2]", '"ping"', b"\x00binary"])
def test_websocket_rejects_other_messages_and_stays_open(client, message):
    with client.websocket_connect("/ws") as ws:
        if isinstance(message, bytes):
            ws.send_bytes(message)
        else:
            ws.send_text(message)
        reply = ws.receive_json()
        assert reply["type"] == "error"
        assert reply["detail"]
        ws.send_json({"type": "ping"})
        assert ws.receive_json()["type"] == "pong"


# --- fault knobs --------------------------------------------------------------------------


def test_error_rate_one_fails_every_api_request(make_client):
    client = make_client(LEANVIBE_FAULT_ERROR_RATE="1.0")
    for _attempt in range(20):
        response = client.post(TASKS, json={"title": "t"}, headers=AUTH)
        assert response.status_code == 500
        assert response.json() == {"detail": "fault injected"}
    assert client.get(TASKS, headers=AUTH).status_code == 500
    assert client.get("/health").status_code == 200  # only /api/v1/* is affected


def test_error_rate_zero_fails_nothing(make_client):
    client = make_client(LEANVIBE_FAULT_ERROR_RATE="0")
    statuses = {client.post(TASKS, json={"title": "t"}, headers=AUTH).status_code for _attempt in range(20)}
    assert statuses == {201}


def test_error_rate_half_fails_about_half(make_client):
    client = make_client(LEANVIBE_FAULT_ERROR_RATE="0.5")
    failures = sum(client.get(TASKS, headers=AUTH).status_code == 500 for _attempt in range(200))
    assert 50 < failures < 150  # ~7 standard deviations each side: not flaky


def test_latency_is_added_to_every_http_response(make_client):
    client = make_client(LEANVIBE_FAULT_LATENCY_MS="300")
    for path, headers in (("/health", {}), (TASKS, AUTH)):
        started = time.monotonic()
        assert client.get(path, headers=headers).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_health_fault_fails_every_health_endpoint(make_client):
    client = make_client(LEANVIBE_FAULT_HEALTH="fail")
    for path in ("/health", "/health/complete", "/health/database"):
        response = client.get(path)
        assert response.status_code == 503, path
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["reason"] == "fault injected"
    assert client.get("/health/database").json()["database_connected"] is False
    assert client.get(TASKS, headers=AUTH).status_code == 200  # the API itself still works


def test_websocket_fault_refuses_the_connection(make_client):
    client = make_client(LEANVIBE_FAULT_WEBSOCKET="FAIL")
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws"):
            pass
    assert refused.value.code == 1011


@pytest.mark.parametrize(
    "name,value",
    [
        ("LEANVIBE_FAULT_ERROR_RATE", "2"),
        ("LEANVIBE_FAULT_ERROR_RATE", "-0.1"),
        ("LEANVIBE_FAULT_ERROR_RATE", "abc"),
        ("LEANVIBE_FAULT_ERROR_RATE", "nan"),
        ("LEANVIBE_FAULT_LATENCY_MS", "-5"),
        ("LEANVIBE_FAULT_LATENCY_MS", "fast"),
        ("LEANVIBE_FAULT_LATENCY_MS", "inf"),
        ("LEANVIBE_FAULT_HEALTH", "maybe"),
        ("LEANVIBE_FAULT_WEBSOCKET", "1"),
        ("LEANVIBE_FAULT_CRASH_AFTER_S", "soon"),
        ("LEANVIBE_FAULT_CRASH_AFTER_S", "-1"),
    ],
)
def test_invalid_fault_knob_is_rejected(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        create_app({name: value, "LEANVIBE_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("value", ["", "off", "OFF"])
def test_switch_knobs_accept_off(make_client, value):
    client = make_client(LEANVIBE_FAULT_HEALTH=value, LEANVIBE_FAULT_WEBSOCKET=value)
    assert client.get("/health").status_code == 200


def test_main_refuses_to_start_with_one_error_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LEANVIBE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEANVIBE_FAULT_ERROR_RATE", "2")
    assert main(["--port", "19199"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "LEANVIBE_FAULT_ERROR_RATE" in err


def test_crash_timer_calls_exit_with_status_1():
    codes = []
    called = threading.Event()
    timer = start_crash_timer(0.05, exit_func=lambda code: (codes.append(code), called.set()))
    assert timer.daemon
    assert called.wait(2)
    assert codes == [1]


# --- two slots sharing one SQLite file ----------------------------------------------------


def test_two_app_instances_share_the_sqlite_file(make_client, tmp_path):
    blue = make_client()
    green = make_client()
    task = blue.post(TASKS, json={"title": "from blue"}, headers=AUTH).json()
    assert green.get(f"{TASKS}/{task['id']}", headers=AUTH).json() == task
    assert green.delete(f"{TASKS}/{task['id']}", headers=AUTH).status_code == 204
    assert blue.get(f"{TASKS}/{task['id']}", headers=AUTH).status_code == 404
    with sqlite3.connect(tmp_path / "data" / "leanvibe.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_on_one_sqlite_file(tmp_path):
    slots = [Database("", tmp_path / "data"), Database("", tmp_path / "data")]

    def write(n):
        return slots[n % 2].create_task(f"task {n}", None)["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(write, range(100)))
    assert len(set(ids)) == 100
    assert len(slots[0].list_tasks(1000)) == 100


def test_data_dir_is_created(make_client, tmp_path):
    data_dir = tmp_path / "nested" / "data"
    make_client(LEANVIBE_DATA_DIR=str(data_dir)).post(TASKS, json={"title": "t"}, headers=AUTH)
    assert (data_dir / "leanvibe.db").is_file()
