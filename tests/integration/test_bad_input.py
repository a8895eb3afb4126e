"""Bad input gets one clear sentence and changes nothing: config bytes, state and what is served.

The bad versions, missing artifact, busy port, unknown color and bad weights that were tested here are cases of the
matrix in test_bad_input_matrix.py now.
"""

import pytest


@pytest.fixture
def unchanged(local_env):
    """Asserts after the test that nginx config, deploy state, slot state and the served version did not move."""
    before = local_env.snapshot()
    served = local_env.served_version()
    yield
    assert local_env.snapshot() == before
    assert local_env.served_version() == served


def test_config_that_fails_nginx_t_is_put_back(local_env, unchanged):
    run = local_env.playbook("site.yml", "-e", "nginx_lb_proxy_read_timeout=bogus", check=False)
    assert run.rc != 0
    assert any("nginx -t rejected the new config" in msg and "previous config was put back" in msg
               for msg in run.failure_messages()), run.failure_messages()
    # And the environment still converges cleanly afterwards.
    assert local_env.playbook("site.yml").changed == 0
