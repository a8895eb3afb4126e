"""Shared fixtures of the plugin unit tests.

The collection is imported as ``ansible_collections.leanvibe.deploy`` from the repo's ``.collections`` folder
(``.collections/ansible_collections/leanvibe/deploy`` links back to the repo root). Nothing here touches the system
beyond ``tmp_path`` and loopback: supervisord is a fake class, health URLs are served by a tiny threaded
http.server on 127.0.0.1.
"""

import os
import socket
import sys
import tarfile
from pathlib import Path

import pytest

COLLECTIONS_ROOT = str(Path(__file__).resolve().parents[3] / ".collections")
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
HELPERS_DIR = str(Path(__file__).resolve().parent)
if HELPERS_DIR not in sys.path:
    sys.path.insert(0, HELPERS_DIR)  # plugin_test_helpers, whatever pytest's import mode

from plugin_test_helpers import FakeSupervisor, HealthServer, free_port, tree  # noqa: E402

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """urllib honours *_proxy variables; loopback health checks must never go through a proxy in these tests."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _no_module_syslog(monkeypatch):
    """AnsibleModule logs its invocation to syslog/journald; keep unit tests off the host's log."""
    from ansible.module_utils import basic

    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: None)


@pytest.fixture
def listening_socket():
    """listening_socket() -> port of a loopback socket that is bound and listening until the test ends."""
    socks = []

    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        socks.append(sock)
        return sock.getsockname()[1]

    yield make
    for sock in socks:
        sock.close()


@pytest.fixture
def health_server():
    server = HealthServer()
    yield server
    server.stop()


@pytest.fixture
def make_artifact(tmp_path):
    """make_artifact(name, files={path: text}) -> path of a .tar.gz holding `files`."""

    def make(name="release.tar.gz", files=None):
        files = files if files is not None else {"app.py": "print('hello')\n", "VERSION": "1.0.0\n"}
        source = tmp_path / ("src-" + name)
        source.mkdir()
        for rel, text in files.items():
            target = source / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as archive:
            for rel in sorted(files):
                archive.add(str(source / rel), arcname=rel)
        return str(path)

    return make


@pytest.fixture
def slot_env(tmp_path, health_server, make_artifact):
    """A base dir, two artifacts, a free port, a fake supervisor whose processes serve the health URL."""

    class Env:
        pass

    env = Env()
    env.base_dir = str(tmp_path / "app")
    env.port = free_port()
    env.health = health_server
    env.supervisor = FakeSupervisor(env.base_dir, health_server, env.port)
    env.artifact_v1 = make_artifact("v1.tar.gz", {"app.py": "v1\n", "VERSION": "1.0.0\n"})
    env.artifact_v2 = make_artifact("v2.tar.gz", {"app.py": "v2\n", "VERSION": "2.0.0\n"})

    def params(**overrides):
        values = {
            "app": "demo",
            "slot": "green",
            "version": "1.0.0",
            "artifact": env.artifact_v1,
            "base_dir": env.base_dir,
            "port": env.port,
            "bind": "127.0.0.1",
            "command": ["/opt/venv/bin/python", "-m", "demo", "--port", "{port}", "--version", "{version}"],
            "env": {"LEANVIBE_API_KEY": "s3cret-value"},
            "health_path": "/health",
            "health_timeout": 1,
            "health_check_version": True,
            "drain_timeout": 15,
            "start_retries": 3,
            "start_seconds": 1,
            "state": "started",
        }
        values.update(overrides)
        return values

    env.params = params
    return env


@pytest.fixture
def program_env(tmp_path, health_server):
    """A base dir, a free port and a fake supervisor whose processes serve the health URL (supervised_program)."""

    class Env:
        pass

    env = Env()
    env.base_dir = str(tmp_path / "monitoring")
    env.port = free_port()
    env.health = health_server
    env.supervisor = FakeSupervisor(env.base_dir, health_server, env.port)
    env.health_url = "http://127.0.0.1:%d/healthz" % env.port

    def params(**overrides):
        values = {
            "name": "leanvibe-monitor",
            "base_dir": env.base_dir,
            # The fake serves the health URL with the version after `--version`; a version in `broken` answers 503.
            "argv": ["/opt/venv/bin/python", "-m", "leanvibe_monitor", "--config", "/etc/monitor.json", "--version", "1"],
            "env": {"LEANVIBE_TOKEN": "s3cret-value"},
            "fingerprint": "sha1:aaaa",
            "health_url": env.health_url,
            "health_timeout": 1,
            "python": sys.executable,
            "state": "started",
        }
        values.update(overrides)
        return values

    env.params = params
    return env


@pytest.fixture
def snapshot_tree():
    """snapshot_tree(path) -> {relative path: bytes or None for folders/links} of everything under path."""

    def snap(path):
        result = {}
        for rel in tree(path):
            full = os.path.join(str(path), rel)
            if os.path.islink(full):
                result[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                result[rel] = None
            else:
                with open(full, "rb") as handle:
                    result[rel] = handle.read()
        return result

    return snap
