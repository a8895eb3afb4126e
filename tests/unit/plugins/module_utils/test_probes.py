"""The synthetic probe engine (module_utils/probes.py) against a loopback HTTP server that misbehaves on demand.

The fake service is http.server in a thread on 127.0.0.1 port 0, speaking HTTP/1.1 with keep-alive. It serves the
demo service's contract (/health, /health/database, the tasks API) and can answer 503, send a body that is not JSON,
a 2 MiB body, a body that trickles in, stall, or leave out security headers. "Connection refused" is a port that
nothing listens on. No mocks of requests or websocket-client.
"""

import base64
import datetime
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import probes
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import (
    MODES,
    PROBES,
    SECURITY_HEADERS,
    ProbeTarget,
    describe_error,
    run_probe,
    run_suite,
    select_probes,
)

from plugin_test_helpers import free_port

API_KEY = "probe-test-key"
ALL_HEADERS = {name: "x" for name in SECURITY_HEADERS}


class Behaviour:
    """How the fake answers one path: status, JSON or raw body, extra headers, delays."""

    def __init__(self, status=200, body=None, raw=None, headers=None, delay=0.0, trickle=None, stall=None):
        self.status = status
        self.body = body
        self.raw = raw
        self.headers = headers or {}
        self.delay = delay  # seconds before the status line
        self.trickle = trickle  # seconds between single bytes of the body
        self.stall = stall  # seconds to stall after the headers and half of the body


class FakeService:
    """A tiny threaded HTTP/1.1 server with the demo service's endpoints, each of which can misbehave."""

    def __init__(self):
        self.routes = {}
        self.requests = []  # (method, path, headers)
        self.tasks = {}
        self.next_id = 1
        self.connections = 0
        self.lock = threading.Lock()
        self.security_headers = dict(ALL_HEADERS)
        self.api_status = {}  # method -> forced status for /api/v1/tasks*
        self.get_title = None  # answer GET of a task with this title instead
        self.latency = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with owner.lock:
                    owner.connections += 1

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.handle(self, "GET")

            def do_POST(self):
                owner.handle(self, "POST")

            def do_DELETE(self):
                owner.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def behave(self, path, **kwargs):
        self.routes[path] = Behaviour(**kwargs)

    def requests_to(self, method, prefix):
        return [path for verb, path, _headers in self.requests if verb == method and path.startswith(prefix)]

    # --- the default contract -------------------------------------------------------------

    def default(self, handler, method, body):
        path = handler.path
        if path == "/health" and method == "GET":
            return Behaviour(body={"status": "healthy", "version": "2.0.0"})
        if path == "/health/database" and method == "GET":
            return Behaviour(body={"database_connected": True, "response_time_ms": 0.4, "status": "healthy"})
        if path.startswith("/api/v1/tasks"):
            if handler.headers.get("Authorization") != "Bearer " + API_KEY:
                return Behaviour(status=401, body={"detail": "missing or invalid API key"})
            if method in self.api_status:
                return Behaviour(status=self.api_status[method], body={"detail": "fault injected"})
            if path == "/api/v1/tasks" and method == "POST":
                task = dict(json.loads(body), id=self.next_id)
                self.tasks[self.next_id] = task
                self.next_id += 1
                return Behaviour(status=201, body=task)
            task_id = int(path.rsplit("/", 1)[1]) if path.rsplit("/", 1)[1].isdigit() else None
            if task_id not in self.tasks:
                return Behaviour(status=404, body={"detail": "task not found"})
            if method == "GET":
                task = dict(self.tasks[task_id])
                if self.get_title is not None:
                    task["title"] = self.get_title
                return Behaviour(body=task)
            if method == "DELETE":
                del self.tasks[task_id]
                return Behaviour(status=204)
        return Behaviour(status=404, body={"detail": "not found"})

    def handle(self, handler, method):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, handler.path, dict(handler.headers)))
            answer = self.routes.get(handler.path) or self.default(handler, method, body)
        if answer.delay or self.latency:
            time.sleep(answer.delay or self.latency)
        data = answer.raw if answer.raw is not None else (b"" if answer.body is None else json.dumps(answer.body).encode())
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in dict(self.security_headers, **answer.headers).items():
                handler.send_header(name, value)
            handler.end_headers()
            if answer.trickle:
                for index in range(len(data)):
                    handler.wfile.write(data[index:index + 1])
                    handler.wfile.flush()
                    time.sleep(answer.trickle)
            elif answer.stall:
                handler.wfile.write(data[:len(data) // 2])
                handler.wfile.flush()
                time.sleep(answer.stall)
                handler.wfile.write(data[len(data) // 2:])
            else:
                handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True


@pytest.fixture
def service():
    fake = FakeService()
    yield fake
    fake.stop()


def target_for(url, **kwargs):
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("timeout", 2)
    return ProbeTarget(url, **kwargs)


def probe(service_or_url, name, **kwargs):
    url = service_or_url if isinstance(service_or_url, str) else service_or_url.url
    return run_probe(target_for(url, **kwargs), name)


HTTP_PROBES = ["basic_health", "database_health", "api_functionality", "performance", "security_headers"]


# --- a healthy service ----------------------------------------------------------------------


def test_every_http_probe_passes_against_a_healthy_service(service):
    report = run_suite(target_for(service.url), probe_names=HTTP_PROBES)
    assert report["passed"] is True, report
    assert report["success_rate"] == 1.0
    assert report["failed_probes"] == []
    assert [result["name"] for result in report["probes"]] == HTTP_PROBES
    assert all(result["passed"] and result["duration_ms"] >= 0 for result in report["probes"])
    details = {result["name"]: result["detail"] for result in report["probes"]}
    assert details["basic_health"] == "healthy, version 2.0.0"
    assert details["security_headers"] == "all 4 security headers"
    assert "avg" in details["performance"] and "p95" in details["performance"]
    assert report["msg"] == "Suite passed: all 5 probes passed against %s." % service.url
    assert service.tasks == {}  # the API probe cleaned up after itself


def test_expected_version(service):
    assert probe(service, "basic_health", expect_version="2.0.0")["passed"] is True
    result = probe(service, "basic_health", expect_version="2.1.0")
    assert result["passed"] is False
    assert result["detail"] == "/health reports version 2.0.0, expected 2.1.0"


def test_extra_headers_go_with_every_request(service):
    run_suite(target_for(service.url, headers={"X-Canary": "always"}), probe_names=HTTP_PROBES)
    assert service.requests
    assert all(headers.get("X-Canary") == "always" for _method, _path, headers in service.requests)
    # the bearer key goes to the API only
    assert all("Authorization" not in headers for _method, path, headers in service.requests if not path.startswith("/api/"))


def test_performance_reuses_one_keep_alive_connection(service):
    result = probe(service, "performance", performance_requests=8)
    assert result["passed"] is True, result
    assert result["detail"].startswith("8 requests: avg ")
    assert service.connections == 1
    assert len(service.requests_to("GET", "/health")) == 8


# --- the target misbehaves ------------------------------------------------------------------


def test_error_status_is_a_failed_probe(service):
    service.behave("/health", status=503, body={"status": "unhealthy"})
    result = probe(service, "basic_health")
    assert (result["passed"], result["detail"]) == (False, "HTTP 503 from /health")


def test_unhealthy_status_in_a_200(service):
    service.behave("/health", body={"status": "degraded", "version": "2.0.0"})
    assert probe(service, "basic_health")["detail"] == "/health reports status 'degraded', not 'healthy'"


def test_body_that_is_not_json(service):
    service.behave("/health", raw=b"<html>oops</html>")
    result = probe(service, "basic_health")
    assert result["passed"] is False
    assert result["detail"] == "body is not JSON (/health)"


def test_json_that_is_not_an_object(service):
    service.behave("/health/database", raw=b"[1, 2]")
    assert probe(service, "database_health")["detail"] == "body is not a JSON object (/health/database)"


def test_database_not_connected(service):
    service.behave("/health/database", body={"database_connected": False, "status": "unhealthy"})
    result = probe(service, "database_health")
    assert (result["passed"], result["detail"]) == (False, "/health/database reports database_connected false")


def test_body_over_one_mib_is_cut_off(service):
    service.behave("/health", raw=b"x" * (2 << 20))
    started = time.monotonic()
    result = probe(service, "basic_health")
    assert result["passed"] is False
    assert result["detail"] == "body over 1 MiB (GET /health)"
    assert time.monotonic() - started < 2


def test_trickling_body_fails_at_the_total_deadline(service):
    # 400 bytes, one every 20 ms: 8 s in all; no single socket read ever waits long enough to time out
    service.behave("/health", raw=json.dumps({"status": "healthy", "pad": "p" * 360}).encode(), trickle=0.02)
    started = time.monotonic()
    result = probe(service, "basic_health", timeout=0.5)
    elapsed = time.monotonic() - started
    assert (result["passed"], result["detail"]) == (False, "timed out after 0.5 s")
    assert elapsed < 1.0


def test_slow_answer_fails_at_the_deadline(service):
    service.behave("/health", body={"status": "healthy"}, delay=3)
    started = time.monotonic()
    result = probe(service, "basic_health", timeout=0.5)
    assert (result["passed"], result["detail"]) == (False, "timed out after 0.5 s")
    assert time.monotonic() - started < 1.0


def test_body_that_stalls_after_the_headers(service):
    service.behave("/health", body={"status": "healthy", "version": "2.0.0"}, stall=3)
    started = time.monotonic()
    result = probe(service, "basic_health", timeout=0.5)
    assert (result["passed"], result["detail"]) == (False, "timed out after 0.5 s")
    assert time.monotonic() - started < 1.0


def test_connection_refused_on_a_closed_port():
    url = "http://127.0.0.1:%d" % free_port()
    report = run_suite(target_for(url), mode="comprehensive")
    assert report["passed"] is False
    assert report["success_rate"] == 0.0
    assert report["failed_probes"] == list(MODES["comprehensive"])
    for result in report["probes"]:
        assert "connection refused" in result["detail"], result
    assert report["msg"].startswith("Suite failed: 0 of 6 probes passed against %s (0%%, 85%% needed); failed: basic_health: " % url)


def test_websocket_on_a_closed_port():
    result = probe("http://127.0.0.1:%d" % free_port(), "websocket")
    assert (result["passed"], result["detail"]) == (False, "connection refused (websocket /ws)")


def test_websocket_handshake_refused_and_headers_sent(service):
    result = probe(service, "websocket", headers={"X-Canary": "always"})
    assert (result["passed"], result["detail"]) == (False, "handshake refused: HTTP 404 from /ws")
    method, path, headers = service.requests[-1]
    assert (method, path, headers.get("X-Canary"), headers.get("Upgrade")) == ("GET", "/ws", "always", "websocket")


@pytest.mark.parametrize("goodbye, words", [
    (b"", "websocket closed by the server during ping"),  # the TCP connection just ends
    (b"\x88\x02\x03\xe8", "websocket closed by the server without an answer"),  # a close frame (1000)
])
def test_websocket_that_closes_right_after_the_handshake(goodbye, words):
    """A server that accepts the upgrade and then hangs up: a failed probe, not an exception."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        conn, _addr = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn.recv(4096)  # the ping; then close without an answer
            conn.sendall(goodbye)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = probe("http://127.0.0.1:%d" % listener.getsockname()[1], "websocket")
    finally:
        thread.join(5)
        listener.close()
    assert (result["passed"], result["detail"], result["status_code"]) == (False, words, 101)


def test_each_result_carries_the_last_http_status_seen(service):
    """status_code: the last answer's status (a monitoring service stores it), None when no answer came."""
    report = run_suite(target_for(service.url), probe_names=HTTP_PROBES + ["websocket"])
    codes = {result["name"]: result["status_code"] for result in report["probes"]}
    # api_functionality's last request is the DELETE (204); the websocket handshake is refused with a 404
    assert codes == {"basic_health": 200, "database_health": 200, "api_functionality": 204, "performance": 200,
                     "security_headers": 200, "websocket": 404}
    service.behave("/health", status=503, body={"status": "unhealthy"})
    assert probe(service, "basic_health")["status_code"] == 503
    closed = "http://127.0.0.1:%d" % free_port()
    assert probe(closed, "basic_health")["status_code"] is None
    assert probe(closed, "websocket")["status_code"] is None


def test_security_headers_name_the_missing_ones(service):
    service.security_headers = {"X-Content-Type-Options": "nosniff", "X-XSS-Protection": "0"}
    result = probe(service, "security_headers")
    assert result["passed"] is False
    assert result["detail"] == "missing Strict-Transport-Security, X-Frame-Options (2 of 4 present, 3 needed)"
    service.security_headers["x-frame-options"] = "DENY"  # header names are case-insensitive
    result = probe(service, "security_headers")
    assert (result["passed"], result["detail"]) == (True, "3 of 4 security headers, missing Strict-Transport-Security")


def test_performance_fails_on_slow_or_failed_requests(service):
    service.latency = 0.05
    result = probe(service, "performance", performance_requests=3, performance_avg_ms=20, performance_p95_ms=5000)
    assert result["passed"] is False
    assert result["detail"].startswith("3 requests: avg ") and result["detail"].endswith("(avg over 20 ms)")
    result = probe(service, "performance", performance_requests=3, performance_avg_ms=5000, performance_p95_ms=20)
    assert result["detail"].endswith("(p95 over 20 ms)")
    service.latency = 0
    service.behave("/health", status=503, body={})
    result = probe(service, "performance", performance_requests=3)
    assert (result["passed"], result["detail"]) == (False, "3 of 3 requests to /health failed (HTTP 503)")


def test_tls_errors_are_failed_probes(service, tmp_path):
    # https:// against a plain-HTTP port
    result = probe(service.url.replace("http://", "https://"), "basic_health")
    assert result["passed"] is False
    assert result["detail"].startswith("TLS error: "), result


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_self_signed_certificate(service, tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    service.server.socket = context.wrap_socket(service.server.socket, server_side=True)
    url = service.url.replace("http://", "https://")
    result = probe(url, "basic_health")
    assert result["passed"] is False
    assert result["detail"].startswith("TLS error: certificate verify failed: self"), result
    assert probe(url, "basic_health", verify_tls=False)["passed"] is True
    # wss:// to the same server: the certificate is checked the same way (the fake has no /ws: a 404 handshake)
    result = probe(url, "websocket")
    assert result["detail"].startswith("TLS error: certificate verify failed: self"), result
    assert probe(url, "websocket", verify_tls=False)["detail"] == "handshake refused: HTTP 404 from /ws"


# --- the API probe --------------------------------------------------------------------------


def test_api_probe_sends_the_bearer_key_and_cleans_up(service):
    result = probe(service, "api_functionality")
    assert result["passed"] is True, result
    assert result["detail"] == "created, read back and deleted task 1"
    assert service.requests_to("POST", "/api/v1/tasks") == ["/api/v1/tasks"]
    assert service.requests_to("DELETE", "/api/v1/tasks") == ["/api/v1/tasks/1"]
    assert service.tasks == {}


def test_api_probe_deletes_the_task_when_reading_it_back_fails(service):
    service.api_status["GET"] = 500
    result = probe(service, "api_functionality")
    assert (result["passed"], result["detail"]) == (False, "HTTP 500 from /api/v1/tasks/1")
    assert service.requests_to("DELETE", "/api/v1/tasks") == ["/api/v1/tasks/1"]
    assert service.tasks == {}


def test_api_probe_deletes_the_task_when_another_comes_back(service):
    service.get_title = "someone else's task"
    result = probe(service, "api_functionality")
    assert result["passed"] is False
    assert result["detail"].startswith("GET /api/v1/tasks/1 answered another task")
    assert service.tasks == {}


def test_api_probe_failures(service):
    service.api_status["POST"] = 500
    assert probe(service, "api_functionality")["detail"] == "HTTP 500 from POST /api/v1/tasks"
    assert service.requests_to("DELETE", "/api") == []
    del service.api_status["POST"]
    assert probe(service, "api_functionality", api_key="wrong")["detail"] == "HTTP 401 from POST /api/v1/tasks"
    service.behave("/api/v1/tasks", status=201, body={"title": "no id"})
    assert probe(service, "api_functionality")["detail"] == "POST /api/v1/tasks answered 201 without a task id"
    service.api_status["DELETE"] = 503
    del service.routes["/api/v1/tasks"]
    assert probe(service, "api_functionality")["detail"] == "HTTP 503 from DELETE /api/v1/tasks/1"


# --- the suite ------------------------------------------------------------------------------


def test_probes_run_concurrently(service):
    service.latency = 0.4
    started = time.monotonic()
    report = run_suite(target_for(service.url), probe_names=["basic_health", "database_health", "security_headers"])
    elapsed = time.monotonic() - started
    assert report["passed"] is True, report
    assert elapsed < 1.0  # three 0.4 s probes one after the other would take 1.2 s
    assert report["duration_ms"] < 1000


def test_a_probe_blocked_past_its_deadline_is_not_waited_for(service, monkeypatch):
    def stuck(target, deadline):
        time.sleep(3)
        return "never"

    monkeypatch.setitem(PROBES, "websocket", stuck)
    started = time.monotonic()
    report = run_suite(target_for(service.url, timeout=0.3), probe_names=["basic_health", "websocket"])
    assert time.monotonic() - started < 1.0
    assert report["probes"][1] == {"name": "websocket", "passed": False, "duration_ms": report["probes"][1]["duration_ms"],
                                   "detail": "timed out after 0.3 s", "status_code": None}
    assert report["failed_probes"] == ["websocket"]
    assert report["success_rate"] == 0.5


def test_an_unexpected_error_in_a_probe_is_a_failed_probe(service, monkeypatch):
    def broken(target, deadline):
        raise KeyError("oops")

    monkeypatch.setitem(PROBES, "security_headers", broken)
    result = run_probe(target_for(service.url), "security_headers")
    assert (result["passed"], result["detail"]) == (False, "probe error: KeyError: 'oops'")


def test_verdict_against_the_threshold(service):
    service.security_headers = {}
    names = ["basic_health", "database_health", "api_functionality", "performance", "security_headers"]
    report = run_suite(target_for(service.url), probe_names=names)  # 4 of 5 = 0.8 < 0.85
    assert (report["passed"], report["success_rate"], report["failed_probes"]) == (False, 0.8, ["security_headers"])
    assert report["msg"] == ("Suite failed: 4 of 5 probes passed against %s (80%%, 85%% needed); failed: security_headers: "
                             "missing %s (0 of 4 present, 3 needed)." % (service.url, ", ".join(SECURITY_HEADERS)))
    report = run_suite(target_for(service.url), probe_names=names, success_threshold=0.8)
    assert report["passed"] is True
    assert report["msg"].startswith("Suite passed: 4 of 5 probes passed")
    assert run_suite(target_for(service.url), probe_names=["security_headers"], success_threshold=0)["passed"] is True
    assert run_suite(target_for(service.url), probe_names=names, success_threshold=1)["passed"] is False


def test_modes_follow_the_seed():
    assert select_probes("quick") == ["basic_health", "api_functionality"]
    assert select_probes("critical-path-only") == ["basic_health", "database_health", "api_functionality"]
    assert select_probes("standard") == ["basic_health", "database_health", "api_functionality", "websocket"]
    assert select_probes() == select_probes("standard")
    assert select_probes("comprehensive") == list(PROBES)
    assert len(PROBES) == 6
    assert select_probes("quick", ["websocket", "basic_health", "websocket"]) == ["websocket", "basic_health"]


# --- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("ftp://host/", "must start with http:// or https://"),
    ("127.0.0.1:8000", "must start with http:// or https://"),
    ("http://", "has no host"),
    ("http://:8000", "has no host"),
    ("http://host:99999", "invalid port"),
    ("http://user:secret@host", "must not contain credentials"),
    ("http://host/?a=1", "without a query or fragment"),
    ("http://ho st", "spaces"),
    ("", "must be an http:// or https:// URL"),
])
def test_malformed_urls(url, words):
    with pytest.raises(ValidationError, match=words):
        ProbeTarget(url)


@pytest.mark.parametrize("kwargs, words", [
    ({"timeout": 0}, "timeout must be greater than 0"),
    ({"timeout": -1}, "timeout must be greater than 0"),
    ({"timeout": "soon"}, "timeout must be a number"),
    ({"headers": {"Bad Name": "x"}}, "header name 'Bad Name' is not valid"),
    ({"headers": {"X-A": "1\r\nX-B: 2"}}, "must not contain line breaks"),
    ({"performance_requests": 0}, "performance_requests must be a whole number from 1 to 1000"),
    ({"performance_avg_ms": 0}, "performance_avg_ms must be greater than 0"),
])
def test_bad_target_arguments(kwargs, words):
    with pytest.raises(ValidationError, match=words):
        ProbeTarget("http://127.0.0.1:8000", **kwargs)


def test_target_url_forms_and_repr_without_the_key():
    target = ProbeTarget("https://lb.example.com/app/", api_key="secret-key", headers={"X-Canary": "always"})
    assert target.url("/health") == "https://lb.example.com/app/health"
    assert target.websocket_url() == "wss://lb.example.com/app/ws"
    assert (target.host, target.port) == ("lb.example.com", 443)
    assert ProbeTarget("http://[::1]:9001").websocket_url() == "ws://[::1]:9001/ws"
    assert "secret-key" not in repr(target)


@pytest.mark.parametrize("kwargs, words", [
    ({"probe_names": ["basic_health", "nope"]}, "probe 'nope' is unknown: use basic_health, database_health"),
    ({"probe_names": []}, "probes must be a non-empty list"),
    ({"mode": "thorough"}, "mode 'thorough' is unknown"),
    ({"success_threshold": 1.5}, "success_threshold must be within 0 and 1"),
    ({"success_threshold": -0.1}, "success_threshold must be within 0 and 1"),
    ({"probe_names": ["api_functionality"], "api_key": None}, "probe api_functionality needs api_key"),
])
def test_bad_suite_arguments(kwargs, words):
    target = ProbeTarget("http://127.0.0.1:1", api_key=kwargs.pop("api_key", API_KEY))
    with pytest.raises(ValidationError, match=words):
        run_suite(target, **kwargs)


def test_describe_error_words():
    assert describe_error(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert describe_error(ConnectionResetError(104, "reset")) == "connection reset by the server"
    assert describe_error(socket.gaierror(-2, "Name or service not known")) == "host name does not resolve"
    assert describe_error(TimeoutError("x"), probes.Deadline(1.5)) == "timed out after 1.5 s"
    assert describe_error(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")) == "TLS error: wrong version number"


def test_describe_error_of_an_answer_that_is_not_http():
    assert describe_error(http.client.BadStatusLine("\x00\xffgarbage")) == "answer is not HTTP"
    assert describe_error(http.client.LineTooLong("header line")) == "answer is not HTTP"
    # No bytes at all is a closed connection, not garbage.
    assert describe_error(http.client.RemoteDisconnected("Remote end closed connection")) != "answer is not HTTP"


def test_probe_of_a_target_that_does_not_speak_http_fails_in_words():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    stop = threading.Event()

    def answer():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"\x00\xffgarbage, not HTTP\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        report = run_suite(ProbeTarget("http://127.0.0.1:%d" % port, timeout=5), probe_names=["basic_health"])
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert report["passed"] is False
    assert report["probes"][0]["detail"] == "answer is not HTTP (GET /health)"
