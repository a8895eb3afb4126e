"""The run_alive lookup: a lock holder whose pid now runs another, later process is dead."""

import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleError
from ledger_test_helpers import PLAYBOOK, FakeProc

from ansible_collections.leanvibe.deploy.plugins.lookup import run_alive as plugin
from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import run_identity


@pytest.fixture
def proc(tmp_path, monkeypatch):
    fake = FakeProc(tmp_path / "proc")
    fake.add(1, 0, 1, b"/sbin/init\0")
    fake.add(200, 1, 12345, PLAYBOOK)
    monkeypatch.setattr(plugin, "PROC_ROOT", fake.path)
    return fake


def alive(holder):
    return plugin.LookupModule().run([holder], {})[0]


def test_the_holder_that_still_runs_is_alive(proc):
    holder = run_identity(proc.path, pid=200)
    assert alive(holder) is True


def test_a_reused_pid_is_dead(proc, tmp_path):
    holder = run_identity(proc.path, pid=200)
    # The run ends; a later process gets pid 200 (it started at another tick), as /proc/200 still exists.
    (tmp_path / "proc" / "200" / "stat").unlink()
    (tmp_path / "proc" / "200" / "cmdline").unlink()
    (tmp_path / "proc" / "200").rmdir()
    proc.add(200, 1, 99999, b"/usr/bin/sleep\x0060\x00", comm="sleep")
    assert os.path.exists(os.path.join(proc.path, "200"))  # what the old /proc/<pid> test looked at
    assert alive(holder) is False


def test_a_gone_pid_is_dead_and_another_controller_is_unknown(proc):
    holder = run_identity(proc.path, pid=200)
    assert alive(dict(holder, pid=201)) is False
    assert alive(dict(holder, controller="elsewhere")) is None


def test_a_real_reused_pid_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holder = run_identity(pid=child.pid)
        assert plugin.LookupModule().run([holder], {})[0] is True
        # Same pid, an identity recorded for a process that started earlier: what a reused pid looks like.
        dead = run_identity(pid=os.getpid())
        assert plugin.LookupModule().run([dict(holder, run_id=dead["run_id"])], {})[0] is False
    finally:
        child.kill()
        child.wait()
    assert plugin.LookupModule().run([holder], {})[0] is False


@pytest.mark.parametrize("terms", [[], ["x"], [{"run_id": "a"}, {"run_id": "b"}]])
def test_one_holder_mapping_is_required(terms):
    with pytest.raises(AnsibleError, match="takes one term, the lock holder"):
        plugin.LookupModule().run(terms, {})
