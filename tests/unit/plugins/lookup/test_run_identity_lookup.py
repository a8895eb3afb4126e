"""The run_identity lookup: the main ansible-playbook process found by walking a (fake) /proc tree."""

import os
import re

import pytest
from ansible.errors import AnsibleError
from ledger_test_helpers import BTIME, PLAYBOOK, FakeProc

from ansible_collections.leanvibe.deploy.plugins.lookup import run_identity as plugin
from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import holder_alive_locally, main_process, proc_stat, run_id_for, run_identity
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso_from_epoch


@pytest.fixture
def proc(tmp_path):
    fake = FakeProc(tmp_path / "proc")
    fake.add(1, 0, 1, b"/sbin/init\0")
    fake.add(100, 1, 500, b"-bash\0", comm="bash")
    fake.add(200, 100, 12345, PLAYBOOK, comm="ans) ible (x")  # ')' and spaces in the command name
    fake.add(201, 200, 12400, PLAYBOOK)       # a forked worker
    fake.add(202, 201, 12410, PLAYBOOK)       # a worker's fork
    fake.add(300, 202, 12500, b"/bin/sh\0-c\0true\0", comm="sh")  # a command a worker runs
    return fake


def test_proc_stat_reads_ppid_and_start_time_after_the_last_parenthesis(proc):
    assert proc_stat(200, proc.path) == (100, 12345)
    assert proc_stat(999, proc.path) is None


@pytest.mark.parametrize("start,expected", [(202, 200), (201, 200), (200, 200), (300, 300), (100, 100)])
def test_walk_stops_at_the_top_process_with_the_same_cmdline(proc, start, expected):
    assert main_process(start, proc.path) == expected


def test_walk_stops_below_init_and_at_an_unreadable_parent(proc):
    proc.add(400, 1, 9, PLAYBOOK)
    proc.add(401, 400, 10, PLAYBOOK)
    assert main_process(401, proc.path) == 400
    proc.add(500, 777, 11, PLAYBOOK)  # parent 777 vanished
    assert main_process(500, proc.path) == 500


def test_every_worker_gets_the_same_identity(proc):
    identities = [run_identity(proc.path, pid=pid, hostname="ctl") for pid in (200, 201, 202)]
    assert identities[0] == identities[1] == identities[2]
    identity = identities[0]
    assert identity["pid"] == 200
    assert identity["controller"] == "ctl"
    assert identity["run_id"] == run_id_for(200, 12345, "9c1f-boot", "ctl")
    assert re.fullmatch(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", identity["run_id"])  # uuid4 shaped
    hertz = os.sysconf("SC_CLK_TCK")
    expected = iso_from_epoch(BTIME + 12345.0 / hertz)
    assert identity["started"] == expected
    assert identity["user"]


def test_another_run_or_a_recycled_pid_gets_another_id(proc):
    first = run_identity(proc.path, pid=202, hostname="ctl")
    proc.add(600, 100, 99999, PLAYBOOK)
    assert run_identity(proc.path, pid=600, hostname="ctl")["run_id"] != first["run_id"]
    assert run_id_for(200, 12346, "9c1f-boot", "ctl") != first["run_id"]  # same pid, later start
    assert run_id_for(200, 12345, "other-boot", "ctl") != first["run_id"]  # same pid after a reboot


def test_the_identity_of_a_live_run_is_alive(proc):
    identity = run_identity(proc.path, pid=202, hostname="ctl")
    assert holder_alive_locally(identity, proc.path, hostname="ctl") is True


def test_lookup_returns_one_identity_walking_from_its_own_process(proc, monkeypatch):
    proc.add(os.getpid(), 202, 13000, PLAYBOOK)  # this test process as a worker of the fake run
    monkeypatch.setattr(plugin, "PROC_ROOT", proc.path)
    result = plugin.LookupModule().run([], {})
    assert len(result) == 1
    assert result[0]["pid"] == 200
    assert result[0]["run_id"] == run_id_for(200, 12345, "9c1f-boot", result[0]["controller"])
    assert sorted(result[0]) == ["controller", "pid", "run_id", "started", "user"]


def test_lookup_on_the_real_proc_is_stable():
    lookup = plugin.LookupModule()
    first, second = lookup.run([], {})[0], lookup.run([], {})[0]
    assert first == second
    assert holder_alive_locally(first) is True


def test_lookup_refuses_terms():
    with pytest.raises(AnsibleError, match="takes no terms"):
        plugin.LookupModule().run(["x"], {})


def test_without_proc_the_process_group_stands_for_the_run(tmp_path):
    identity = run_identity(str(tmp_path / "no-proc"), hostname="ctl")
    assert identity["pid"] == os.getpgid(0)
    assert identity["started"] is None
    assert identity == run_identity(str(tmp_path / "no-proc"), hostname="ctl")
