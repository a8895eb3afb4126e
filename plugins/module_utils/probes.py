# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synthetic probes of a LeanVibe HTTP service: the engine behind leanvibe.deploy.synthetic_probe.

Usable without Ansible (a monitoring service imports it directly)::

    target = ProbeTarget("https://lb.example.com", headers={"X-Canary": "always"}, api_key=key, timeout=10)
    report = run_suite(target, mode="standard", success_threshold=0.85)
    report["passed"], report["failed_probes"], report["msg"]

Only bad arguments raise (ValidationError, from ProbeTarget() and run_suite()). Whatever the target does
(refuses the connection, fails TLS, answers 503, sends a body that is not JSON, too large or too slow, closes
its websocket) is a failed probe with a reason in plain words, never an exception.

Every probe has one total deadline (``timeout``), not only a per-read socket timeout: bodies are read in
small steps with the deadline checked between them (a body that trickles in fails at the deadline), and the
suite stops waiting for a probe at its deadline whatever the probe's thread is blocked in.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import Future, wait
from urllib.parse import urlsplit

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import utcnow

try:
    import requests
    from urllib3.exceptions import ProtocolError as _Urllib3ProtocolError
    from urllib3.exceptions import ReadTimeoutError as _Urllib3ReadTimeout
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised where requests is absent
    requests = None
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

try:
    import websocket  # the websocket-client package
    HAS_WEBSOCKET_CLIENT = True
    WEBSOCKET_CLIENT_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised where websocket-client is absent
    websocket = None
    HAS_WEBSOCKET_CLIENT = False
    WEBSOCKET_CLIENT_IMPORT_ERROR = exc

MAX_BODY_BYTES = 1 << 20  # read at most 1 MiB of any answer
READ_STEP_BYTES = 65536
DEFAULT_MODE = "standard"
DEFAULT_TIMEOUT = 10.0
DEFAULT_SUCCESS_THRESHOLD = 0.85
DEFAULT_PERFORMANCE_REQUESTS = 5
DEFAULT_PERFORMANCE_AVG_MS = 1000.0
DEFAULT_PERFORMANCE_P95_MS = 1500.0
MAX_PERFORMANCE_REQUESTS = 1000
SECURITY_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection")
SECURITY_HEADERS_NEEDED = 3
# The suite waits this much past a probe's deadline for the probe to report its own timeout.
_DEADLINE_GRACE_S = 0.25
_TASKS_PATH = "/api/v1/tasks"
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class ProbeFailure(Exception):
    """A probe step failed; the message is the probe's detail in plain words, ``reason`` the same without context."""

    def __init__(self, detail, reason=None):
        super().__init__(detail)
        self.reason = detail if reason is None else reason


def _seconds(value):
    """10 -> '10.0', 0.25 -> '0.25': for 'timed out after 10.0 s'."""
    text = "%.1f" % value
    return text if float(text) == value else "%g" % value


def _ms(seconds):
    return round(seconds * 1000.0, 1)


class Deadline:
    """One total time budget for a probe; it also carries the last HTTP status the probe saw (``status_code``)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.status_code = None

    def remaining(self):
        return self.end - time.monotonic()

    def message(self):
        return "timed out after %s s" % _seconds(self.seconds)

    def left(self):
        """Seconds left, or ProbeFailure when the budget is spent."""
        remaining = self.remaining()
        if remaining <= 0:
            raise ProbeFailure(self.message())
        return remaining


# --- the target ---------------------------------------------------------------------------


def _number(value, what):
    if isinstance(value, bool):
        raise ValidationError("%s must be a number, not %r." % (what, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError("%s must be a number, not %r." % (what, value))
    if not math.isfinite(number):
        raise ValidationError("%s must be a finite number, not %r." % (what, value))
    return number


def _positive(value, what):
    number = _number(value, what)
    if number <= 0:
        raise ValidationError("%s must be greater than 0, not %g." % (what, number))
    return number


def _check_header_text(text, what):
    if any(char in text for char in "\r\n\0"):
        raise ValidationError("%s must not contain line breaks or NUL characters." % what)
    return text


def validate_base_url(url):
    """An http(s) URL with a host, no credentials, query or fragment; returned without a trailing '/'."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError("url must be an http:// or https:// URL, for example http://127.0.0.1:8000.")
    url = url.strip()
    if any(char.isspace() or ord(char) < 32 for char in url):
        raise ValidationError("url %r must not contain spaces or control characters." % url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("url %r must start with http:// or https://." % url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError("url %r has an invalid port." % url)
    if not host:
        raise ValidationError("url %r has no host." % url)
    if port == 0:
        raise ValidationError("url %r has an invalid port." % url)
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url must not contain credentials: pass them in headers.")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValidationError("url %r must be a base URL without a query or fragment." % url)
    return url.rstrip("/")


class ProbeTarget:
    """Where and how to probe: the base URL (normally the LB) and the settings every probe shares.

    Raises ValidationError for a bad argument. ``headers`` go with every request, including the websocket
    handshake (for example ``{"X-Canary": "always"}`` to reach the canary through the LB); ``api_key`` is
    sent as ``Authorization: Bearer`` to the tasks API only. ``timeout`` is each probe's total budget in
    seconds. ``use_proxy`` makes the probes honour the *_proxy environment variables (off: direct).
    """

    def __init__(self, base_url, headers=None, api_key=None, timeout=DEFAULT_TIMEOUT, verify_tls=True,
                 expect_version=None, performance_requests=DEFAULT_PERFORMANCE_REQUESTS,
                 performance_avg_ms=DEFAULT_PERFORMANCE_AVG_MS, performance_p95_ms=DEFAULT_PERFORMANCE_P95_MS,
                 use_proxy=False):
        self.base_url = validate_base_url(base_url)
        parts = urlsplit(self.base_url)
        self.scheme = parts.scheme.lower()
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.headers = {}
        if headers is not None:
            if not isinstance(headers, dict):
                raise ValidationError("headers must be a mapping of header name to value.")
            for name, value in headers.items():
                name = str(name)
                if not _HEADER_NAME_RE.fullmatch(name):
                    raise ValidationError("header name %r is not valid." % name)
                self.headers[name] = _check_header_text("" if value is None else str(value), "header %s" % name)
        self.api_key = None if api_key in (None, "") else _check_header_text(str(api_key), "api_key")
        self.timeout = _positive(timeout, "timeout")
        if not isinstance(verify_tls, bool):
            raise ValidationError("verify_tls must be true or false, not %r." % (verify_tls,))
        self.verify_tls = verify_tls
        self.expect_version = None if expect_version in (None, "") else str(expect_version)
        if isinstance(performance_requests, bool) or not isinstance(performance_requests, int) \
                or not 1 <= performance_requests <= MAX_PERFORMANCE_REQUESTS:
            raise ValidationError("performance_requests must be a whole number from 1 to %d, not %r."
                                  % (MAX_PERFORMANCE_REQUESTS, performance_requests))
        self.performance_requests = performance_requests
        self.performance_avg_ms = _positive(performance_avg_ms, "performance_avg_ms")
        self.performance_p95_ms = _positive(performance_p95_ms, "performance_p95_ms")
        self.use_proxy = bool(use_proxy)

    def url(self, path):
        return self.base_url + path

    def websocket_url(self, path="/ws"):
        scheme = "wss" if self.scheme == "https" else "ws"
        return scheme + self.base_url[len(self.scheme):] + path

    def __repr__(self):  # never the api_key: monitoring services log targets
        return "ProbeTarget(%r, headers=%r, timeout=%s, verify_tls=%r)" % (
            self.base_url, sorted(self.headers), self.timeout, self.verify_tls)


# --- HTTP with one deadline ----------------------------------------------------------------


def _causes(exc):
    """exc and everything it wraps (requests -> urllib3 -> OSError), outermost first."""
    seen, pending = [], [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is known for known in seen) or len(seen) > 20:
            continue
        seen.append(current)
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return seen


def _ssl_words(err):
    """'[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)' -> 'wrong version number'."""
    text = str(err.strerror or err.reason or err)
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    return text or str(err.reason or type(err).__name__)


def describe_error(exc, deadline=None):
    """A transport error in plain words: 'connection refused', 'TLS error: ...', 'timed out after 10.0 s'."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return "host name does not resolve"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "TLS error: certificate verify failed: %s" % (cause.verify_message or cause.reason)
        if isinstance(cause, ssl.SSLError):
            return "TLS error: %s" % _ssl_words(cause)
    if requests is not None and isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    for cause in causes:
        if isinstance(cause, (socket.timeout, TimeoutError)) or (
                requests is not None and isinstance(cause, (requests.exceptions.Timeout, _Urllib3ReadTimeout))):
            return deadline.message() if deadline is not None else "timed out"
    for cause in causes:
        # Bytes that are no HTTP status line (RemoteDisconnected is a BadStatusLine too: no bytes at all).
        if isinstance(cause, (http.client.BadStatusLine, http.client.LineTooLong)) \
                and not isinstance(cause, http.client.RemoteDisconnected):
            return "answer is not HTTP"
    for cause in causes:
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(cause, (ConnectionAbortedError, BrokenPipeError)):
            return "connection closed by the server"
        if type(cause).__name__ in ("RemoteDisconnected", "IncompleteRead") or (
                requests is not None and isinstance(cause, _Urllib3ProtocolError)):
            return "connection closed by the server"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return "connection error: %s" % cause.strerror
    return "connection error: %s" % (str(exc) or type(exc).__name__)


class Reply:
    """An HTTP answer whose body was read within the deadline and the size cap."""

    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def what(self):
        return self.path if self.method == "GET" else "%s %s" % (self.method, self.path)

    def failure(self):
        detail = "HTTP %d from %s" % (self.status, self.what)
        location = self.headers.get("Location")
        if 300 <= self.status < 400 and location:
            detail += " (redirect to %s)" % location[:200]
        return ProbeFailure(detail)

    def expect(self, status):
        if self.status != status:
            raise self.failure()
        return self

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ProbeFailure("body is not JSON (%s)" % self.what)

    def json_object(self):
        data = self.json()
        if not isinstance(data, dict):
            raise ProbeFailure("body is not a JSON object (%s)" % self.what)
        return data


class HttpClient:
    """One requests.Session (keep-alive) for one probe; every request shares the probe's deadline."""

    def __init__(self, target, deadline):
        self.target = target
        self.deadline = deadline
        self.session = requests.Session()
        self.session.trust_env = target.use_proxy  # off: no *_proxy variables, no .netrc
        self.session.verify = target.verify_tls
        self.session.headers.update(target.headers)

    def close(self):
        self.session.close()

    def request(self, method, path, headers=None, json_body=None):
        remaining = self.deadline.left()
        try:
            response = self.session.request(method, self.target.url(path), headers=headers, json=json_body,
                                            timeout=(remaining, remaining), stream=True, allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc, method, path)
        self.deadline.status_code = response.status_code
        try:
            body = self._read_body(response, method, path)
        finally:
            response.close()
        return Reply(method, path, response.status_code, response.headers, body)

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def _failure(self, exc, method, path):
        words = describe_error(exc, self.deadline)
        if words == self.deadline.message():
            return ProbeFailure(words)
        return ProbeFailure("%s (%s %s)" % (words, method, path), words)

    @staticmethod
    def _tighten(response, seconds):
        """Lower the socket's read timeout to what is left of the deadline (best effort)."""
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.settimeout(max(seconds, 0.001))
            except OSError:
                pass

    def _read_body(self, response, method, path):
        """The body, read one socket read at a time: at most 1 MiB, and never past the deadline."""
        chunks, size = [], 0
        while True:
            remaining = self.deadline.left()
            self._tighten(response, remaining)
            try:
                chunk = response.raw.read1(READ_STEP_BYTES, decode_content=True)
            except Exception as exc:  # urllib3 and socket errors alike: a fault of the target, in words
                raise self._failure(exc, method, path)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProbeFailure("body over 1 MiB (%s %s)" % (method, path), "body over 1 MiB")
            chunks.append(chunk)


# --- the probes ----------------------------------------------------------------------------
# Each takes (target, deadline), returns the detail of a pass, raises ProbeFailure on a fail.


def _http_probe(func):
    def run(target, deadline):
        client = HttpClient(target, deadline)
        try:
            return func(client, target)
        finally:
            client.close()
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


@_http_probe
def probe_basic_health(client, target):
    """GET /health: 200, JSON status healthy, and the expected version when one is given."""
    body = client.get("/health").expect(200).json_object()
    if body.get("status") != "healthy":
        raise ProbeFailure("/health reports status %r, not 'healthy'" % (body.get("status"),))
    version = body.get("version")
    if target.expect_version is not None and str(version) != target.expect_version:
        raise ProbeFailure("/health reports version %s, expected %s" % (version, target.expect_version))
    return "healthy, version %s" % version


@_http_probe
def probe_database_health(client, target):
    """GET /health/database: 200 and database_connected true."""
    body = client.get("/health/database").expect(200).json_object()
    if body.get("database_connected") is not True:
        raise ProbeFailure("/health/database reports database_connected %s" % json.dumps(body.get("database_connected")))
    elapsed = body.get("response_time_ms")
    return "database connected" + (" (%s ms)" % elapsed if isinstance(elapsed, (int, float)) else "")


@_http_probe
def probe_api_functionality(client, target):
    """POST a task, GET it back, DELETE it; the task is deleted even when a later step fails."""
    auth = {"Authorization": "Bearer %s" % target.api_key}
    title = "Probe Test Task %s" % uuid.uuid4().hex[:12]
    created = client.request("POST", _TASKS_PATH, headers=auth,
                             json_body={"title": title, "description": "Synthetic monitoring test"})
    task = created.expect(201).json_object()
    task_id = task.get("id")
    if isinstance(task_id, bool) or not isinstance(task_id, (int, str)) or task_id == "":
        raise ProbeFailure("POST %s answered 201 without a task id" % _TASKS_PATH)
    path = "%s/%s" % (_TASKS_PATH, task_id)
    deleted = False
    try:
        fetched = client.get(path, headers=auth).expect(200).json_object()
        if fetched.get("id") != task_id or fetched.get("title") != title:
            raise ProbeFailure("GET %s answered another task (id %s, title %r)" % (path, fetched.get("id"), fetched.get("title")))
        client.request("DELETE", path, headers=auth).expect(204)
        deleted = True
    finally:
        if not deleted:
            _delete_quietly(client, path, auth)
    return "created, read back and deleted task %s" % task_id


def _delete_quietly(client, path, auth):
    """Clean-up after a failed step: a short budget of its own even when the probe's deadline is spent."""
    cleanup = HttpClient(client.target, Deadline(max(client.deadline.remaining(), min(2.0, client.target.timeout))))
    try:
        cleanup.request("DELETE", path, headers=auth)
    except ProbeFailure:
        pass
    finally:
        cleanup.close()


def _ws_options(target, remaining):
    options = {"timeout": remaining, "enable_multithread": False}
    header = []
    for name, value in target.headers.items():
        lower = name.lower()
        if lower == "host":
            options["host"] = value
        elif lower == "origin":
            options["origin"] = value
        else:
            header.append("%s: %s" % (name, value))
    options["header"] = header
    if target.scheme == "https" and not target.verify_tls:
        options["sslopt"] = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    return options


def _ws_socket(target, remaining):
    """A direct connection (no *_proxy variables), TLS-wrapped for wss://."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=remaining)
    except OSError as exc:
        raise ProbeFailure("%s (websocket %s)" % (describe_error(exc), "/ws"))
    if target.scheme != "https":
        return sock
    context = ssl.create_default_context(cafile=requests.certs.where() if requests is not None else None)
    if not target.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(sock, server_hostname=target.host)
    except (OSError, ValueError) as exc:
        sock.close()
        raise ProbeFailure(describe_error(exc) + " (websocket /ws)")


def probe_websocket(target, deadline):
    """ws(s)://<base>/ws: send a ping, expect a JSON answer with a type."""
    url = target.websocket_url("/ws")
    options = _ws_options(target, deadline.left())
    sock = None if target.use_proxy else _ws_socket(target, deadline.left())
    if sock is not None:
        options["socket"] = sock
    try:
        conn = websocket.create_connection(url, **options)
    except Exception as exc:  # websocket-client raises many types for one fault of the target
        if sock is not None:
            sock.close()
        if isinstance(exc, websocket.WebSocketBadStatusException):
            deadline.status_code = exc.status_code
            raise ProbeFailure("handshake refused: HTTP %s from /ws" % exc.status_code)
        raise ProbeFailure(_ws_words(exc, deadline, "handshake"))
    deadline.status_code = conn.getstatus()  # 101 Switching Protocols
    try:
        conn.settimeout(deadline.left())
        conn.send(json.dumps({"type": "ping", "timestamp": utcnow().isoformat()}))
        conn.settimeout(deadline.left())
        answer = conn.recv()
    except ProbeFailure:
        raise
    except Exception as exc:
        raise ProbeFailure(_ws_words(exc, deadline, "ping"))
    finally:
        try:
            conn.close(timeout=min(1.0, max(deadline.remaining(), 0.1)))
        except Exception:  # closing a dead connection may fail: the verdict is already made
            pass
    if answer in ("", b""):  # a close frame instead of an answer
        raise ProbeFailure("websocket closed by the server without an answer")
    if isinstance(answer, bytes):
        raise ProbeFailure("websocket answered with binary data, not JSON")
    if len(answer) > MAX_BODY_BYTES:
        raise ProbeFailure("websocket answer over 1 MiB")
    try:
        message = json.loads(answer)
    except ValueError:
        raise ProbeFailure("websocket answer is not JSON")
    if not isinstance(message, dict) or "type" not in message:
        raise ProbeFailure("websocket answer has no type")
    return "answered %s" % message["type"]


def _ws_words(exc, deadline, step):
    if isinstance(exc, websocket.WebSocketTimeoutException):
        return deadline.message()
    if isinstance(exc, websocket.WebSocketConnectionClosedException):
        return "websocket closed by the server during %s" % step
    words = describe_error(exc, deadline)
    if words.startswith("connection error") and isinstance(exc, websocket.WebSocketException):
        words = "websocket error: %s" % (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return words if words == deadline.message() else "%s (websocket %s)" % (words, step)


@_http_probe
def probe_performance(client, target):
    """N sequential GET /health on one keep-alive session: none fails, average and p95 under thresholds."""
    timings, failures = [], []
    for _index in range(target.performance_requests):
        started = time.monotonic()
        try:
            reply = client.get("/health")
        except ProbeFailure as exc:
            if str(exc) == client.deadline.message():
                raise
            failures.append(exc.reason)
            continue
        if reply.status != 200:
            failures.append("HTTP %d" % reply.status)
            continue
        timings.append((time.monotonic() - started) * 1000.0)
    count = target.performance_requests
    if failures:
        raise ProbeFailure("%d of %d requests to /health failed (%s)" % (len(failures), count, ", ".join(sorted(set(failures)))))
    ordered = sorted(timings)
    avg = sum(ordered) / len(ordered)
    p95 = ordered[max(0, int(math.ceil(0.95 * len(ordered))) - 1)]  # nearest rank
    numbers = "%d requests: avg %.1f ms, p95 %.1f ms" % (count, avg, p95)
    over = []
    if avg > target.performance_avg_ms:
        over.append("avg over %g ms" % target.performance_avg_ms)
    if p95 > target.performance_p95_ms:
        over.append("p95 over %g ms" % target.performance_p95_ms)
    if over:
        raise ProbeFailure("%s (%s)" % (numbers, ", ".join(over)))
    return numbers


@_http_probe
def probe_security_headers(client, target):
    """GET /health: at least 3 of Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection."""
    reply = client.get("/health")
    missing = [name for name in SECURITY_HEADERS if name not in reply.headers]
    present = len(SECURITY_HEADERS) - len(missing)
    if present < SECURITY_HEADERS_NEEDED:
        raise ProbeFailure("missing %s (%d of %d present, %d needed)"
                           % (", ".join(missing), present, len(SECURITY_HEADERS), SECURITY_HEADERS_NEEDED))
    if missing:
        return "%d of %d security headers, missing %s" % (present, len(SECURITY_HEADERS), ", ".join(missing))
    return "all %d security headers" % len(SECURITY_HEADERS)


PROBES = {
    "basic_health": probe_basic_health,
    "database_health": probe_database_health,
    "api_functionality": probe_api_functionality,
    "websocket": probe_websocket,
    "performance": probe_performance,
    "security_headers": probe_security_headers,
}

MODES = {
    "quick": ("basic_health", "api_functionality"),
    "standard": ("basic_health", "database_health", "api_functionality", "websocket"),
    "critical-path-only": ("basic_health", "database_health", "api_functionality"),
    "comprehensive": ("basic_health", "database_health", "api_functionality", "websocket", "performance", "security_headers"),
}


# --- running ---------------------------------------------------------------------------------


def select_probes(mode=DEFAULT_MODE, probe_names=None):
    """The probe names to run: ``probe_names`` when given (duplicates dropped, order kept), else the mode's."""
    if probe_names is not None:
        if isinstance(probe_names, str) or not probe_names:
            raise ValidationError("probes must be a non-empty list of probe names: %s." % ", ".join(PROBES))
        names = []
        for name in probe_names:
            if name not in PROBES:
                raise ValidationError("probe %r is unknown: use %s." % (name, ", ".join(PROBES)))
            if name not in names:
                names.append(name)
        return names
    if mode not in MODES:
        raise ValidationError("mode %r is unknown: use %s." % (mode, ", ".join(MODES)))
    return list(MODES[mode])


def validate_threshold(value):
    number = _number(value, "success_threshold")
    if not 0 <= number <= 1:
        raise ValidationError("success_threshold must be within 0 and 1, not %g." % number)
    return number


def check_requirements(target, names):
    """ValidationError for probes that cannot run with these arguments or libraries."""
    if not HAS_REQUESTS:
        raise ValidationError("the Python library requests is required.")
    if "websocket" in names and not HAS_WEBSOCKET_CLIENT:
        raise ValidationError("the websocket probe needs the Python library websocket-client.")
    if "api_functionality" in names and target.api_key is None:
        raise ValidationError("probe api_functionality needs api_key: give one, or choose probes without it.")


def run_probe(target, name):
    """Run one probe in this thread: {name, passed, duration_ms, detail, status_code}.

    ``status_code`` is the last HTTP status the probe saw (101 for a websocket handshake), None when no answer came.
    """
    deadline = Deadline(target.timeout)
    started = time.monotonic()
    try:
        detail, passed = PROBES[name](target, deadline), True
    except ProbeFailure as exc:
        detail, passed = str(exc), False
    except Exception as exc:  # a bug or an unforeseen library error must not cost the other probes' verdicts
        detail, passed = "probe error: %s: %s" % (type(exc).__name__, exc), False
    elapsed = time.monotonic() - started
    if passed and elapsed > target.timeout:
        detail, passed = deadline.message(), False
    return {"name": name, "passed": passed, "duration_ms": _ms(elapsed), "detail": detail,
            "status_code": deadline.status_code}


def _start(target, name):
    """Run a probe in a daemon thread: a probe stuck past its deadline never holds up the caller's exit."""
    future = Future()
    future.set_running_or_notify_cancel()

    def work():
        try:
            future.set_result(run_probe(target, name))
        except BaseException as exc:  # pragma: no cover - run_probe catches everything it can
            future.set_exception(exc)

    thread = threading.Thread(target=work, name="leanvibe-probe-%s" % name, daemon=True)
    thread.start()
    return future


def run_suite(target, probe_names=None, success_threshold=DEFAULT_SUCCESS_THRESHOLD, mode=DEFAULT_MODE):
    """Run the probes concurrently (one thread each) and return the suite's report.

    ``probe_names`` overrides ``mode``. The suite passes when the share of passed probes is at least
    ``success_threshold``. Raises ValidationError for bad arguments only.
    """
    if not isinstance(target, ProbeTarget):
        raise ValidationError("target must be a ProbeTarget.")
    threshold = validate_threshold(success_threshold)
    names = select_probes(mode, probe_names)
    check_requirements(target, names)

    started = time.monotonic()
    futures = [_start(target, name) for name in names]
    wait(futures, timeout=target.timeout + _DEADLINE_GRACE_S)
    results = []
    for name, future in zip(names, futures):
        if future.done():
            results.append(future.result())
        else:  # blocked past its deadline (a DNS lookup, a socket read): failed, and no longer waited for
            results.append({"name": name, "passed": False, "duration_ms": _ms(time.monotonic() - started),
                            "detail": Deadline(target.timeout).message(), "status_code": None})
    return summarize(target, results, threshold, mode if probe_names is None else None, time.monotonic() - started)


def summarize(target, results, threshold, mode, elapsed):
    total = len(results)
    passed_count = sum(1 for result in results if result["passed"])
    rate = float(passed_count) / total
    passed = passed_count >= threshold * total - 1e-9
    failed = [result for result in results if not result["passed"]]
    counts = "%d of %d probes passed against %s (%d%%, %d%% needed)" % (
        passed_count, total, target.base_url, int(math.floor(rate * 100 + 1e-9)), int(math.ceil(threshold * 100 - 1e-9)))
    if not failed:
        msg = "Suite passed: all %d probes passed against %s." % (total, target.base_url)
    else:
        reasons = "; ".join("%s: %s" % (result["name"], result["detail"]) for result in failed)
        msg = "Suite %s: %s; failed: %s." % ("passed" if passed else "failed", counts, reasons)
    return {
        "passed": passed,
        "success_rate": round(rate, 4),
        "success_threshold": threshold,
        "mode": mode,
        "url": target.base_url,
        "duration_ms": _ms(elapsed),
        "probes": results,
        "failed_probes": [result["name"] for result in failed],
        "msg": msg,
    }
