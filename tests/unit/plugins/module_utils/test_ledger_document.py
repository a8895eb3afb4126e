"""The ledger document (module_utils/ledger_document.py): ids, begin/step/finish/record entries, versions."""

import re

import pytest
from ledger_test_helpers import ALICE, BOB, T0, act, at, begin_deploy, on_disk, raw

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_document import new_id
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError, LockConflict
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso


def test_ids_sort_by_time():
    first, second = new_id(at(0)), new_id(at(1))
    assert re.fullmatch(r"20261127T045812Z-[0-9a-f]{6}", first)
    assert first < second


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


@pytest.mark.parametrize("version", [None, "", "None", " "])
def test_begin_without_a_real_version_is_refused_and_writes_nothing(ledger, version):
    # "None" is what a template makes of a missing version: it must not become a null version in the file.
    act(ledger, "lock", holder=ALICE)
    before = raw(ledger)
    with pytest.raises(ValidationError, match=r"^deployment needs the version being deployed\.$"):
        begin_deploy(ledger, version=version)
    assert raw(ledger) == before
