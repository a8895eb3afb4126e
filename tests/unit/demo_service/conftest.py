"""Shared fixtures for the demo service tests: demo_service/ on sys.path and app factories."""

import contextlib
import socket
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # demo_service_helpers, whatever pytest's import mode
from demo_service_helpers import API_KEY, DEMO_SERVICE_DIR  # noqa: E402

sys.path.insert(0, str(DEMO_SERVICE_DIR))

from fastapi.testclient import TestClient  # noqa: E402

from leanvibe_demo.app import create_app  # noqa: E402


@pytest.fixture
def make_client(tmp_path):
    """make_client(release_root=None, **env) -> a started TestClient; env values of None are left unset."""
    with contextlib.ExitStack() as stack:

        def make(release_root=None, **env):
            environ = {"LEANVIBE_API_KEY": API_KEY, "LEANVIBE_DATA_DIR": str(tmp_path / "data")}
            environ.update(env)
            environ = {name: value for name, value in environ.items() if value is not None}
            app = create_app(environ, release_root=release_root or tmp_path / "checkout")
            return stack.enter_context(TestClient(app))

        yield make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def fake_redis():
    """fake_redis(reply) -> port of a loopback server that answers each command batch with reply (None: stay silent)."""
    servers = []

    def start(reply):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        received = []

        def serve():
            while True:
                try:
                    conn, _addr = server.accept()
                except OSError:
                    return
                with conn:
                    data = b""
                    while b"PING\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    received.append(data)
                    if reply is None:
                        conn.recv(1)  # hold the connection open until the client gives up
                    else:
                        conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        servers.append(server)
        return server.getsockname()[1], received

    yield start
    for server in servers:
        server.close()
