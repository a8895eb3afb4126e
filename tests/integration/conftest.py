"""Integration fixtures: a real local environment (nginx, supervisord, demo slots) on test ports.

Tests drive the real playbooks against inventories/local with extra vars that move
every runtime file under a temp folder and every port off the ones `make demo` uses.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# Off the ports of `make demo` (8000, 9001, 9002, 5000). LEANVIBE_TEST_PORT_BASE lets two test runs share a machine;
# each pytest-xdist worker (gw0, gw1, ...) takes the 100 ports from LEANVIBE_TEST_PORT_BASE + 100 * its index.
# Every port a test uses is PORT_BASE + an offset: 0 LB, 1-2 slots, 3 a port next to them, 5 the dashboard,
# 9 one where nothing listens, 10 the garbage probe target, 20-22 the browser test's services, 40-69 the probe cases.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
WORKER_INDEX = int(WORKER[2:]) if WORKER[2:].isdigit() else 0
PORT_BASE = int(os.environ.get("LEANVIBE_TEST_PORT_BASE", "18000")) + 100 * WORKER_INDEX
LB_PORT = PORT_BASE
SLOT_PORTS = {"blue": PORT_BASE + 1, "green": PORT_BASE + 2}
# The monitoring dashboard's listen port (monitoring_listen), for when site.yml brings the dashboard up.
MONITORING_PORT = PORT_BASE + 5
# A second environment (test_monitoring_live's, with the dashboard) lives beside the worker's session one:
# its LB, slots and dashboard are these offsets plus 30.
SECOND_ENV_OFFSET = 30
# What site.yml brings up and what LocalEnv.reset puts back: this release on blue at 100 %, green stopped.
BASELINE_VERSION = "1.0.0"
# The lock holder of a deployment that is not this test's.
OTHER_HOLDER = {"run_id": "other", "controller": "other-host", "pid": 1, "user": "x"}


def ansible_env(**extra):
    """The process environment of an ansible command on this checkout: its ansible.cfg, the venv's tools first."""
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                PATH=BIN + os.pathsep + os.environ.get("PATH", ""), **extra)


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def write_bytes(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


def stable_version(ledger):
    return ledger["versions"].get(ledger["active_color"])


def other_color(color):
    return "green" if color == "blue" else "blue"


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


def child_pids(pid):
    """Live pids whose parent is `pid` (the workers of an nginx master)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(name))
    return found


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (nginx's admin socket)."""

    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.socket_path)


class PlaybookRun:
    """Result of one ansible-playbook run, read from the json stdout callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.data = {"plays": [], "stats": {}}

    @property
    def changed(self):
        return sum(host["changed"] for host in self.data["stats"].values())

    @property
    def failed(self):
        return sum(host["failures"] + host["unreachable"] for host in self.data["stats"].values())

    def tasks(self):
        for play in self.data["plays"]:
            for task in play["tasks"]:
                # Role tasks are named "role : task"; tests name the task alone.
                name = task["task"]["name"].split(" : ")[-1]
                for host, result in task["hosts"].items():
                    yield name, host.split("#")[0], result

    def changed_tasks(self):
        return sorted({name for name, _host, result in self.tasks() if result.get("changed")})

    def failure_messages(self):
        return [result.get("msg", "") for _name, _host, result in self.tasks() if result.get("failed")]

    def results_of(self, task_name):
        return [result for name, _host, result in self.tasks() if name == task_name]


class LocalEnv:
    def __init__(self, run_dir, artifact_dir, port_offset=0, **extra_vars):
        """`extra_vars` add to or override the vars below (a module that runs the monitoring dashboard, say);
        `port_offset` moves every port of this environment (SECOND_ENV_OFFSET for one beside the session's)."""
        self.run_dir = run_dir
        self.lb_port = LB_PORT + port_offset
        self.slot_ports = {color: port + port_offset for color, port in SLOT_PORTS.items()}
        self.monitoring_port = MONITORING_PORT + port_offset
        self.lb_url = "http://127.0.0.1:%d" % self.lb_port
        self.baseline = None
        self.extra_vars = {
            "leanvibe_run_dir": run_dir,
            "lb_listen": "127.0.0.1:%d" % self.lb_port,
            "app_ports": self.slot_ports,
            "app_artifact_dir": artifact_dir,
            "app_drain_timeout": 5,
            # Most modules need no dashboard: site.yml skips it, and deployment events to it are refused at once.
            "monitoring_enabled": False,
            "monitoring_listen": "127.0.0.1:%d" % self.monitoring_port,
        }
        self.extra_vars.update(extra_vars)
        self.vars_file = os.path.join(run_dir, "test-vars.json")
        os.makedirs(run_dir, exist_ok=True)
        with open(self.vars_file, "w", encoding="utf-8") as handle:
            json.dump(self.extra_vars, handle)

    # --- running ansible ----------------------------------------------------------------------------------------------

    def playbook(self, name, *extra_args, check=True, timeout=300, inventory=None):
        """ansible-playbook on inventories/local, or on `inventory` instead (a second -i would merge the two)."""
        env = ansible_env(ANSIBLE_STDOUT_CALLBACK="results_json",
                          ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "tests", "integration", "callback_plugins"))
        path = os.path.join(REPO, name if "/" in name else os.path.join("playbooks", name))
        cmd = [os.path.join(BIN, "ansible-playbook"), "-i", inventory or os.path.join(REPO, "inventories", "local"),
               path, "-e", "@" + self.vars_file] + list(extra_args)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        run = PlaybookRun(proc)
        if check and run.rc != 0:
            raise AssertionError("%s failed (rc=%d): %s\n%s" % (name, run.rc, run.failure_messages(), proc.stderr[-3000:]))
        return run

    def canary(self, version, *args, check=False, timeout=300, **settings):
        """canary.yml with app_version and settings (canary_steps, app_env, ...) as one JSON -e; `check` raises on rc != 0."""
        return self.playbook("canary.yml", "-e", json.dumps(dict(settings, app_version=version)), *args, check=check, timeout=timeout)

    def module(self, host, module, args):
        """An ad-hoc module call: (rc, one-line output)."""
        cmd = [os.path.join(BIN, "ansible"), host, "-i", os.path.join(REPO, "inventories", "local"), "-e", "@" + self.vars_file,
               "-o", "-m", module, "-a", json.dumps(args)]
        proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def deployment_state(self, action, **args):
        """The deployment_state module on the demo ledger (lock, unlock, record, ...): (rc, one-line output)."""
        return self.module("lb-local", "leanvibe.deploy.deployment_state",
                           dict(args, path=self.ledger_path, app="demo", environment="local", action=action))

    # --- what the environment holds and serves ------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    @property
    def ledger_path(self):
        return self.path("state", "demo.ledger.json")

    def read_ledger(self):
        with open(self.ledger_path, encoding="utf-8") as handle:
            return json.load(handle)

    def read_weights(self):
        """The weights file nginx loads, as {key: text}: blue, green, stable and canary."""
        with open(self.path("nginx", "conf", "demo.weights"), encoding="utf-8") as handle:
            return dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line and not line.startswith("#"))

    def live_weights(self):
        """The weights in nginx's memory, from the Lua admin endpoint on its socket: (HTTP status, body)."""
        conn = UnixHTTPConnection(self.path("nginx", "run", "admin.sock"))
        try:
            conn.request("GET", "/leanvibe/weights/demo")
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8")
        finally:
            conn.close()

    def nginx_master(self):
        return int(read_bytes(self.path("nginx", "run", "nginx.pid")).strip())

    def nginx_processes(self):
        """nginx's master pid and its workers' pids: a reload replaces the workers."""
        master = self.nginx_master()
        return master, sorted(child_pids(master))

    def get_json(self, url, timeout=5):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())

    def served_version(self):
        return self.get_json(self.lb_url + "/health")["version"]

    def served_versions(self, count=20):
        """What the LB answers to `count` requests in a row (a canary left at any weight shows up here)."""
        return {self.served_version() for _index in range(count)}

    def slot_version(self, color):
        return self.get_json("http://127.0.0.1:%d/health" % self.slot_ports[color])["version"]

    def slot_answers(self, color):
        """The version a slot answers on its own port, or None when nothing listens."""
        try:
            return self.slot_version(color)
        except OSError:
            return None

    def snapshot(self):
        """Bytes of every nginx config file and the deploy state: what bad input must not change."""
        files = {}
        for folder in (self.path("nginx", "conf"), self.path("state"), self.path("app", "slots")):
            for root, _dirs, names in os.walk(folder):
                for name in names:
                    full = os.path.join(root, name)
                    if not os.path.islink(full):
                        files[full] = read_bytes(full)
        return files

    def observe(self):
        """What bad input, check mode or a failed change must leave as it was: the bytes of the nginx config (weights
        file included), of the state (ledger) and of the slots, the weights in nginx's memory, nginx's processes and
        the versions the LB serves."""
        return {"files": self.snapshot(), "live_weights": self.live_weights(), "nginx": self.nginx_processes(),
                "served": self.served_versions()}

    def assert_unchanged(self, before, after=None, ignore=()):
        """`after` (by default what is observed now) is `before`, but for the files in `ignore`."""
        after = self.observe() if after is None else after
        changed = sorted(name for name in set(before["files"]) | set(after["files"])
                         if before["files"].get(name) != after["files"].get(name) and name not in ignore)
        assert changed == [], "changed, new or removed files: %s" % changed
        for key, what in (("live_weights", "the weights in nginx's memory"), ("nginx", "nginx's processes (a reload)"),
                          ("served", "the served versions")):
            assert after[key] == before[key], "%s changed: %r -> %r" % (what, before[key], after[key])

    # --- the baseline every test may ask for -----------------------------------------------------------------------

    def weights_path(self):
        return self.path("nginx", "conf", "demo.weights")

    def capture_baseline(self):
        """What site.yml left (BASELINE_VERSION on blue at 100 %, a ledger of one release): the state reset() restores."""
        assert self.slot_answers("blue") == BASELINE_VERSION and self.slot_answers("green") is None
        self.baseline = {"ledger": read_bytes(self.ledger_path), "weights": read_bytes(self.weights_path()),
                         "live_weights": self.live_weights()}

    def at_baseline(self):
        """Whether the environment is as capture_baseline() saw it (nothing is run to find out)."""
        try:
            return (read_bytes(self.ledger_path) == self.baseline["ledger"]
                    and read_bytes(self.weights_path()) == self.baseline["weights"]
                    and self.live_weights() == self.baseline["live_weights"]
                    and self.slot_answers("blue") == BASELINE_VERSION and self.slot_answers("green") is None)
        except OSError:
            return False

    def reset(self):
        """Back to the baseline, doing only what differs, in one run of tests/integration/playbooks/reset.yml: green
        stopped, blue redeployed with BASELINE_VERSION if it runs another release, the weights set back to blue
        100 %; the ledger's bytes are put back first."""
        if self.at_baseline():
            return
        parts = {"reset_stop_green": self.slot_answers("green") is not None,
                 "reset_blue_version": BASELINE_VERSION if self.slot_answers("blue") != BASELINE_VERSION else "",
                 "reset_weights": (read_bytes(self.weights_path()) != self.baseline["weights"]
                                   or self.live_weights() != self.baseline["live_weights"])}
        write_bytes(self.ledger_path, self.baseline["ledger"])
        if any(parts.values()):
            self.playbook(os.path.join("tests", "integration", "playbooks", "reset.yml"), "-e", json.dumps(parts))
        assert self.at_baseline(), "the reset left %r, not the baseline" % {
            "weights": self.read_weights(), "live": self.live_weights(), "blue": self.slot_answers("blue"),
            "green": self.slot_answers("green")}

    def stop(self):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "stop_local.py"), self.run_dir], check=False, capture_output=True)


class BackgroundPlaybook:
    """ansible-playbook in the background, in a session of its own, its output in a log file under the run dir."""

    def __init__(self, env, playbook, extra, name):
        self.log_path = env.path("%s.log" % name)
        cmd = [os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "local"),
               os.path.join(REPO, "playbooks", playbook), "-e", "@" + env.vars_file, "-e", json.dumps(extra)]
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(PYTHONUNBUFFERED="1"), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self):
        """Whatever the run left behind in its session (forked workers, a module half way) is ended."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Traffic:
    """scripts/traffic.py in the background against the test LB: keep-alive GET clients that never retry.

    Bounded by --seconds; stopped with SIGTERM on exit, when it prints its summary (ok, failed, status).
    """

    def __init__(self, env, rate=40, seconds=120, connections=4):
        self.cmd = [sys.executable, os.path.join(REPO, "scripts", "traffic.py"), "--url", env.lb_url,
                    "--rate", str(rate), "--seconds", str(seconds), "--connections", str(connections)]
        self.proc = None
        self.summary = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # let every connection make its first requests before anything moves
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.summary = json.loads(lines[-1]) if lines else {"ok": 0, "failed": -1, "error": err[-2000:]}


def wait_for(predicate, timeout=10.0, interval=0.05):
    """The predicate's first truthy value within `timeout` seconds, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def live_env(tmp_path_factory, artifact_dir):
    """The worker's one environment, brought up by site.yml once, torn down at the end of the session."""
    env = LocalEnv(str(tmp_path_factory.mktemp("run")), artifact_dir)
    try:
        env.playbook("site.yml")
        env.capture_baseline()
        yield env
    finally:
        env.stop()
        # Logs of a failed run help more than a clean tmp dir.
        if not os.environ.get("LEANVIBE_KEEP_RUN"):
            shutil.rmtree(env.run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def local_env(live_env):
    """The session environment, at the baseline when the module starts (whatever ran before it)."""
    live_env.reset()
    return live_env


@pytest.fixture
def baseline_env(local_env):
    """The session environment at the baseline when the test starts: BASELINE_VERSION on blue at 100 %, green
    stopped, a ledger of one release. Cheap when the test before it left it so (most refusals do)."""
    local_env.reset()
    return local_env


@pytest.fixture
def unchanged(local_env):
    """Asserts after the test that nothing it could touch moved (LocalEnv.observe)."""
    before = local_env.observe()
    yield
    local_env.assert_unchanged(before)


# Fixtures that bring up or use real processes: a test that asks for one is `live` (pytest.ini's markers).
LIVE_FIXTURES = {"live_env", "local_env", "baseline_env", "monitored_env", "services"}


def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & LIVE_FIXTURES:
            item.add_marker(pytest.mark.live)
        if "chromium" in fixtures:
            item.add_marker(pytest.mark.browser)
