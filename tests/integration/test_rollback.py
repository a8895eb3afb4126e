"""rollback.yml against real nginx, real demo slots and real HTTP: warm flips, cold redeploys, bad targets, a corrupt
ledger, and how fast an emergency rollback brings the previous version back.

The module's environment is brought up by site.yml (1.0.0 on blue); the tests run in order and each starts from
the state the one before left.
"""

import http.client
import json
import threading
import time

import pytest

from conftest import LB_PORT, read_bytes, stable_version, write_bytes


# --- helpers ----------------------------------------------------------------------------------------------------------

def lasting(ledger):
    """The ledger without its lock (the lock is not lasting content)."""
    return {key: value for key, value in ledger.items() if key != "lock"}


def assert_rollback_entry(env, before, version, from_version, reason):
    """The ledger after a rollback: one new history entry, manual, nothing in progress, no lock."""
    ledger = env.read_ledger()
    assert ledger["lock"] is None and ledger["in_progress"] is None
    assert stable_version(ledger) == version
    assert [entry["id"] for entry in ledger["history"][:-1]] == [entry["id"] for entry in before["history"]]
    entry = ledger["history"][-1]
    assert (entry["type"], entry["outcome"], entry["autonomous"]) == ("rollback", "rolled_back", False), entry
    assert (entry["version"], entry["from_version"]) == (version, from_version), entry
    assert entry["reasons"] == [reason], entry
    return ledger


def blue_green(env, version):
    return env.playbook("blue_green.yml", "-e", "app_version=%s" % version, "-e", "gate_probe_mode=quick")


class HealthWatch:
    """Polls <lb>/health every 10 ms on one keep-alive connection; notes when `version` first answers."""

    def __init__(self, version, max_seconds=60):
        self.version = version
        self.max_seconds = max_seconds
        self.started = None
        self.seen_at = None
        self.errors = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=2)
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and json.loads(body).get("version") == self.version:
                    self.seen_at = time.monotonic()
                    break
            except (OSError, http.client.HTTPException, ValueError):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=2)
            self.stop_event.wait(0.01)
        conn.close()

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=5)

    @property
    def seconds(self):
        return None if self.seen_at is None else self.seen_at - self.started


# --- 1. warm rollback -------------------------------------------------------------------------------------------------

def test_rollback_flips_to_the_warm_previous_release(local_env):
    blue_green(local_env, "2.0.0")
    assert local_env.served_versions() == {"2.0.0"}
    assert local_env.slot_answers("blue") == "1.0.0"
    before = local_env.read_ledger()

    run = local_env.playbook("rollback.yml")
    assert "Run the release in its slot" not in run.changed_tasks()
    assert local_env.served_versions() == {"1.0.0"}
    ledger = assert_rollback_entry(local_env, before, "1.0.0", "2.0.0", "manual rollback")
    assert ledger["active_color"] == "blue" and ledger["versions"] == {"blue": "1.0.0", "green": "2.0.0"}
    assert ledger["weights"] == {"blue": 100, "green": 0}
    # The release rolled back from stays warm.
    assert local_env.slot_answers("green") == "2.0.0"


def test_emergency_rollback_flips_live_without_a_redeploy(local_env):
    # 2.0.0 is warm on green: blue_green brings it back with a weight flip.
    blue_green(local_env, "2.0.0")
    assert local_env.served_versions() == {"2.0.0"}
    before = local_env.read_ledger()

    with HealthWatch("1.0.0", max_seconds=60) as watch:
        run = local_env.playbook("rollback.yml", "-e", "emergency=true")
        ended = time.monotonic() - watch.started
        # The playbook ends after the flip; allow the poller one more round.
        deadline = time.monotonic() + 2
        while watch.seen_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
    flipped_in = [result["duration_ms"] for result in run.results_of("Roll back the app's traffic") if "duration_ms" in result]
    print("\nrollback.yml -e emergency=true: LB answers 1.0.0 %.2f s after the process started "
          "(playbook %.2f s, weights flipped %s ms into the module, %d poll errors)"
          % (watch.seconds if watch.seconds is not None else -1, ended, flipped_in, watch.errors))

    assert watch.seconds is not None, "the LB never answered 1.0.0"
    # How fast is a benchmark figure (bench/rollback_speed.py); here: one live weight flip, no redeploy.
    flips = [result.get("method") for result in run.results_of("Roll back the app's traffic") if not result.get("skipped")]
    assert flips == ["live"]
    assert "Run the release in its slot" not in run.changed_tasks()
    assert watch.errors == 0
    assert local_env.served_versions() == {"1.0.0"}
    assert_rollback_entry(local_env, before, "1.0.0", "2.0.0", "emergency rollback")


# --- 2. cold rollback -------------------------------------------------------------------------------------------------

def test_rollback_to_a_stopped_release_redeploys_it_and_flips(local_env):
    ledger = local_env.read_ledger()
    assert stable_version(ledger) == "1.0.0" and ledger["versions"]["green"] == "2.0.0"
    rc, out = local_env.module("app-local", "leanvibe.deploy.slot_release", {
        "app": "demo", "slot": "green", "base_dir": local_env.path("app"), "state": "stopped"})
    assert rc == 0, out
    assert local_env.slot_answers("green") is None
    before = local_env.read_ledger()

    run = local_env.playbook("rollback.yml", "-e", "target_version=2.0.0")
    assert "Run the release in its slot" in run.changed_tasks()
    assert local_env.served_versions() == {"2.0.0"}
    assert local_env.slot_answers("green") == "2.0.0"
    ledger = assert_rollback_entry(local_env, before, "2.0.0", "1.0.0", "manual rollback")
    assert ledger["active_color"] == "green" and ledger["versions"] == {"blue": "1.0.0", "green": "2.0.0"}


def test_rollback_to_a_release_only_in_history_redeploys_it_to_the_idle_color(local_env):
    # 3.0.0 replaces 1.0.0 on blue: after this, 1.0.0 is in no color, only in the history.
    blue_green(local_env, "3.0.0")
    ledger = local_env.read_ledger()
    assert ledger["versions"] == {"blue": "3.0.0", "green": "2.0.0"} and ledger["active_color"] == "blue"
    before = ledger

    run = local_env.playbook("rollback.yml", "-e", "target_version=1.0.0")
    assert "Run the release in its slot" in run.changed_tasks()
    assert local_env.served_versions() == {"1.0.0"}
    assert local_env.slot_answers("green") == "1.0.0"
    ledger = assert_rollback_entry(local_env, before, "1.0.0", "3.0.0", "manual rollback")
    assert ledger["active_color"] == "green" and ledger["versions"] == {"blue": "3.0.0", "green": "1.0.0"}


# --- 3. a target that never was ---------------------------------------------------------------------------------------

def test_never_deployed_target_is_refused_and_changes_nothing(local_env):
    before = local_env.observe()
    before_ledger = local_env.read_ledger()

    run = local_env.playbook("rollback.yml", "-e", "target_version=9.9.9", check=False)
    assert run.rc != 0
    # One sentence (a rescue that re-raises it may repeat it, nothing else).
    assert set(run.failure_messages()) == {
        "version 9.9.9 of demo was never deployed in local: it is in no color and in no history entry of ledger %s; "
        "nothing was changed." % local_env.ledger_path}, run.failure_messages()
    # The ledger is compared without its lock below: a lock left behind is reported there, with its holder.
    local_env.assert_unchanged(before, ignore=[local_env.ledger_path])
    after_ledger = local_env.read_ledger()
    assert lasting(after_ledger) == lasting(before_ledger)
    lock = after_ledger["lock"]
    if lock is not None:
        # Put the ledger back for the next tests: release the lock in the name of the run that left it.
        rc, out = local_env.deployment_state("unlock", holder=lock["holder"])
        assert rc == 0, out
    assert lock is None, (
        "rollback.yml took the deploy lock (tasks/lock.yml), the rollback module refused the target, and nothing "
        "released the lock: the ledger keeps the lock of finished run %s (pid %s)" % (lock["holder"]["run_id"], lock["holder"]["pid"]))
    assert local_env.snapshot() == before["files"]


# --- 4. a corrupt ledger ----------------------------------------------------------------------------------------------

GARBAGE = b'{"schema": 1, "app": "demo", "history": [ this is not json\n'


@pytest.mark.parametrize("playbook, extra", [
    ("rollback.yml", {}),
    ("rollback.yml", {"emergency": True}),
    ("canary.yml", {"app_version": "5.0.0", "canary_steps": [50, 100], "canary_step_pause_s": 1}),
])
def test_corrupt_ledger_is_refused_and_left_untouched(local_env, playbook, extra):
    path = local_env.ledger_path
    good = read_bytes(path)
    try:
        write_bytes(path, GARBAGE)
        before = local_env.observe()
        run = local_env.playbook(playbook, "-e", json.dumps(extra), check=False)
        assert run.rc != 0
        # One sentence naming the file (a rescue that re-raises it may repeat it, nothing else).
        messages = set(run.failure_messages())
        assert len(messages) == 1, messages
        message = messages.pop()
        assert message.startswith("ledger %s is corrupt (not JSON" % path), message
        assert message.endswith("; fix it or move it away.") and "\n" not in message, message
        assert read_bytes(path) == GARBAGE
        local_env.assert_unchanged(before)
    finally:
        write_bytes(path, good)
    assert local_env.read_ledger()["lock"] is None


def test_environment_is_consistent_at_the_end(local_env):
    """After every rollback above, the ledger, nginx and the slots agree."""
    ledger = local_env.read_ledger()
    assert ledger["lock"] is None and ledger["in_progress"] is None
    assert local_env.served_versions() == {stable_version(ledger)}
    assert local_env.slot_answers(ledger["active_color"]) == stable_version(ledger)
