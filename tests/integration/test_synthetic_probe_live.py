"""synthetic_probe against REAL demo service processes: one per case, each with one fault knob (no mocks).

A release is built with demo_service/build_release.py and unpacked into a temp folder; every case runs
`python -m leanvibe_demo` from it on its own loopback port in PORT_BASE+40 to +69 (never the ports of `make demo`)
with its own data dir. All processes start together, so the file takes about as long as its slowest case.
The engine is called directly; the module also runs once end to end through `ansible localhost -m`.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import PORT_BASE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO, ".collections")
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)

from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import MODES, ProbeTarget, run_suite  # noqa: E402

# Real processes on loopback (pytest.ini's markers).
pytestmark = pytest.mark.live

BIN = os.path.dirname(sys.executable)
VERSION = "3.1.4"
API_KEY = "integration-probe-key"
PORT_RANGE = range(PORT_BASE + 40, PORT_BASE + 70)
START_TIMEOUT_S = 30.0
SECURITY_HEADERS_MISSING = "missing Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection"
CASES = {
    "healthy": {},
    "error_rate": {"LEANVIBE_FAULT_ERROR_RATE": "1"},
    "latency": {"LEANVIBE_FAULT_LATENCY_MS": "1500"},
    "health_fail": {"LEANVIBE_FAULT_HEALTH": "fail"},
    "websocket_fail": {"LEANVIBE_FAULT_WEBSOCKET": "fail"},
    "crash": {"LEANVIBE_FAULT_CRASH_AFTER_S": "1"},
}


def free_ports(count):
    """Ports of PORT_RANGE that nothing listens on now."""
    found = []
    for port in PORT_RANGE:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip("fewer than %d free ports in %d-%d" % (count, PORT_RANGE[0], PORT_RANGE[-1]))
    return found


class DemoProcess:
    def __init__(self, name, release_dir, data_dir, port, faults):
        self.name = name
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log_path = os.path.join(os.path.dirname(data_dir), "%s.log" % name)
        env = dict(os.environ, LEANVIBE_API_KEY=API_KEY, LEANVIBE_DATA_DIR=data_dir, **faults)
        for key in ("PYTHONPATH", "DATABASE_URL", "REDIS_URL"):
            env.pop(key, None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "leanvibe_demo", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                cwd=release_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def answers(self):
        """Serving HTTP, whatever the status (the health fault answers 503)."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=3):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            return False

    def log_tail(self):
        with open(self.log_path, "rb") as handle:
            return handle.read()[-2000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("probe-release")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "demo_service", "build_release.py"), "--version", VERSION,
                           "--output-dir", str(base)], capture_output=True, text=True, timeout=60, check=True)
    release = base / "release"
    release.mkdir()
    with tarfile.open(proc.stdout.strip()) as archive:
        archive.extractall(str(release), filter="data")
    return str(release)


@pytest.fixture(scope="module")
def demo(release_dir, tmp_path_factory):
    """name -> DemoProcess for every case, all started at once and stopped at the end."""
    base = tmp_path_factory.mktemp("probe-data")
    processes = {}
    try:
        for (name, faults), port in zip(CASES.items(), free_ports(len(CASES))):
            processes[name] = DemoProcess(name, release_dir, str(base / name), port, faults)
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = set(processes)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                process = processes[name]
                if process.answers() or (name == "crash" and process.proc.poll() is not None):
                    waiting.discard(name)
                elif process.proc.poll() is not None:
                    raise AssertionError("demo %s exited with %s:\n%s" % (name, process.proc.returncode, process.log_tail()))
            time.sleep(0.1)
        if waiting:
            raise AssertionError("demo processes not serving after %.0f s: %s" % (START_TIMEOUT_S, ", ".join(sorted(waiting))))
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def target(process, **kwargs):
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("timeout", 5)
    return ProbeTarget(process.url, **kwargs)


def by_name(report):
    return {result["name"]: result for result in report["probes"]}


def test_healthy_slot_passes_all_but_security_headers(demo):
    report = run_suite(target(demo["healthy"], expect_version=VERSION, headers={"X-Canary": "always"}), mode="comprehensive")
    results = by_name(report)
    assert [name for name in results if results[name]["passed"]] == list(MODES["comprehensive"][:5]), report
    assert results["basic_health"]["detail"] == "healthy, version %s" % VERSION
    assert results["websocket"]["detail"] == "answered pong"
    assert results["performance"]["detail"].startswith("5 requests: avg ")
    # a slot has no nginx in front: none of the security headers
    assert results["security_headers"]["passed"] is False
    assert results["security_headers"]["detail"].startswith(SECURITY_HEADERS_MISSING)
    assert (report["passed"], report["success_rate"], report["failed_probes"]) == (False, 0.8333, ["security_headers"])
    assert run_suite(target(demo["healthy"]), mode="comprehensive", success_threshold=0.8)["passed"] is True
    standard = run_suite(target(demo["healthy"]))
    assert (standard["passed"], standard["success_rate"]) == (True, 1.0), standard
    wrong = run_suite(target(demo["healthy"], expect_version="9.9.9"), mode="quick")
    assert by_name(wrong)["basic_health"]["detail"] == "/health reports version %s, expected 9.9.9" % VERSION


def test_error_rate_fails_the_api_probe(demo):
    report = run_suite(target(demo["error_rate"]), mode="standard")
    assert report["failed_probes"] == ["api_functionality"]
    assert by_name(report)["api_functionality"]["detail"] == "HTTP 500 from POST /api/v1/tasks"
    assert (report["passed"], report["success_rate"]) == (False, 0.75)
    assert "api_functionality: HTTP 500 from POST /api/v1/tasks" in report["msg"]


def test_latency_fails_the_performance_probe(demo):
    report = run_suite(target(demo["latency"], performance_requests=2, performance_avg_ms=1000, performance_p95_ms=1200),
                       probe_names=["basic_health", "websocket", "performance"])
    results = by_name(report)
    assert results["basic_health"]["passed"] is True and results["basic_health"]["duration_ms"] >= 1500
    assert results["websocket"]["passed"] is True  # the latency knob delays HTTP only
    assert results["performance"]["passed"] is False
    assert results["performance"]["detail"].startswith("2 requests: avg 15")
    assert results["performance"]["detail"].endswith("(avg over 1000 ms, p95 over 1200 ms)")
    assert (report["passed"], report["failed_probes"]) == (False, ["performance"])
    assert report["duration_ms"] < 4500  # concurrent: about the slowest probe (2 x 1.5 s), not the sum
    slow = run_suite(target(demo["latency"], timeout=1), probe_names=["basic_health"])
    assert by_name(slow)["basic_health"]["detail"] == "timed out after 1.0 s"


def test_health_fault_fails_both_health_probes(demo):
    report = run_suite(target(demo["health_fail"]), mode="standard")
    results = by_name(report)
    assert results["basic_health"]["detail"] == "HTTP 503 from /health"
    assert results["database_health"]["detail"] == "HTTP 503 from /health/database"
    assert report["failed_probes"] == ["basic_health", "database_health"]
    assert (report["passed"], report["success_rate"]) == (False, 0.5)


def test_websocket_fault_fails_the_websocket_probe(demo):
    report = run_suite(target(demo["websocket_fail"]), mode="standard")
    assert report["failed_probes"] == ["websocket"]
    assert by_name(report)["websocket"]["detail"] == "handshake refused: HTTP 403 from /ws"
    assert (report["passed"], report["success_rate"]) == (False, 0.75)
    assert run_suite(target(demo["websocket_fail"]), mode="standard", success_threshold=0.75)["passed"] is True


def test_crashed_process_fails_every_probe_with_connection_refused(demo):
    process = demo["crash"]
    process.proc.wait(15)
    assert process.proc.returncode == 1
    report = run_suite(target(process), mode="comprehensive")
    assert report["failed_probes"] == list(MODES["comprehensive"])
    assert all("connection refused" in result["detail"] for result in report["probes"]), report
    assert (report["passed"], report["success_rate"]) == (False, 0.0)


def test_module_end_to_end_through_ansible(demo):
    args = {"url": demo["healthy"].url, "mode": "comprehensive", "api_key": API_KEY, "success_threshold": 0.8,
            "expect_version": VERSION, "headers": {"X-Canary": "always"}, "timeout": 5}
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local", "--check", "-o",
           "-e", "ansible_python_interpreter=%s" % sys.executable,
           "-m", "leanvibe.deploy.synthetic_probe", "-a", json.dumps(args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "localhost | SUCCESS => " in proc.stdout, output
    result = json.loads(proc.stdout.split("=> ", 1)[1])
    assert (result["changed"], result["passed"], result["failed_probes"]) == (False, True, ["security_headers"]), result
    assert result["mode"] == "comprehensive"
    assert result["msg"].startswith("Suite passed: 5 of 6 probes passed against %s" % demo["healthy"].url)
    assert API_KEY not in output
