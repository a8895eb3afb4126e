"""Faults during deployments, on real nginx, real supervisord, real demo processes and real HTTP.

The module's environment is brought up by site.yml (1.0.0 on blue). Each test starts from whatever the test before it
left (the ledger says which color is stable), injects one fault and checks the outcome: what the clients saw, what
the ledger records, the weights file, the nginx config and the version the LB serves.
"""

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import SLOT_PORTS, BackgroundPlaybook, Traffic, other_color, read_bytes, stable_version, wait_for, write_bytes

FAST = {"canary_step_pause_s": 1, "canary_abort_delay_s": 0}
# A run that only has to get a release out (a re-run, a concurrent run): one step, quick final probes.
QUICK = dict(FAST, canary_steps=[100], canary_final_probe_mode="quick")


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


def assert_consistent(env, before=None):
    """Ledger, weights file and the LB agree: no lock, nothing in progress, 100 % on the stable color, which serves
    the ledger's stable version; every earlier history entry is kept. Returns the ledger."""
    ledger = env.read_ledger()
    assert ledger["lock"] is None, ledger["lock"]
    assert ledger["in_progress"] is None, ledger["in_progress"]
    active = ledger["active_color"]
    weights = env.read_weights()
    assert (weights[active], weights[other_color(active)], weights["stable"], weights["canary"]) == ("100", "0", active, ""), weights
    assert ledger["weights"] == {active: 100, other_color(active): 0}
    assert env.served_versions() == {stable_version(ledger)}
    assert env.slot_answers(active) == stable_version(ledger)
    if before is not None:
        ids = [entry["id"] for entry in before["history"]]
        assert [entry["id"] for entry in ledger["history"][:len(ids)]] == ids
    return ledger


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


# --- 4. ansible-playbook killed with SIGKILL in each phase of canary.yml, then a re-run -----------------------------

def _before_lock(env, run, ctx):
    # The preflight play runs after the plan and before the lock.
    return "PLAY [Check that the canary can deploy" in run.output() and env.read_ledger()["lock"] is None


def _deploying(env, run, ctx):
    current = env.read_ledger()["in_progress"]
    return bool(current) and current["version"] == ctx["version"] and not current["steps"] and env.read_weights()["canary"] == ""


def _mid_step(env, run, ctx):
    weights = env.read_weights()
    return weights["canary"] == ctx["canary"] and weights[ctx["canary"]] == "50" and bool(env.read_ledger()["in_progress"])


def _rescue(env, run, ctx):
    ledger = env.read_ledger()
    last = ledger["history"][-1] if ledger["history"] else {}
    return ledger["lock"] is not None and last.get("version") == ctx["version"] and last.get("outcome") == "rolled_back"


# phase: (how to see it, settings of the killed run)
PHASES = {
    "before_lock": (_before_lock, {}),
    "deploying": (_deploying, {}),
    "mid_step": (_mid_step, {"canary_step_pause_s": 30}),
    # A gate that cannot pass (too little traffic, insufficient_data=fail) sends the run to its rescue, which then waits
    # canary_abort_delay_s before it stops the canary and releases the lock.
    "rescue": (_rescue, {"canary_analysis": {"min_requests": 100000, "insufficient_data": "fail"}, "canary_abort_delay_s": 30}),
}
PHASE_VERSIONS = {"before_lock": "6.1.0", "deploying": "6.2.0", "mid_step": "6.3.0", "rescue": "6.4.0"}


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
def test_playbook_killed_in_each_phase_then_a_rerun_converges(local_env, phase):
    seen, settings = PHASES[phase]
    version = PHASE_VERSIONS[phase]
    before = local_env.read_ledger()
    assert before["lock"] is None and before["in_progress"] is None
    stable = before["active_color"]
    ctx = {"version": version, "canary": other_color(stable)}
    extra = dict({"app_version": version, "canary_steps": [50, 100], "canary_step_pause_s": 1, "canary_abort_delay_s": 0}, **settings)
    run = BackgroundPlaybook(local_env, "canary.yml", extra, "killed-%s" % phase)
    try:
        hit = wait_for(lambda: seen(local_env, run, ctx) or run.proc.poll() is not None, timeout=120, interval=0.02)
        assert hit and run.proc.poll() is None, "the run ended (rc %s) before phase %s; see %s" % (run.proc.poll(), phase, run.log_path)
        # The whole run dies at once, workers included, as when a CI job is killed.
        os.killpg(run.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)
    finally:
        run.cleanup()
    time.sleep(0.3)
    killed = local_env.read_ledger()
    weights = local_env.read_weights()
    print("\nkilled in %s: lock %s, in progress %s, weights %s" % (
        phase, bool(killed["lock"]), (killed["in_progress"] or {}).get("id"), weights))
    # What the kill left behind is the phase's.
    if phase == "before_lock":
        assert killed == before
    else:
        assert killed["lock"]["holder"]["pid"] == run.pid
    if phase in ("deploying", "mid_step"):
        assert killed["in_progress"]["version"] == version
    if phase == "mid_step":
        assert weights[ctx["canary"]] == "50"
    if phase == "rescue":
        assert killed["in_progress"] is None and (weights[stable], weights["canary"]) == ("100", "")

    rerun = local_env.canary(version, **QUICK)
    print("re-run: rc %d; %s" % (rerun.rc, rerun.failure_messages()))
    assert rerun.rc == 0, (rerun.failure_messages(), rerun.stderr[-2000:])
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == ctx["canary"] and stable_version(ledger) == version
    added = ledger["history"][len(before["history"]):]
    outcomes = [entry["outcome"] for entry in added]
    if phase == "before_lock":
        assert outcomes == ["promoted"], added
    elif phase == "rescue":
        assert outcomes == ["rolled_back", "promoted"], added
    else:
        assert outcomes == ["interrupted", "promoted"], added
        interrupted = added[0]
        assert interrupted["id"] == killed["in_progress"]["id"], interrupted
        # Killed with the traffic split or before it: no step had passed its gate, and the reason must not say otherwise.
        assert interrupted["reasons"] == ["run %s stopped without finishing, before any step passed its gate"
                                          % killed["lock"]["holder"]["run_id"]], interrupted
        assert interrupted["run_id"] == killed["lock"]["holder"]["run_id"]
    assert all(entry["version"] == version for entry in added)


# --- 5. a state dir that is read-only or full -----------------------------------------------------------------------

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


# --- 6. two deployments at once -------------------------------------------------------------------------------------

def test_two_canaries_at_once_one_proceeds_the_other_is_refused(local_env):
    before = local_env.read_ledger()
    old = stable_version(before)
    runs = {}
    for version in ("8.1.0", "8.2.0"):
        extra = dict(QUICK, app_version=version, canary_step_pause_s=2)
        runs[version] = BackgroundPlaybook(local_env, "canary.yml", extra, "concurrent-%s" % version)
    try:
        codes = {version: run.wait(240) for version, run in runs.items()}
    finally:
        for run in runs.values():
            run.cleanup()
    print("\nconcurrent canaries: rc %s" % codes)
    winners = [version for version, rc in codes.items() if rc == 0]
    assert len(winners) == 1, dict((version, runs[version].output()[-2000:]) for version in runs)
    winner = winners[0]
    loser = [version for version in runs if version != winner][0]
    out = runs[loser].output()
    assert "deployment lock of demo in local is held by run " in out and "(pid %d on host " % runs[winner].pid in out, out[-3000:]

    ledger = assert_consistent(local_env, before)
    assert stable_version(ledger) == winner and ledger["versions"][other_color(ledger["active_color"])] == old
    added = ledger["history"][len(before["history"]):]
    assert [(entry["version"], entry["outcome"]) for entry in added] == [(winner, "promoted")], added


def test_a_run_whose_plan_went_stale_while_another_finished_is_refused(local_env):
    """Run B plans (stable color, versions), then is slow (stopped here) until run A has promoted a release and let go of
    the lock. B then gets the lock, but its plan is stale: its 'idle' color now serves all the traffic. It must stop
    there, naming what changed, instead of deploying over the serving release."""
    before = local_env.read_ledger()
    stable = before["active_color"]
    late = BackgroundPlaybook(local_env, "canary.yml", dict(QUICK, app_version="8.4.0"), "stale-plan")
    try:
        planned = wait_for(lambda: "PLAY [Check that the canary can deploy" in late.output() or late.proc.poll() is not None,
                           timeout=120, interval=0.02)
        assert planned and late.proc.poll() is None, "the late run ended (rc %s) before its preflight; see %s" % (late.proc.poll(), late.log_path)
        os.killpg(late.pid, signal.SIGSTOP)
        try:
            first = local_env.canary("8.3.0", **QUICK)
        finally:
            os.killpg(late.pid, signal.SIGCONT)
        rc = late.wait(240)
    finally:
        late.cleanup()
    out = late.output()
    print("\nfirst run rc %d; the late run: rc %s" % (first.rc, rc))
    assert first.rc == 0, first.failure_messages()
    assert rc not in (None, 0), out[-3000:]
    assert "changed since this run planned" in out, out[-3000:]
    ledger = assert_consistent(local_env, before)
    assert ledger["active_color"] == other_color(stable) and stable_version(ledger) == "8.3.0"
    added = ledger["history"][len(before["history"]):]
    assert [(entry["version"], entry["outcome"]) for entry in added] == [("8.3.0", "promoted")], added
    # The serving slot was left alone, and so was the old release in the idle one.
    assert local_env.slot_answers(other_color(stable)) == "8.3.0"
    assert local_env.slot_answers(stable) == stable_version(before)
