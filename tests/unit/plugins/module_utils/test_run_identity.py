"""The run identity (module_utils/run_identity.py): whether the holder of a lock still runs."""

from ansible_collections.leanvibe.deploy.plugins.module_utils.run_identity import holder_alive_locally, run_id_for, run_identity


def _fake_proc(root, pid, ppid, ticks, cmdline=b"python\0ansible-playbook\0site.yml\0"):
    folder = root / str(pid)
    folder.mkdir(parents=True)
    (folder / "stat").write_text("%d (python3) S %d 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n" % (pid, ppid, ticks))
    (folder / "cmdline").write_bytes(cmdline)


def test_holder_alive_locally_on_a_fake_proc(tmp_path):
    root = tmp_path / "proc"
    (root / "sys" / "kernel" / "random").mkdir(parents=True)
    (root / "sys" / "kernel" / "random" / "boot_id").write_text("boot-1\n")
    (root / "stat").write_text("cpu 1 2 3\nbtime 1795000000\n")
    _fake_proc(root, 200, 100, 5000)
    holder = {"run_id": run_id_for(200, 5000, "boot-1", "ctl"), "controller": "ctl", "pid": 200, "user": "u"}
    assert holder_alive_locally(holder, str(root), hostname="ctl") is True
    assert holder_alive_locally(dict(holder, run_id=run_id_for(200, 4000, "boot-1", "ctl")), str(root), hostname="ctl") is False
    assert holder_alive_locally(dict(holder, pid=201), str(root), hostname="ctl") is False
    assert holder_alive_locally(holder, str(root), hostname="elsewhere") is None
    assert holder_alive_locally(dict(holder, pid=None), str(root), hostname="ctl") is False


def test_holder_alive_locally_for_this_process():
    identity = run_identity()
    assert holder_alive_locally(identity) is True
