"""The deployment_state actions (module_utils/ledger_actions.py): info, bad input, check mode, diff."""

import json

import pytest
from ledger_test_helpers import ALICE, BOB, act, at, begin_deploy, folder_names, on_disk, raw

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LockConflict


def test_info_on_missing_ledger_is_empty_and_writes_nothing(ledger):
    result = act(ledger, "info")
    assert result["changed"] is False
    assert result["ledger"] == {"schema": 1, "app": "demo", "environment": "local", "active_color": None, "versions": {},
                                "weights": {}, "in_progress": None, "lock": None, "history": []}
    assert result["lock"] is None and result["in_progress"] is None
    assert "no ledger yet" in result["msg"]
    assert folder_names(ledger) == []


def test_history_limit_keeps_the_newest_last(ledger):
    for index in range(5):
        act(ledger, "record", now=at(index), deployment={"version": "1.0.%d" % index}, outcome="deployed")
    result = act(ledger, "info", history_limit=2)
    assert [entry["version"] for entry in result["ledger"]["history"]] == ["1.0.3", "1.0.4"]
    assert act(ledger, "info", history_limit=0)["ledger"]["history"] == []
    assert len(on_disk(ledger)["history"]) == 5


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
