"""Bad input gets one clear sentence and changes nothing: config bytes, state and what is served.

The bad versions, missing artifact, busy port, unknown color and bad weights that were tested here are cases of the
matrix in test_bad_input_matrix.py now.
"""


def test_config_that_fails_nginx_t_is_put_back(local_env, unchanged):
    run = local_env.playbook("site.yml", "-e", "nginx_lb_proxy_read_timeout=bogus", check=False)
    assert run.rc != 0
    assert any("nginx -t rejected the new config" in msg and "previous config was put back" in msg
               for msg in run.failure_messages()), run.failure_messages()
    # And the environment still converges cleanly afterwards.
    assert local_env.playbook("site.yml").changed == 0
