"""Fixtures of the monitoring service tests: a fake LB, stores on SQLite and a real PostgreSQL, configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # monitor_test_helpers, whatever pytest's import mode
from monitor_test_helpers import COLLECTIONS_PATH, FakeLB, Postgres  # noqa: E402

if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)

from leanvibe_monitor.store import TABLES, Store  # noqa: E402

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Loopback probes must never go through a proxy of the host."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def lb():
    server = FakeLB()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session, or the reason none could start (the tests then fail: never a silent skip)."""
    server = Postgres()
    started = server.start()
    yield server if started else server.error
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    if isinstance(postgres_server, str):
        pytest.fail("no PostgreSQL server could be started (the set-up installs it; deselect with -m 'not postgres'): %s"
                    % postgres_server, pytrace=False)
    yield postgres_server.url
    import psycopg  # pylint: disable=import-outside-toplevel  # only where PostgreSQL runs

    with psycopg.connect(postgres_server.url, autocommit=True) as conn:  # each test starts from no tables
        conn.execute("DROP TABLE IF EXISTS %s" % ", ".join(TABLES))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """An empty store on each backend."""
    if request.param == "sqlite":
        url = "sqlite:///%s" % (tmp_path / "db" / "monitor.db")
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Store(url)
    opened.ensure_schema()
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path):
    opened = Store("sqlite:///%s" % (tmp_path / "db" / "monitor.db"))
    opened.ensure_schema()
    yield opened
    opened.close()
