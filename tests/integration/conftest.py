"""Integration fixtures: a real local environment (nginx, supervisord, demo slots) on test ports.

Tests drive the real playbooks against inventories/local with extra vars that move
every runtime file under a temp folder and every port off the ones `make demo` uses.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# Off the ports of `make demo` (8000, 9001, 9002). LEANVIBE_TEST_PORT_BASE lets two test runs share a machine.
PORT_BASE = int(os.environ.get("LEANVIBE_TEST_PORT_BASE", "18000"))
LB_PORT = PORT_BASE
SLOT_PORTS = {"blue": PORT_BASE + 1, "green": PORT_BASE + 2}


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
    def __init__(self, run_dir, artifact_dir):
        self.run_dir = run_dir
        self.lb_url = "http://127.0.0.1:%d" % LB_PORT
        self.extra_vars = {
            "leanvibe_run_dir": run_dir,
            "lb_listen": "127.0.0.1:%d" % LB_PORT,
            "app_ports": SLOT_PORTS,
            "app_artifact_dir": artifact_dir,
            "app_drain_timeout": 5,
        }
        self.vars_file = os.path.join(run_dir, "test-vars.json")
        os.makedirs(run_dir, exist_ok=True)
        with open(self.vars_file, "w", encoding="utf-8") as handle:
            json.dump(self.extra_vars, handle)

    def playbook(self, name, *extra_args, check=True, timeout=300):
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="results_json",
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "tests", "integration", "callback_plugins"),
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_NOCOLOR="1")
        path = os.path.join(REPO, name if "/" in name else os.path.join("playbooks", name))
        cmd = [os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "local"),
               path, "-e", "@" + self.vars_file] + list(extra_args)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        run = PlaybookRun(proc)
        if check and run.rc != 0:
            raise AssertionError("%s failed (rc=%d): %s\n%s" % (name, run.rc, run.failure_messages(), proc.stderr[-3000:]))
        return run

    def module(self, host, module, args):
        """An ad-hoc module call: (rc, one-line output)."""
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        cmd = [os.path.join(BIN, "ansible"), host, "-i", os.path.join(REPO, "inventories", "local"), "-e", "@" + self.vars_file,
               "-o", "-m", module, "-a", json.dumps(args)]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def get_json(self, url, timeout=5):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())

    def served_version(self):
        return self.get_json(self.lb_url + "/health")["version"]

    def slot_version(self, color):
        return self.get_json("http://127.0.0.1:%d/health" % SLOT_PORTS[color])["version"]

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def snapshot(self):
        """Bytes of every nginx config file and the deploy state: what bad input must not change."""
        files = {}
        for folder in (self.path("nginx", "conf"), self.path("state"), self.path("app", "slots")):
            for root, _dirs, names in os.walk(folder):
                for name in names:
                    full = os.path.join(root, name)
                    if not os.path.islink(full):
                        with open(full, "rb") as handle:
                            files[full] = handle.read()
        return files

    def stop(self):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "stop_local.py"), self.run_dir], check=False, capture_output=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long integration test; it still runs in `make test`")


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def local_env(tmp_path_factory, artifact_dir):
    """An environment brought up by site.yml (1.0.0 on blue), torn down after the module's tests."""
    env = LocalEnv(str(tmp_path_factory.mktemp("run")), artifact_dir)
    try:
        env.playbook("site.yml")
        yield env
    finally:
        env.stop()
        # Logs of a failed run help more than a clean tmp dir.
        if not os.environ.get("LEANVIBE_KEEP_RUN"):
            shutil.rmtree(env.run_dir, ignore_errors=True)


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
