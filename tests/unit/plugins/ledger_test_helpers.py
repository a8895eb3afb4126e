"""Shared by the ledger unit tests: two lock holders, a fixed clock and short ways to run actions and read the file."""

import datetime
import json
import os

from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger

T0 = datetime.datetime(2026, 11, 27, 4, 58, 12, 345000, tzinfo=datetime.timezone.utc)
ALICE = {"run_id": "a1" * 16, "controller": "ctl", "pid": 1234, "user": "alice"}
BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}


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
