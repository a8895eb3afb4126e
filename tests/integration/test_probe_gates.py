"""probes.yml and the probe gate of blue_green.yml, against real nginx and real demo slots."""

import json

from test_blue_green import read_state


def test_probes_pass_against_a_healthy_environment(local_env):
    run = local_env.playbook("probes.yml")
    results = run.results_of("Run the synthetic probes")
    assert results and results[0]["passed"] is True
    assert sorted(probe["name"] for probe in results[0]["probes"]) == sorted(
        ["basic_health", "database_health", "api_functionality", "websocket", "performance", "security_headers"])
    assert all(probe["passed"] for probe in results[0]["probes"]), results[0]["probes"]


def test_gate_keeps_traffic_on_the_old_color_when_probes_fail(local_env):
    before_state = read_state(local_env)
    served = local_env.served_version()
    run = local_env.playbook("blue_green.yml", "-e", json.dumps({"app_version": "5.0.0", "app_env": {"LEANVIBE_FAULT_ERROR_RATE": "1"}}),
                             check=False)
    assert run.rc != 0
    messages = " ".join(run.failure_messages())
    assert "failed its probes, traffic stays on" in messages and "api_functionality" in messages, messages
    assert local_env.served_version() == served
    assert read_state(local_env) == before_state
    with open(local_env.path("nginx", "conf", "demo.weights"), encoding="utf-8") as handle:
        assert "canary=\n" in handle.read()


def test_probes_fail_naming_the_probe_when_the_serving_release_is_faulty(local_env):
    # The quick gate does not look at the websocket, so this faulty release gets through...
    local_env.playbook("blue_green.yml", "-e", json.dumps({"app_version": "6.0.0", "gate_probe_mode": "quick",
                                                          "app_env": {"LEANVIBE_FAULT_WEBSOCKET": "fail"}}))
    assert local_env.served_version() == "6.0.0"
    # ...and the comprehensive suite catches it.
    run = local_env.playbook("probes.yml", check=False)
    assert run.rc != 0
    messages = " ".join(run.failure_messages())
    assert "Synthetic probes failed against" in messages and "websocket" in messages, messages
