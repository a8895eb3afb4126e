"""The detached webhook sender (plugin_utils/webhooks.py): what it POSTs, and that the caller never waits for it."""

import http.server
import json
import threading
import time

import pytest

from ansible_collections.leanvibe.deploy.plugins.plugin_utils import webhooks

EVENT = {"event": "rollback", "version": "2.0.0", "to_version": "1.0.0", "app": "demo"}


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status=204, delay=0.0):
        self.received, self.status, self.delay = [], status, delay
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/api/events" % self.server_address[1]

    def wait_for(self, count, seconds=10):
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.server.delay)
        self.server.received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()


def test_targets_take_urls_and_mappings_and_skip_empty_ones():
    assert webhooks.targets(["http://a/x", {"url": "http://b/y", "headers": {"Authorization": "Bearer t"}}, {"url": ""}, "", None]) == [
        ("http://a/x", {}), ("http://b/y", {"Authorization": "Bearer t"})]
    assert webhooks.targets(None) == []


def test_post_sends_json_with_the_headers(receiver):
    assert webhooks.post(receiver.url, {"Authorization": "Bearer t"}, EVENT) is True
    ((path, headers, body),) = receiver.received
    assert (path, body, headers["Authorization"], headers["Content-Type"]) == ("/api/events", EVENT, "Bearer t", "application/json")


def test_post_never_raises():
    assert webhooks.post("http://127.0.0.1:1/x", {}, EVENT, timeout=1) is False
    assert webhooks.post("not a url", {}, EVENT, timeout=1) is False


def test_send_detached_returns_at_once_and_the_event_arrives():
    slow = Receiver(delay=1.5)
    try:
        started = time.monotonic()
        assert webhooks.send_detached([slow.url, {"url": slow.url, "headers": {"X-Token": "t"}}], EVENT) == 2
        assert time.monotonic() - started < 1.0
        received = slow.wait_for(2)
        assert [body for _path, _headers, body in received] == [EVENT, EVENT]
        assert received[1][1]["X-Token"] == "t"
    finally:
        slow.shutdown()


def test_send_detached_without_webhooks_or_event_starts_nothing(monkeypatch):
    monkeypatch.setattr(webhooks.subprocess, "Popen", lambda *a, **k: pytest.fail("started a sender"))
    assert webhooks.send_detached([], EVENT) == 0
    assert webhooks.send_detached(["http://a/x"], None) == 0
