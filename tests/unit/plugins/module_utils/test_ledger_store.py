"""The ledger file (module_utils/ledger_store.py): reads, refusals of corrupt files, atomic writes under flock."""

import fcntl
import json
import multiprocessing
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from ledger_test_helpers import ALICE, act, begin_deploy, folder_names, new_ledger, on_disk, raw

from ansible_collections.leanvibe.deploy.plugins.module_utils import common as common_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils import ledger_store as store_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_actions import run_action
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_store import Ledger


def test_missing_folder_fails_clearly(tmp_path):
    ledger = Ledger(str(tmp_path / "nowhere" / "demo.ledger.json"), "demo", "local")
    for action, params in (("info", {}), ("lock", {"holder": ALICE})):
        with pytest.raises(LedgerError, match=r"^folder .*/nowhere of ledger .*/nowhere/demo.ledger.json does not exist"):
            act(ledger, action, **params)
    assert not (tmp_path / "nowhere").exists()


def test_read_only_folder_fails_clearly(ledger, monkeypatch):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    real_access = os.access
    monkeypatch.setattr(store_mod.os, "access", lambda path, mode: False if path == ledger.folder else real_access(path, mode))
    with pytest.raises(LedgerError, match=r"^folder .* of ledger .* is not writable by this user\.$"):
        act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    assert raw(ledger) == before


def test_folder_on_a_read_only_file_system_says_so(ledger, monkeypatch):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    real_access, real_statvfs = os.access, os.statvfs

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(store_mod.os, "access", lambda path, mode: False if path == ledger.folder else real_access(path, mode))
    monkeypatch.setattr(store_mod.os, "statvfs", lambda path: ReadOnly() if path == ledger.folder else real_statvfs(path))
    with pytest.raises(LedgerError, match=r"^folder .* of ledger .* is on a read-only file system, so the ledger cannot be written\.$"):
        act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    assert raw(ledger) == before


# Root writes into any folder whatever its mode: as root, the write is tried by a child process that runs as user nobody.
NOBODY = 65534


def run_as_a_user_the_mode_stops(function):
    """function() in a forked child, as user nobody when this process is root -> (euid, what function raised or None)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                function()
                raised = None
            except BaseException as exc:
                raised = "%s: %s" % (type(exc).__name__, exc)
            os.write(write_fd, json.dumps([os.geteuid(), raised]).encode("utf-8"))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, (status, data)
    return json.loads(data.decode("utf-8"))


@pytest.fixture
def reachable_ledger():
    """A ledger in a folder that user nobody can reach too (pytest's tmp_path is 0700 to its owner)."""
    root = tempfile.mkdtemp(prefix="leanvibe-ledger-")
    os.chmod(root, 0o755)
    try:
        yield new_ledger(Path(root))
    finally:
        os.chmod(os.path.join(root, "state"), 0o755)
        shutil.rmtree(root)


def test_really_read_only_folder_fails_clearly(reachable_ledger):
    ledger = reachable_ledger
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    os.chmod(ledger.folder, 0o555)
    try:
        euid, raised = run_as_a_user_the_mode_stops(
            lambda: act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed"))
    finally:
        os.chmod(ledger.folder, 0o755)
    assert euid != 0
    assert raised == "LedgerError: folder %s of ledger %s is not writable by this user." % (ledger.folder, ledger.path)
    assert raw(ledger) == before
    assert folder_names(ledger) == ["demo.ledger.json", "demo.ledger.json.lock"]


@pytest.mark.parametrize("content,detail", [
    (b"{", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"schema": 2}', "schema is 2, not 1"),
    (b'\xff\xfe{}', "not UTF-8"),
    (json.dumps({"schema": 1, "app": "demo", "environment": "local", "active_color": "red", "versions": {},
                 "weights": {}, "in_progress": None, "lock": None, "history": []}).encode(), "active_color 'red'"),
    (json.dumps({"schema": 1, "app": "demo", "environment": "local", "active_color": None, "versions": {},
                 "weights": {"blue": "100"}, "in_progress": None, "lock": None, "history": []}).encode(), "weight of blue"),
    (json.dumps({"schema": 1, "app": "demo", "environment": "local", "active_color": None, "versions": {},
                 "weights": {}, "in_progress": None, "lock": None, "history": {}}).encode(), "history is not a list"),
])
def test_corrupt_ledger_is_refused_and_untouched(ledger, content, detail):
    with open(ledger.path, "wb") as handle:
        handle.write(content)
    for action, params in (("info", {}), ("lock", {"holder": ALICE}),
                           ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed"})):
        with pytest.raises(LedgerError) as exc:
            act(ledger, action, **params)
        message = str(exc.value)
        assert message.startswith("ledger %s is corrupt (" % ledger.path)
        assert message.endswith("); fix it or move it away.")
        assert detail in message
        assert "\n" not in message
        assert raw(ledger) == content
    assert folder_names(ledger) == ["demo.ledger.json", "demo.ledger.json.lock"]


def test_ledger_of_another_app_is_refused(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    other = Ledger(ledger.path, "shop", "local")
    with pytest.raises(LedgerError, match="belongs to app demo in local, not to shop in local"):
        act(other, "info")


def test_writes_leave_no_temp_files_and_mode_0640(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed", active_color="blue",
        versions={"blue": "1.0.0"}, weights={"blue": 100})
    act(ledger, "lock", holder=ALICE)
    begin_deploy(ledger)
    assert folder_names(ledger) == ["demo.ledger.json", "demo.ledger.json.lock"]
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o640
    assert raw(ledger).endswith(b"\n")


def test_failure_mid_write_leaves_the_old_file_byte_identical(ledger, monkeypatch):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common_mod.os, "replace", broken_replace)
    with pytest.raises(LedgerError, match=r"^could not write ledger .*: No space left on device\.$"):
        act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    monkeypatch.undo()
    assert raw(ledger) == before
    assert folder_names(ledger) == ["demo.ledger.json", "demo.ledger.json.lock"]


def test_exception_in_the_change_writes_nothing(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)

    def change(doc):
        doc["active_color"] = "green"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ledger.update(change)
    assert raw(ledger) == before


def _append_entries(path, worker, count):
    target = Ledger(path, "demo", "local")
    for index in range(count):
        run_action(target, "record", {"deployment": {"version": "%d.0.%d" % (worker, index)}, "outcome": "deployed",
                                      "versions": {"blue": "%d.0.%d" % (worker, index)}})


def test_two_processes_appending_50_entries_each_leave_100(ledger):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_entries, args=(ledger.path, worker, 50)) for worker in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    history = on_disk(ledger)["history"]
    assert len(history) == 100
    assert sorted(entry["version"] for entry in history) == sorted("%d.0.%d" % (w, i) for w in (1, 2) for i in range(50))
    assert len(set(entry["id"] for entry in history)) == 100
    assert folder_names(ledger) == ["demo.ledger.json", "demo.ledger.json.lock"]


def test_writer_waits_for_the_flock_and_gives_up_with_a_sentence(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    impatient = Ledger(ledger.path, "demo", "local", lock_wait_s=0.2)
    fd = os.open(ledger.lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LedgerError, match=r"^could not lock ledger .* within 0.2 s: another task keeps .*\.lock locked\.$"):
            act(impatient, "record", deployment={"version": "2.0.0"}, outcome="deployed")
        fcntl.flock(fd, fcntl.LOCK_UN)
        fcntl.flock(fd, fcntl.LOCK_SH)  # readers share
        assert act(impatient, "info")["ledger"]["history"][0]["version"] == "1.0.0"
    finally:
        os.close(fd)


def test_bad_app_or_environment_or_path():
    with pytest.raises(ValidationError, match="app 'Demo' is not valid"):
        Ledger("/tmp/x.json", "Demo", "local")
    with pytest.raises(ValidationError, match="environment 'a b' is not valid"):
        Ledger("/tmp/x.json", "demo", "a b")
    with pytest.raises(ValidationError, match="ledger path must be absolute"):
        Ledger("x.json", "demo", "local")


def test_a_change_that_would_make_the_ledger_invalid_is_not_written(ledger):
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)

    def corrupting(doc):
        doc["versions"]["blue"] = 2.0  # what check_document refuses on the next read

    with pytest.raises(LedgerError, match=r"^ledger .*demo.ledger.json was not written: the change would make it invalid "
                                          r"\(version of blue is not a string\)\.$"):
        ledger.update(corrupting)
    assert raw(ledger) == before
