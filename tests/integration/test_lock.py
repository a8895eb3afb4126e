"""playbooks/tasks/lock.yml with real processes: a lock whose holder's pid now runs another process is taken over.

The holder of a lock is the main ansible-playbook process of a run, named by its pid and by a run id derived from
that process's start time. When that run is gone and the kernel gives its pid to a later process, /proc/<pid> exists
again; the lock must still count as dead, while a holder that really runs keeps it.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import BIN, REPO, ansible_env

sys.path.insert(0, os.path.join(REPO, ".collections"))
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action  # noqa: E402
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger  # noqa: E402
from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import run_identity  # noqa: E402

# Real processes on loopback (pytest.ini's markers).
pytestmark = pytest.mark.live

pytestmark = pytest.mark.live


def sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def take_lock(ledger_path):
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", os.path.join(REPO, "tests", "integration", "playbooks", "take_lock.yml"),
           "-e", json.dumps({"ledger_path": ledger_path, "ansible_python_interpreter": sys.executable})]
    return subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def ledger(tmp_path):
    (tmp_path / "state").mkdir()
    return Ledger(str(tmp_path / "state" / "demo.ledger.json"), "demo", "local")


def locked_by(ledger, holder):
    run_action(ledger, "lock", {"holder": holder})
    return holder


def test_a_holder_whose_pid_was_reused_is_dead_and_its_lock_is_taken_over(ledger):
    # A run that ran and ended: its identity, as the ledger recorded it.
    ended = sleeper()
    dead_run = run_identity(pid=ended.pid)
    ended.kill()
    ended.wait()
    reuser = sleeper()  # the later process that now has the holder's pid
    try:
        holder = locked_by(ledger, dict(dead_run, pid=reuser.pid))
        assert os.path.exists("/proc/%d" % reuser.pid)  # the old /proc/<pid> check took this for a live run
        run = take_lock(ledger.path)  # the lock is seconds old, not stale, and no force: only holder_dead takes it
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        taken = json.loads(open(ledger.path, "rb").read())["lock"]["holder"]
        assert taken["run_id"] != holder["run_id"] and taken["pid"] not in (reuser.pid, None)
        assert reuser.poll() is None  # the process with the reused pid was left alone
    finally:
        reuser.kill()
        reuser.wait()


def test_a_holder_that_still_runs_keeps_its_lock(ledger):
    alive = sleeper()
    try:
        holder = locked_by(ledger, run_identity(pid=alive.pid))
        before = open(ledger.path, "rb").read()
        run = take_lock(ledger.path)
        assert run.returncode != 0
        assert "is held by run %s (pid %d" % (holder["run_id"], alive.pid) in run.stdout
        assert open(ledger.path, "rb").read() == before
    finally:
        alive.kill()
        alive.wait()


def test_a_holder_whose_process_is_gone_is_dead(ledger):
    gone = sleeper()
    holder = run_identity(pid=gone.pid)
    gone.kill()
    gone.wait()
    locked_by(ledger, holder)
    run = take_lock(ledger.path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
