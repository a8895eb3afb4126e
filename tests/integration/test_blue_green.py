"""site.yml and blue_green.yml against real nginx and real demo processes."""

import http.client
import json
import threading
import time

import pytest

from conftest import LB_PORT


def read_state(env):
    """What serves, from the ledger: the app, its active color and the version in each color."""
    ledger = env.read_ledger()
    return {"app": ledger["app"], "active_color": ledger["active_color"], "versions": ledger["versions"]}


def test_site_serves_the_initial_version_and_is_idempotent(local_env):
    assert local_env.served_version() == "1.0.0"
    rerun = local_env.playbook("site.yml")
    assert rerun.changed == 0, rerun.changed_tasks()


def test_blue_green_switches_keeps_old_color_warm_and_is_idempotent(local_env):
    run = local_env.playbook("blue_green.yml", "-e", "app_version=2.0.0")
    assert "Run the release in its slot" in run.changed_tasks()
    assert local_env.served_version() == "2.0.0"
    assert local_env.slot_version("blue") == "1.0.0"
    assert read_state(local_env) == {"app": "demo", "active_color": "green", "versions": {"blue": "1.0.0", "green": "2.0.0"}}
    switch = run.results_of("Set the traffic weights of the app")
    # First the canary route for the probe gate, then the switch itself.
    assert [result["after"]["canary"] for result in switch] == ["green", None]
    assert switch[-1]["method"] == "live"
    assert switch[-1]["after"]["weights"] == {"blue": 0, "green": 100}

    again = local_env.playbook("blue_green.yml", "-e", "app_version=2.0.0")
    assert again.changed == 0, again.changed_tasks()
    assert local_env.served_version() == "2.0.0"


class KeepAliveStream:
    """Clients that keep one connection each and never retry: every failure counts."""

    def __init__(self, connections=8, rate_per_connection=35, max_seconds=240):
        self.connections = connections
        self.interval = 1.0 / rate_per_connection
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.versions = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _index in range(connections)]

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=10)
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError("HTTP %d" % response.status)
                version = json.loads(body)["version"]
                with self.lock:
                    self.ok += 1
                    self.versions[version] = self.versions.get(version, 0) + 1
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=10)
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.mark.slow
def test_switches_under_keepalive_load_fail_no_request(local_env):
    local_env.playbook("blue_green.yml", "-e", "app_version=2.0.0")
    with KeepAliveStream() as stream:
        time.sleep(1)
        local_env.playbook("blue_green.yml", "-e", "app_version=3.0.0")
        time.sleep(0.5)
        # 2.0.0 is still warm on green: this switch back is a weight change only.
        back = local_env.playbook("blue_green.yml", "-e", "app_version=2.0.0")
        flips = local_env.playbook("tests/integration/playbooks/flip_weights.yml",
                                   "-e", json.dumps({"blue_weights": [90, 50, 10, 75, 25] * 4}))
        time.sleep(0.5)
    assert "Run the release in its slot" not in back.changed_tasks()
    methods = [result["method"] for result in flips.results_of("Set the traffic weights of the app")]
    assert len(methods) == 20 and set(methods) == {"live"}
    assert stream.failures == [], stream.failures[:5]
    assert stream.ok > 500
    assert stream.versions.get("3.0.0", 0) > 0 and stream.versions.get("2.0.0", 0) > 0


def test_check_mode_predicts_the_switch_and_changes_nothing(local_env):
    local_env.playbook("blue_green.yml", "-e", "app_version=2.0.0")
    state = read_state(local_env)
    idle = "blue" if state["active_color"] == "green" else "green"
    before = local_env.observe()
    # The idle color's release is warm: check mode must predict a weight change and touch nothing.
    run = local_env.playbook("blue_green.yml", "-e", "app_version=%s" % state["versions"][idle], "--check", "--diff")
    switch = run.results_of("Set the traffic weights of the app")[-1]
    assert switch["changed"] and switch["method"] == "live"
    assert switch["after"]["weights"][idle] == 100
    assert any("%s=100" % idle in part.get("after", "") for part in switch["diff"])
    local_env.assert_unchanged(before)
    assert local_env.served_version() == "2.0.0"
    site = local_env.playbook("site.yml", "--check")
    assert site.changed == 0, site.changed_tasks()
