"""Faults during deployments, on real nginx, real supervisord, real demo processes and real HTTP.

The module's environment is brought up by site.yml (1.0.0 on blue). Each test starts from whatever the test before it
left (the ledger says which color is stable), injects one fault and checks the outcome: what the clients saw, what
the ledger records, the weights file, the nginx config and the version the LB serves. Runs that are killed, run
twice at once or go stale are in test_interrupted_runs.py.
"""

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (SLOT_PORTS, BackgroundPlaybook, Traffic, assert_consistent, other_color, read_bytes, stable_version,
                      wait_for, write_bytes)

FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}


# --- helpers ----------------------------------------------------------------------------------------------------------

def slot_pid(color):
    """Pid of the demo process that listens on the color's test port (found by its command line)."""
    wanted = ["--port", str(SLOT_PORTS[color])]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                argv = handle.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if any(arg.startswith("leanvibe_") for arg in argv) and any(argv[i:i + 2] == wanted for i in range(len(argv) - 1)):
            return int(name)
    return None


def nginx_args(env):
    """The nginx options the nginx_lb role passes to the collection's modules for the test LB."""
    return {"conf_dir": env.path("nginx", "conf"), "admin_socket": env.path("nginx", "run", "admin.sock"),
            "nginx_binary": "/usr/sbin/nginx", "nginx_prefix": env.path("nginx"),
            "nginx_conf": env.path("nginx", "conf", "nginx.conf"), "pid_file": env.path("nginx", "run", "nginx.pid")}


def canary_holds(weights, canary_color, weight):
    """Whether the weights file shows `canary_color` as the canary at `weight` percent."""
    return weights.get(canary_color) == weight and weights.get("canary") == canary_color


def kill_in_first_step(env, settings, name, canary_color, victim, victim_version):
    """Under traffic, start the canary of `settings` and kill -9 the `victim` color's process 0.5 s into the first step.

    (run, its rc, whether supervisord brought the victim back with `victim_version`, in how many seconds, traffic).
    """
    first_step = str(settings["canary_steps"][0])
    with Traffic(env, rate=40, seconds=120) as traffic:
        run = BackgroundPlaybook(env, "canary.yml", settings, name)
        try:
            in_step = wait_for(lambda: canary_holds(env.read_weights(), canary_color, first_step), timeout=90)
            assert in_step, "the canary never reached its first step (rc %s); see %s" % (run.proc.poll(), run.log_path)
            time.sleep(0.5)
            pid = slot_pid(victim)
            assert pid, "no process on port %d" % SLOT_PORTS[victim]
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            restarted = wait_for(lambda: env.slot_answers(victim) == victim_version, timeout=20)
            restarted_in = time.monotonic() - killed_at
            rc = run.wait(120)
        finally:
            run.cleanup()
        time.sleep(0.5)
    return run, rc, restarted, restarted_in, traffic


# --- 1. kill -9 of the canary in the middle of a step ---------------------------------------------------------------

def test_canary_killed_mid_step_is_rolled_back_and_no_request_fails(local_env):
    """supervisord restarts the killed canary within a couple of seconds, long before the step's probes: the gate must
    still see that the canary failed its share of the traffic (nginx retried it on stable), and roll back."""
    before = local_env.read_ledger()
    stable, version = before["active_color"], "5.1.0"
    canary_color = other_color(stable)
    settings = {"app_version": version, "canary_steps": [50, 100], "canary_step_pause_s": 8, "canary_abort_delay_s": 0}
    run, rc, restarted, restarted_in, traffic = kill_in_first_step(local_env, settings, "canary-killed", canary_color, canary_color, version)
    print("\ncanary %s killed 0.5 s into a step: supervisord restarted it in %.1f s; playbook rc %s; traffic %s"
          % (version, restarted_in, rc, traffic.summary))

    assert restarted, "supervisord did not restart the killed canary"
    assert rc not in (None, 0), run.output()[-3000:]
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == stable and stable_version(ledger) == stable_version(before)
    assert len(ledger["history"]) == len(before["history"]) + 1
    entry = ledger["history"][-1]
    assert (entry["version"], entry["outcome"], entry["autonomous"]) == (version, "rolled_back", True), entry
    print("reasons: %s" % entry["reasons"])
    # The rescue stopped the canary.
    assert local_env.slot_answers(canary_color) is None
    assert traffic.summary["failed"] == 0, traffic.summary
    assert traffic.summary["ok"] > 300, traffic.summary


# --- 2. the stable process killed during a canary -------------------------------------------------------------------

def test_stable_killed_during_a_canary_fails_no_request_and_does_not_blame_the_canary(local_env):
    before = local_env.read_ledger()
    stable, version = before["active_color"], "5.2.0"
    canary_color = other_color(stable)
    old = stable_version(before)
    settings = {"app_version": version, "canary_steps": [25, 100], "canary_step_pause_s": 4, "canary_abort_delay_s": 0}
    run, rc, restarted, restarted_in, traffic = kill_in_first_step(local_env, settings, "stable-killed", canary_color, stable, old)
    print("\nstable %s killed during the canary of %s: supervisord restarted it in %.1f s; playbook rc %s; traffic %s"
          % (old, version, restarted_in, rc, traffic.summary))

    assert restarted, "supervisord did not restart the killed stable process"
    # A healthy canary is not blamed for the stable's crash: it is promoted, every step judged sanely.
    assert rc == 0, run.output()[-3000:]
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == canary_color and stable_version(ledger) == version
    assert ledger["versions"] == {stable: old, canary_color: version}
    entry = ledger["history"][-1]
    assert (entry["version"], entry["outcome"]) == (version, "promoted"), entry
    assert [step["weight"] for step in entry["steps"]] == [25, 100]
    assert all(step["verdicts"]["probes"] == "pass" and step["verdicts"]["analysis"] != "fail" for step in entry["steps"]), entry
    # The old release is warm again for a rollback.
    assert local_env.slot_answers(stable) == old
    assert traffic.summary["failed"] == 0, traffic.summary
    assert traffic.summary["ok"] > 200, traffic.summary


# --- 3. an nginx reload that fails ----------------------------------------------------------------------------------

BROKEN = "upstream leanvibe_broken {\n    this is not nginx;\n}\n"


def test_failed_reload_on_a_member_change_keeps_the_config_and_serving(local_env):
    """A member change needs a reload; a broken file in the conf dir makes nginx -t refuse it."""
    before = local_env.observe()
    state = json.loads(before["files"][local_env.path("nginx", "conf", "demo.state.json")])
    members = {"blue": state["members"]["blue"] + ["127.0.0.1:%d" % SLOT_PORTS["green"]], "green": state["members"]["green"]}
    broken = local_env.path("nginx", "conf", "zz-broken.upstreams.conf")
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write(BROKEN)
    try:
        rc, out = local_env.module("lb-local", "leanvibe.deploy.nginx_upstream", dict(nginx_args(local_env), app="demo", members=members))
    finally:
        os.unlink(broken)
    assert rc != 0, out
    assert "nginx -t rejected the new config" in out and "unknown directive" in out, out
    local_env.assert_unchanged(before)


def test_failed_reload_without_the_lua_admin_keeps_the_weights_and_serving(local_env):
    """Without the admin socket a weight change falls back to a reload, which a broken file makes nginx -t refuse."""
    before = local_env.observe()
    active = local_env.read_ledger()["active_color"]
    broken = local_env.path("nginx", "conf", "zz-broken.upstreams.conf")
    admin = local_env.path("nginx", "run", "admin.sock")
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write(BROKEN)
    os.rename(admin, admin + ".away")
    try:
        rc, out = local_env.module("lb-local", "leanvibe.deploy.nginx_upstream", dict(
            nginx_args(local_env), app="demo", weights={active: 90, other_color(active): 10}, stable_color=active))
    finally:
        os.rename(admin + ".away", admin)
        os.unlink(broken)
    assert rc != 0, out
    assert "nginx -t rejected the new config" in out, out
    local_env.assert_unchanged(before)


def test_failed_reload_of_the_role_config_keeps_the_config_and_serving(local_env):
    """site.yml renders a changed config while a broken file sits in the conf dir: nginx -t refuses, the role puts the
    previous config back byte for byte and does not reload."""
    before = local_env.observe()
    broken = local_env.path("nginx", "conf", "zz-broken.upstreams.conf")
    with open(broken, "w", encoding="utf-8") as handle:
        handle.write(BROKEN)
    try:
        run = local_env.playbook("site.yml", "-e", "nginx_lb_proxy_read_timeout=61s", check=False)
    finally:
        os.unlink(broken)
    assert run.rc != 0
    messages = set(run.failure_messages())
    assert len(messages) == 1, messages
    message = messages.pop()
    assert message.startswith("nginx -t rejected the new config (unknown directive \"this\" in %s:2);" % broken), message
    assert message.endswith("the previous config was put back and nginx was not reloaded."), message
    local_env.assert_unchanged(before)


def test_reload_that_nginx_refuses_after_a_passing_test_keeps_the_config_and_serving(local_env):
    """nginx -t does not bind: a listen address that is taken passes the test, and the master refuses the reload
    (it keeps its old config and workers). The role must notice, put the previous config back and fail."""
    before = local_env.observe()
    busy = SLOT_PORTS[local_env.read_ledger()["active_color"]]  # the stable slot listens there
    try:
        run = local_env.playbook("site.yml", "-e", "lb_listen=127.0.0.1:%d" % busy, "-e", "nginx_lb_reload_timeout=5", check=False, timeout=180)
        assert run.rc != 0, "site.yml reported success for a reload nginx refused"
        messages = set(run.failure_messages())
        assert len(messages) == 1, messages
        message = messages.pop()
        assert message == ("nginx refused to reload the new config (bind() to 127.0.0.1:%d failed (98: Address already in use)); "
                           "it keeps serving the previous config, which was put back." % busy), message
        local_env.assert_unchanged(before)
    finally:
        # Whatever happened, leave the next tests the config nginx serves.
        conf_dir = local_env.path("nginx", "conf") + os.sep
        for path, data in before["files"].items():
            if path.startswith(conf_dir) and (not os.path.exists(path) or read_bytes(path) != data):
                write_bytes(path, data)
                os.kill(local_env.nginx_master(), signal.SIGHUP)


# --- 4. a state dir that is read-only or full -----------------------------------------------------------------------

def _mount(*args):
    proc = subprocess.run(["mount"] + list(args), capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, "mount %s: %s" % (" ".join(args), proc.stderr)


@contextlib.contextmanager
def state_dir_fault(env, fault):
    """The state dir on a small tmpfs of its own, with the same files, then remounted read-only or filled up.

    Yields the files the tmpfs held after the fault was set; always unmounted at the end (the original files under
    the mount point were never touched)."""
    folder = env.path("state")
    saved = {name: read_bytes(os.path.join(folder, name)) for name in os.listdir(folder)}
    _mount("-t", "tmpfs", "-o", "size=256k,mode=0750", "leanvibe-test-state", folder)
    try:
        for name, data in saved.items():
            write_bytes(os.path.join(folder, name), data)
        if fault == "read-only":
            _mount("-o", "remount,ro", folder)
        else:
            with open(os.path.join(folder, "filler"), "wb", buffering=0) as handle:
                for _index in range(1024):  # 256 KiB in 4 KiB writes, and some more
                    try:
                        handle.write(b"\0" * 4096)
                    except OSError:
                        break
                else:
                    raise AssertionError("the tmpfs never filled up")
        yield saved
        after = {name: read_bytes(os.path.join(folder, name)) for name in os.listdir(folder) if name != "filler"}
        assert after == saved, "the state files changed on the faulty state dir"
    finally:
        for _attempt in range(50):
            if subprocess.run(["umount", folder], capture_output=True, timeout=30, check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", folder], capture_output=True, timeout=30, check=False)


@pytest.mark.parametrize("playbook", ["canary.yml", "blue_green.yml"])
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_state_dir_read_only_or_full_fails_with_one_sentence_and_traffic_unchanged(local_env, fault, playbook):
    version = {"canary.yml": "7.1.0", "blue_green.yml": "7.2.0"}[playbook]
    before = local_env.observe()
    extra = dict(FAST, app_version=version, canary_steps=[50, 100], gate_probe_mode="quick")
    with state_dir_fault(local_env, fault):
        run = local_env.playbook(playbook, "-e", json.dumps(extra), check=False)
    assert run.rc != 0
    messages = set(run.failure_messages())
    print("\n%s on a %s state dir: %s" % (playbook, fault, messages))
    assert len(messages) == 1, messages
    message = messages.pop()
    assert "\n" not in message.strip() and local_env.path("state") in message, message
    assert ("read-only" if fault == "read-only" else "No space left on device") in message, message
    local_env.assert_unchanged(before)
