"""The deployment ledger (module_utils/ledger.py): atomic writes under flock, the lock, begin/step/finish/record."""

import datetime
import fcntl
import json
import multiprocessing
import os
import re
import stat

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import common as common_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils import ledger as ledger_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger import (
    Ledger,
    LedgerError,
    LockConflict,
    holder_alive_locally,
    iso,
    new_id,
    parse_iso,
    run_action,
    run_id_for,
)

T0 = datetime.datetime(2026, 11, 27, 4, 58, 12, 345000, tzinfo=datetime.timezone.utc)
ALICE = {"run_id": "a1" * 16, "controller": "ctl", "pid": 1234, "user": "alice"}
BOB = {"run_id": "b2" * 16, "controller": "ctl2", "pid": 4321, "user": "bob"}


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture
def ledger(tmp_path):
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


# --- times and ids --------------------------------------------------------------------------------------------------

def test_iso_has_milliseconds_and_z():
    assert iso(T0) == "2026-11-27T04:58:12.345Z"
    assert parse_iso("2026-11-27T04:58:12.345Z") == T0
    assert parse_iso("2026-11-27T05:58:12.345+01:00") == T0


def test_ids_sort_by_time():
    first, second = new_id(at(0)), new_id(at(1))
    assert re.fullmatch(r"20261127T045812Z-[0-9a-f]{6}", first)
    assert first < second


# --- reading --------------------------------------------------------------------------------------------------------

def test_info_on_missing_ledger_is_empty_and_writes_nothing(ledger):
    result = act(ledger, "info")
    assert result["changed"] is False
    assert result["ledger"] == {"schema": 1, "app": "demo", "environment": "local", "active_color": None, "versions": {},
                                "weights": {}, "in_progress": None, "lock": None, "history": []}
    assert result["lock"] is None and result["in_progress"] is None
    assert "no ledger yet" in result["msg"]
    assert folder_names(ledger) == []


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
    monkeypatch.setattr(ledger_mod.os, "access", lambda path, mode: False if path == ledger.folder else real_access(path, mode))
    with pytest.raises(LedgerError, match=r"^folder .* of ledger .* is not writable by this user\.$"):
        act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    assert raw(ledger) == before


def test_folder_on_a_read_only_file_system_says_so(ledger, monkeypatch):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    real_access, real_statvfs = os.access, os.statvfs

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(ledger_mod.os, "access", lambda path, mode: False if path == ledger.folder else real_access(path, mode))
    monkeypatch.setattr(ledger_mod.os, "statvfs", lambda path: ReadOnly() if path == ledger.folder else real_statvfs(path))
    with pytest.raises(LedgerError, match=r"^folder .* of ledger .* is on a read-only file system, so the ledger cannot be written\.$"):
        act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    assert raw(ledger) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_really_read_only_folder_fails_clearly(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    os.chmod(ledger.folder, 0o555)
    try:
        with pytest.raises(LedgerError, match="is not writable"):
            act(ledger, "record", deployment={"version": "2.0.0"}, outcome="deployed")
    finally:
        os.chmod(ledger.folder, 0o755)
    assert raw(ledger) == before


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


def test_history_limit_keeps_the_newest_last(ledger):
    for index in range(5):
        act(ledger, "record", now=at(index), deployment={"version": "1.0.%d" % index}, outcome="deployed")
    result = act(ledger, "info", history_limit=2)
    assert [entry["version"] for entry in result["ledger"]["history"]] == ["1.0.3", "1.0.4"]
    assert act(ledger, "info", history_limit=0)["ledger"]["history"] == []
    assert len(on_disk(ledger)["history"]) == 5


# --- atomic writes and flock ----------------------------------------------------------------------------------------

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


# --- the deploy lock ------------------------------------------------------------------------------------------------

def test_lock_and_unlock_are_not_changes(ledger):
    result = act(ledger, "lock", holder=ALICE, stale_after_s=600)
    assert result["changed"] is False
    assert result["lock"] == {"holder": ALICE, "acquired": iso(T0), "heartbeat": iso(T0), "stale_after_s": 600}
    assert on_disk(ledger)["lock"]["holder"] == ALICE
    assert result["msg"].startswith("deployment lock of demo in local held by run %s" % ALICE["run_id"])
    result = act(ledger, "unlock", holder=ALICE)
    assert result["changed"] is False
    assert result["lock"] is None and on_disk(ledger)["lock"] is None


def test_same_holder_refreshes_the_heartbeat(ledger):
    act(ledger, "lock", holder=ALICE)
    result = act(ledger, "lock", now=at(60), holder=ALICE)
    assert result["lock"]["acquired"] == iso(T0)
    assert result["lock"]["heartbeat"] == iso(at(60))
    assert result["taken_over_from"] is None


def test_lock_conflict_names_the_holder(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    before = raw(ledger)
    with pytest.raises(LockConflict) as exc:
        act(ledger, "lock", now=at(60), holder=BOB)
    assert str(exc.value) == (
        "deployment lock of demo in local is held by run %s (pid 1234 on host ctl, user alice) since "
        "2026-11-27T04:58:12.345Z; it goes stale at 2026-11-27T05:13:12.345Z; wait, or re-run with force=true."
        % ALICE["run_id"])
    assert exc.value.lock["holder"] == ALICE
    assert raw(ledger) == before


def test_stale_lock_is_taken_over(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    with pytest.raises(LockConflict):
        act(ledger, "lock", now=at(900), holder=BOB)  # exactly at the limit: not stale yet
    result = act(ledger, "lock", now=at(901), holder=BOB)
    assert result["lock"]["holder"] == BOB
    assert result["taken_over_from"] == ALICE
    assert "taken over from run %s" % ALICE["run_id"] in result["msg"]


def test_heartbeat_postpones_staleness(ledger):
    act(ledger, "lock", holder=ALICE, stale_after_s=900)
    act(ledger, "lock", now=at(800), holder=ALICE)
    with pytest.raises(LockConflict, match="goes stale at 2026-11-27T05:26:32.345Z"):
        act(ledger, "lock", now=at(1000), holder=BOB)


@pytest.mark.parametrize("flag", ["holder_dead", "force"])
def test_holder_dead_or_force_takes_over(ledger, flag):
    act(ledger, "lock", holder=ALICE)
    result = act(ledger, "lock", now=at(5), holder=BOB, **{flag: True})
    assert result["lock"]["holder"] == BOB
    assert result["lock"]["acquired"] == iso(at(5))


def test_unlock_of_another_runs_lock_is_left_alone(ledger):
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)
    result = act(ledger, "unlock", holder=BOB)
    assert result["changed"] is False
    assert result["lock"]["holder"] == ALICE
    assert "not by run %s" % BOB["run_id"] in result["warning"]
    assert raw(ledger) == before


def test_unlock_of_a_missing_ledger_writes_nothing(ledger):
    result = act(ledger, "unlock", holder=ALICE)
    assert result["msg"] == "deployment lock of demo in local was not held; nothing to release."
    assert folder_names(ledger) == ["demo.ledger.json.lock"]


# --- begin, step, finish, record ------------------------------------------------------------------------------------

def test_begin_needs_the_lock(ledger):
    with pytest.raises(LedgerError, match=r"^begin needs the deployment lock of demo in local, which nobody holds; "
                                          r"take it first with action=lock\.$"):
        begin_deploy(ledger)
    act(ledger, "lock", holder=BOB)
    before = raw(ledger)
    with pytest.raises(LockConflict, match="^begin needs the deployment lock of demo in local, but it is held by run %s"
                       % BOB["run_id"]):
        begin_deploy(ledger)
    assert raw(ledger) == before


def test_begin_step_finish_makes_one_history_entry(ledger):
    act(ledger, "lock", holder=ALICE)
    result = begin_deploy(ledger)
    assert result["changed"] is True
    current = result["in_progress"]
    assert current["version"] == "2.0.0" and current["from_version"] == "1.0.0" and current["canary_color"] == "green"
    assert current["holder"] == ALICE and current["steps"] == [] and current["started"] == iso(T0)
    assert result["interrupted"] is None
    step = act(ledger, "step", now=at(60), holder=ALICE,
               step={"weight": "10", "verdicts": {"analysis": "pass"}, "probes": "pass"})
    assert step["changed"] is True
    assert step["step"] == {"weight": 10, "at": iso(at(60)), "verdicts": {"analysis": "pass", "probes": "pass"}}
    assert step["lock"]["heartbeat"] == iso(at(60))
    done = act(ledger, "finish", now=at(125.5), holder=ALICE, outcome="promoted", reasons=["all steps passed"],
               active_color="green", versions={"green": "2.0.0"}, weights={"green": 100})
    assert done["changed"] is True
    entry = done["entry"]
    assert entry == {"id": current["id"], "environment": "local", "version": "2.0.0", "from_version": "1.0.0",
                     "type": "deploy", "started": iso(T0), "finished": iso(at(125.5)), "duration_s": 125.5,
                     "outcome": "promoted", "reasons": ["all steps passed"], "autonomous": True,
                     "run_id": ALICE["run_id"], "steps": [step["step"]]}
    doc = on_disk(ledger)
    assert doc["in_progress"] is None
    assert doc["history"] == [entry]
    assert (doc["active_color"], doc["versions"], doc["weights"]) == ("green", {"green": "2.0.0"}, {"blue": 0, "green": 100})
    assert doc["lock"]["holder"] == ALICE  # finish does not release the lock


def test_begin_closes_an_interrupted_deployment_into_history(ledger):
    act(ledger, "lock", holder=ALICE)
    first = begin_deploy(ledger)["in_progress"]
    act(ledger, "step", now=at(10), holder=ALICE, step={"weight": 10})
    act(ledger, "step", now=at(20), holder=ALICE, step={"weight": 25})
    act(ledger, "lock", now=at(30), holder=BOB, holder_dead=True)
    result = begin_deploy(ledger, holder=BOB, now=at(40), version="2.0.1")
    interrupted = result["interrupted"]
    assert interrupted["id"] == first["id"]
    assert interrupted["outcome"] == "interrupted"
    assert interrupted["reasons"] == ["run %s stopped without finishing, after step 2 (weight 25 %%) passed its gate" % ALICE["run_id"]]
    assert interrupted["duration_s"] == 40.0
    assert [step["weight"] for step in interrupted["steps"]] == [10, 25]
    doc = on_disk(ledger)
    assert doc["history"] == [interrupted]
    assert doc["in_progress"]["version"] == "2.0.1" and doc["in_progress"]["holder"] == BOB
    assert "closed as interrupted" in result["msg"]


def test_interrupted_before_any_step(ledger):
    act(ledger, "lock", holder=ALICE)
    begin_deploy(ledger)
    result = begin_deploy(ledger, now=at(1))
    assert result["interrupted"]["reasons"] == ["run %s stopped without finishing, before any step passed its gate" % ALICE["run_id"]]


def test_step_and_finish_need_a_deployment_in_progress(ledger):
    act(ledger, "lock", holder=ALICE)
    with pytest.raises(LedgerError, match="^step needs a deployment in progress of demo in local"):
        act(ledger, "step", holder=ALICE, step={"weight": 10})
    before = raw(ledger)
    with pytest.raises(LedgerError, match=r"^finish needs a deployment in progress of demo in local, and there is none\.$"):
        act(ledger, "finish", holder=ALICE, outcome="promoted")
    assert raw(ledger) == before


def test_taken_over_run_cannot_finish(ledger):
    act(ledger, "lock", holder=ALICE)
    begin_deploy(ledger)
    act(ledger, "lock", now=at(1), holder=BOB, force=True)
    with pytest.raises(LockConflict, match="^finish needs the deployment lock"):
        act(ledger, "finish", holder=ALICE, outcome="promoted")


def test_record_appends_without_the_lock(ledger):
    act(ledger, "lock", holder=ALICE)
    result = act(ledger, "record", now=at(30), deployment={"type": "rollback", "version": "1.0.0", "from_version": "2.0.0",
                                                           "started": iso(at(28))},
                 outcome="rolled_back", reasons=["emergency"], autonomous=False, active_color="blue",
                 weights={"blue": 100})
    assert result["changed"] is True
    entry = result["entry"]
    assert (entry["type"], entry["outcome"], entry["duration_s"], entry["autonomous"]) == ("rollback", "rolled_back", 2.0, False)
    assert entry["started"] == iso(at(28)) and entry["finished"] == iso(at(30))
    assert entry["id"].startswith("20261127T045840Z-")
    assert result["lock"]["holder"] == ALICE


def test_versions_are_merged_and_weights_filled(ledger):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed", active_color="blue",
        versions={"blue": "1.0.0"}, weights={"blue": 100})
    act(ledger, "record", deployment={"version": "2.0.0", "from_version": "1.0.0"}, outcome="deployed",
        versions={"green": "2.0.0"})
    doc = on_disk(ledger)
    assert doc["versions"] == {"blue": "1.0.0", "green": "2.0.0"}
    assert doc["weights"] == {"blue": 100, "green": 0}


def test_empty_from_version_is_none(ledger):
    result = act(ledger, "record", deployment={"version": "1.0.0", "from_version": ""}, outcome="deployed")
    assert result["entry"]["from_version"] is None


@pytest.mark.parametrize("action,params,message", [
    ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "active_color": "red"},
     "active color 'red' is unknown: it must be one of blue, green."),
    ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "versions": {"red": "1.0.0"}},
     "versions color 'red' is unknown"),
    ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "weights": {"purple": 100}},
     "weight color 'purple' is unknown"),
    ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "weights": {"blue": 60, "green": 30}},
     "weights must sum to 100, these sum to 90."),
    ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "versions": {"blue": "../x"}},
     "version of blue: version '../x' must not contain path separators"),
    ("record", {"deployment": {"version": "1 0"}, "outcome": "deployed"}, "deployment version: version '1 0'"),
    ("record", {"deployment": {"version": "1.0.0"}}, "action record needs outcome"),
    ("record", {"outcome": "deployed"}, "action record needs deployment"),
    ("lock", {}, "action lock needs holder"),
    ("lock", {"holder": {"run_id": "bad id"}}, "holder run_id 'bad id' is not valid"),
    ("step", {"holder": ALICE, "step": {"weight": 120}}, "step weight is 120, outside 0 to 100."),
    ("lock", {"holder": ALICE, "weights": {"blue": 100}}, "active_color, versions and weights are applied by finish"),
    ("info", {"history_limit": -1}, "history_limit must not be negative."),
])
def test_bad_input_is_one_sentence_and_writes_nothing(ledger, action, params, message):
    act(ledger, "record", deployment={"version": "1.0.0"}, outcome="deployed")
    before = raw(ledger)
    with pytest.raises(ValidationError) as exc:
        act(ledger, action, **params)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)
    assert raw(ledger) == before


def test_bad_app_or_environment_or_path():
    with pytest.raises(ValidationError, match="app 'Demo' is not valid"):
        Ledger("/tmp/x.json", "Demo", "local")
    with pytest.raises(ValidationError, match="environment 'a b' is not valid"):
        Ledger("/tmp/x.json", "demo", "a b")
    with pytest.raises(ValidationError, match="ledger path must be absolute"):
        Ledger("x.json", "demo", "local")


# --- check mode and diff --------------------------------------------------------------------------------------------

def test_check_mode_writes_nothing(ledger):
    for action, params in (("lock", {"holder": ALICE}),
                           ("record", {"deployment": {"version": "1.0.0"}, "outcome": "deployed", "active_color": "blue"})):
        result = act(ledger, action, check_mode=True, **params)
        assert "would be" in result["msg"]
        assert folder_names(ledger) == []
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)
    result = act(ledger, "begin", check_mode=True, holder=ALICE, deployment={"version": "2.0.0"})
    assert result["changed"] is True
    assert result["in_progress"]["version"] == "2.0.0"
    assert raw(ledger) == before
    with pytest.raises(LockConflict):
        act(ledger, "lock", check_mode=True, holder=BOB)


def test_diff_shows_lasting_content_only(ledger):
    act(ledger, "lock", holder=ALICE)
    result = begin_deploy(ledger)
    assert '"lock"' not in result["diff"]["before"] and '"lock"' not in result["diff"]["after"]
    assert json.loads(result["diff"]["after"])["in_progress"]["version"] == "2.0.0"
    assert json.loads(result["diff"]["before"])["in_progress"] is None


# --- liveness of a holder -------------------------------------------------------------------------------------------

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
    identity = ledger_mod.run_identity()
    assert holder_alive_locally(identity) is True


# --- a ledger is never written invalid --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [None, "", "None", " "])
def test_begin_without_a_real_version_is_refused_and_writes_nothing(ledger, version):
    # "None" is what a template makes of a missing version: it must not become a null version in the file.
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)
    with pytest.raises(ValidationError, match=r"^deployment needs the version being deployed\.$"):
        begin_deploy(ledger, version=version)
    assert raw(ledger) == before


def test_a_change_that_would_make_the_ledger_invalid_is_not_written(ledger):
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)

    def corrupting(doc):
        doc["versions"]["blue"] = 2.0  # what check_document refuses on the next read

    with pytest.raises(LedgerError, match=r"^ledger .*demo.ledger.json was not written: the change would make it invalid "
                                          r"\(version of blue is not a string\)\.$"):
        ledger.update(corrupting)
    assert raw(ledger) == before
