"""The real service as a process: `python -m leanvibe_demo` from an unpacked release artifact."""

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time

import pytest
import requests
import websocket
from demo_service_helpers import API_KEY, DEMO_SERVICE_DIR, free_port

from build_release import build_release

START_TIMEOUT_S = 15
STOP_TIMEOUT_S = 15


@pytest.fixture
def release_dir(tmp_path):
    artifact = build_release("7.7.7-test", tmp_path / "artifacts")
    root = tmp_path / "release"
    with tarfile.open(artifact) as tar:
        tar.extractall(root, filter="data")
    return root


class Service:
    def __init__(self, root, tmp_path, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "service.log"
        environ = {**os.environ, "PYTHONPATH": str(root), "LEANVIBE_API_KEY": API_KEY, "LEANVIBE_DATA_DIR": str(tmp_path / "data"), **env}
        for name in [n for n in environ if n.startswith("LEANVIBE_FAULT_") and n not in env]:
            del environ[name]  # a knob left in the caller's environment must not leak in
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leanvibe_demo", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=root, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def output(self):
        return self.log.read_text(errors="replace")

    def wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode} before it was healthy:\n{self.output()}")
            try:
                response = requests.get(f"{self.url}/health", timeout=2)
                if response.status_code == 200:
                    return response.json()
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        pytest.fail(f"service not healthy within {START_TIMEOUT_S} s:\n{self.output()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def start_service(tmp_path):
    services = []

    def start(root, **env):
        services.append(Service(root, tmp_path, **env))
        return services[-1]

    yield start
    for service in services:
        service.stop()


def test_release_serves_health_ws_and_drains_on_sigterm(release_dir, start_service):
    # Latency makes each request take 0.4 s, so one is surely in flight when SIGTERM arrives.
    service = start_service(release_dir, LEANVIBE_FAULT_LATENCY_MS="400")
    health = service.wait_healthy()
    assert health["status"] == "healthy"
    assert health["version"] == "7.7.7-test"

    created = requests.post(f"{service.url}/api/v1/tasks", json={"title": "t"}, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert created.status_code == 201

    ws = websocket.create_connection(f"ws://127.0.0.1:{service.port}/ws", timeout=5)
    try:
        ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(ws.recv())
    finally:
        ws.close()
    assert pong["type"] == "pong"
    assert pong["version"] == "7.7.7-test"

    in_flight = {}
    request = threading.Thread(target=lambda: in_flight.update(response=requests.get(f"{service.url}/health", timeout=10)))
    request.start()
    time.sleep(0.15)
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(STOP_TIMEOUT_S) == 0, service.output()
    request.join(5)
    assert in_flight["response"].status_code == 200  # drained, not dropped

    output = service.output()
    assert "Finished server process" in output
    # Timestamped log lines on stderr, and no access log by default.
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ", output, re.MULTILINE)
    assert "GET /health" not in output


def test_crash_knob_kills_the_process(start_service):
    service = start_service(DEMO_SERVICE_DIR, LEANVIBE_FAULT_CRASH_AFTER_S="1")
    service.wait_healthy()
    assert service.proc.wait(10) == 1
    assert "fault injected" in service.output()
