"""The standard-library health check of the rollback path (module_utils/health.py)."""

import pytest
from plugin_test_helpers import HealthServer, free_port

from ansible_collections.leanvibe.deploy.plugins.module_utils.health import check_health


@pytest.fixture
def server():
    health = HealthServer()
    health.serve(version="1.0.0")
    health.start()
    yield health
    health.stop()


def test_the_version_answers_healthy(server):
    assert check_health("http://127.0.0.1:%d/health" % server.port, "1.0.0") == (True, "HTTP 200")
    assert check_health("http://127.0.0.1:%d/health" % server.port) == (True, "HTTP 200")


def test_another_version_is_unhealthy(server):
    assert check_health("http://127.0.0.1:%d/health" % server.port, "2.0.0") == (False, "serves version 1.0.0, not 2.0.0")


def test_nothing_listening_or_no_url_is_unhealthy_never_an_exception():
    healthy, detail = check_health("http://127.0.0.1:%d/health" % free_port(), "1.0.0", timeout=1)
    assert healthy is False and "refused" in detail.lower()
    assert check_health("ftp://127.0.0.1/health", "1.0.0")[0] is False
