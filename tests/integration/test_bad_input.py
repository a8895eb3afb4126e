"""Bad input gets one clear sentence and changes nothing: config bytes, state and what is served."""

import socket

import pytest

from conftest import SLOT_PORTS


@pytest.fixture
def unchanged(local_env):
    """Asserts after the test that nginx config, deploy state, slot state and the served version did not move."""
    before = local_env.snapshot()
    served = local_env.served_version()
    yield
    assert local_env.snapshot() == before
    assert local_env.served_version() == served


@pytest.mark.parametrize("version", ["../x", "", "1.0 beta", "a/b"])
def test_blue_green_refuses_a_bad_version(local_env, unchanged, version):
    run = local_env.playbook("blue_green.yml", "-e", '{"app_version": "%s"}' % version, check=False)
    assert run.rc != 0
    assert any("app_version must be given" in msg for msg in run.failure_messages()), run.failure_messages()


def test_missing_artifact_is_refused(local_env, unchanged):
    run = local_env.playbook("blue_green.yml", "-e", '{"app_version": "9.9.9", "app_artifact_build_command": []}', check=False)
    assert run.rc != 0
    assert any("leanvibe-demo-9.9.9.tar.gz does not exist" in msg for msg in run.failure_messages()), run.failure_messages()


def test_busy_port_is_refused(local_env, unchanged):
    # The idle color's port is taken by a stranger: the deploy must not touch anything.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # TIME_WAIT leftovers of earlier tests must not stop the blocker itself from binding.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", SLOT_PORTS["green"]))
    blocker.listen(1)
    try:
        run = local_env.playbook("blue_green.yml", "-e", "app_version=4.0.0", check=False)
    finally:
        blocker.close()
    assert run.rc != 0
    assert any("port %d on 127.0.0.1 is already in use" % SLOT_PORTS["green"] in msg for msg in run.failure_messages()), run.failure_messages()


def test_unknown_color_is_refused(local_env, unchanged):
    rc, out = local_env.module("app-local", "leanvibe.deploy.canary_deploy", {
        "app": "demo", "slot": "purple", "version": "1.0.0", "base_dir": local_env.path("app"),
        "artifact": "/nonexistent.tar.gz", "port": SLOT_PORTS["green"] + 1, "command": ["true"]})
    assert rc != 0
    assert "value of slot must be one of: blue, green, got: purple" in out


@pytest.mark.parametrize("weights, message", [
    ({"blue": 150, "green": -50}, "weight of blue is 150, outside 0 to 100."),
    ({"blue": 60, "green": 60}, "weights must sum to 100, these sum to 120."),
    ({"purple": 100}, "weight color 'purple' is unknown"),
])
def test_bad_weights_are_refused(local_env, unchanged, weights, message):
    rc, out = local_env.module("lb-local", "leanvibe.deploy.nginx_upstream", {
        "app": "demo", "weights": weights, "conf_dir": local_env.path("nginx", "conf")})
    assert rc != 0
    assert message in out


def test_config_that_fails_nginx_t_is_put_back(local_env, unchanged):
    run = local_env.playbook("site.yml", "-e", "nginx_lb_proxy_read_timeout=bogus", check=False)
    assert run.rc != 0
    assert any("nginx -t rejected the new config" in msg and "previous config was put back" in msg
               for msg in run.failure_messages()), run.failure_messages()
    # And the environment still converges cleanly afterwards.
    assert local_env.playbook("site.yml").changed == 0
