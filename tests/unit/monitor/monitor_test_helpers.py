"""Shared helpers of the monitoring service tests: a tiny LB on loopback, configs, a throwaway PostgreSQL.

The fake LB is http.server in a thread on 127.0.0.1 port 0 speaking the demo service's contract (/health with
a version, /health/database, the tasks API); it can go unhealthy on demand. Nothing here mocks HTTP.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS_PATH = str(REPO_ROOT / ".collections")
TOKEN = "monitor-test-token"
API_KEY = "lb-test-key"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """check()'s first truthy value within timeout, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met within %.1f s" % timeout)


class FakeLB:
    """A loopback HTTP/1.1 server with the demo service's health and tasks endpoints."""

    def __init__(self, version: str = "1.0.0") -> None:
        self.version: Optional[str] = version
        self.health_status = 200
        self.requests: list = []
        self.tasks: dict = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # pylint: disable=invalid-name  # http.server's naming
                owner.handle(self, "GET")

            def do_POST(self) -> None:  # pylint: disable=invalid-name
                owner.handle(self, "POST")

            def do_DELETE(self) -> None:  # pylint: disable=invalid-name
                owner.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple:
        if path == "/health":
            status = "healthy" if self.health_status == 200 else "unhealthy"
            data = {"status": status}
            if self.version is not None:
                data["version"] = self.version
            return self.health_status, data
        if path == "/health/database":
            return 200, {"database_connected": True, "response_time_ms": 0.3}
        if path.startswith("/api/v1/tasks"):
            if headers.get("Authorization") != "Bearer " + API_KEY:
                return 401, {"detail": "missing or invalid API key"}
            if method == "POST":
                task = dict(json.loads(body), id=len(self.tasks) + 1)
                self.tasks[task["id"]] = task
                return 201, task
            task_id = int(path.rsplit("/", 1)[1])
            if method == "GET":
                return 200, self.tasks[task_id]
            self.tasks.pop(task_id, None)
            return 204, None
        return 404, {"detail": "not found"}

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, handler.path))
            status, data = self.answer(method, handler.path, handler.headers, body)
        raw = b"" if data is None else json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)


def config_dict(environments: list, database: Optional[str] = None, **overrides: Any) -> dict:
    """A valid config mapping for these environments ({name, url, ...} each)."""
    data = {"listen": "127.0.0.1:%d" % free_port(), "token": TOKEN, "collections_path": COLLECTIONS_PATH,
            "retention_days": 30, "environments": environments}
    if database is not None:
        data["database"] = database
    data.update(overrides)
    return data


def env_dict(name: str, url: str, **overrides: Any) -> dict:
    data = {"name": name, "url": url, "interval_s": 5, "probes": ["basic_health", "database_health"], "timeout_s": 2}
    data.update(overrides)
    return data


def round_row(environment: str, ts: float, round_id: str, passed: bool = True, up: bool = True, version: Optional[str] = "1.0.0",
              health_ms: Optional[float] = 5.0) -> dict:
    from leanvibe_monitor.store import iso  # pylint: disable=import-outside-toplevel

    return {"id": round_id, "timestamp": iso(ts), "ts": ts, "environment": environment, "url": "http://lb", "passed": passed,
            "up": up, "success_rate": 1.0 if passed else 0.5, "duration_ms": 12.5, "health_ms": health_ms, "version": version,
            "msg": "Suite passed." if passed else "Suite failed."}


def check_row(environment: str, ts: float, round_id: str, endpoint: str = "basic_health", success: bool = True,
              ms: float = 5.0, status_code: Optional[int] = 200) -> dict:
    from leanvibe_monitor.store import iso  # pylint: disable=import-outside-toplevel

    return {"timestamp": iso(ts), "ts": ts, "environment": environment, "endpoint": endpoint, "status_code": status_code,
            "response_time_ms": ms, "success": success, "detail": "ok" if success else "failed", "round_id": round_id}


def event_row(environment: str, at_ts: float, event: str = "promote", version: str = "2.0.0", **extra: Any) -> dict:
    from leanvibe_monitor.store import iso  # pylint: disable=import-outside-toplevel

    row = {"timestamp": iso(at_ts), "ts": at_ts, "at": iso(at_ts), "at_ts": at_ts, "environment": environment, "app": "demo",
           "event": event, "version": version, "from_version": None, "to_version": None, "weights": None, "reasons": [],
           "text": None, "rollback_ms": None, "payload": {"event": event}}
    row.update(extra)
    return row


def postgres_program(name: str) -> Optional[str]:
    """initdb or pg_ctl: on PATH, else from the newest server under /usr/lib/postgresql/<version>/bin (Debian's place)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name),
                      key=lambda path: [int(part) if part.isdigit() else 0 for part in path.split("/")[4].split(".")])
    return versions[-1] if versions else None


class Postgres:
    """A throwaway PostgreSQL server (initdb + pg_ctl) on loopback, run as the postgres user when we are root."""

    def __init__(self) -> None:
        self.initdb = postgres_program("initdb")
        self.pg_ctl = postgres_program("pg_ctl")
        self.folder: Optional[str] = None
        self.port = free_port()
        self.user: Optional[str] = None
        self.error: Optional[str] = None

    @property
    def url(self) -> str:
        return "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def _run(self, *args: str) -> None:
        kwargs = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid} if self.user else {}
        subprocess.run(args, check=True, capture_output=True, timeout=60, cwd=self.folder, **kwargs)

    def start(self) -> bool:
        if not self.initdb or not self.pg_ctl:
            self.error = "initdb/pg_ctl not found on PATH or under /usr/lib/postgresql/<version>/bin: run `make setup`"
            return False
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres").pw_name  # initdb refuses to run as root
            except KeyError:
                self.error = "running as root and there is no postgres user"
                return False
        # Not under pytest's tmp dir: its 0700 parents would keep the postgres user out.
        self.folder = tempfile.mkdtemp(prefix="leanvibe-monitor-pg-")
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = os.path.join(self.folder, "data")
        try:
            self._run(self.initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            self._run(self.pg_ctl, "-D", data, "-w", "-t", "30", "-l", os.path.join(self.folder, "log"), "-o",
                      "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.folder), "start")
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            self.error = "%s %s" % (exc, stderr.decode(errors="replace")[-500:])
            return False
        return True

    def stop(self) -> None:
        if self.folder is None:
            return
        try:
            self._run(self.pg_ctl, "-D", os.path.join(self.folder, "data"), "-m", "immediate", "-w", "stop")
        except (OSError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
