"""Shared by the ledger unit tests: two lock holders, a fixed clock and short ways to run actions and read the file."""

import datetime
import json
import os

from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger

T0 = datetime.datetime(2026, 11, 27, 4, 58, 12, 345000, tzinfo=datetime.timezone.utc)
ALICE = {"run_id": "a1" * 16, "controller": "ctl", "pid": 1234, "user": "alice"}
BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}
PLAYBOOK = b"/venv/bin/python3\0/venv/bin/ansible-playbook\0playbooks/canary.yml\0-i\0inventories/local\0"
BTIME = 1795000000


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def new_ledger(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    return Ledger(str(folder / "demo.ledger.json"), "demo", "local")


def act(ledger, action, now=None, check_mode=False, **params):
    return run_action(ledger, action, params, check_mode=check_mode, now=now or T0)


def raw(ledger):
    with open(ledger.path, "rb") as handle:
        return handle.read()


def on_disk(ledger):
    return json.loads(raw(ledger).decode("utf-8"))


def folder_names(ledger):
    return sorted(os.listdir(ledger.folder))


def begin_deploy(ledger, holder=None, now=None, version="2.0.0", from_version="1.0.0"):
    return act(ledger, "begin", now=now, holder=holder or ALICE,
               deployment={"type": "deploy", "version": version, "from_version": from_version, "canary_color": "green"})


class FakeProc:
    """A /proc tree in tmp_path: stat (with a tricky command name), cmdline, btime and boot_id."""

    def __init__(self, root):
        self.root = root
        (root / "sys" / "kernel" / "random").mkdir(parents=True)
        (root / "sys" / "kernel" / "random" / "boot_id").write_text("9c1f-boot\n")
        (root / "stat").write_text("cpu  1 2 3 4\nintr 0\nbtime %d\nprocesses 42\n" % BTIME)

    def add(self, pid, ppid, ticks, cmdline, comm="ansible-playboo"):
        folder = self.root / str(pid)
        folder.mkdir()
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(ticks), "0", "0"]
        (folder / "stat").write_text("%d (%s) %s\n" % (pid, comm, " ".join(fields)))
        (folder / "cmdline").write_bytes(cmdline)

    @property
    def path(self):
        return str(self.root)
