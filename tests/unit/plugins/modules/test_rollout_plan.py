"""The rollout_plan module end to end through main(), on a ledger in tmp_path.

These cases replace the bad-input runs of whole playbooks that only tested the version or the steps.
"""

import functools
import json

import pytest

from plugin_test_helpers import run_module
from ansible_collections.leanvibe.deploy.plugins.modules import rollout_plan

run = functools.partial(run_module, rollout_plan.main)
VERSION_START = "app_version must be given (-e app_version=X) as letters, digits, '.', '_', '+' or '-'"


@pytest.fixture
def ledger(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()

    class Ledger:
        path = str(folder / "demo.ledger.json")

        def args(self, **overrides):
            values = {"path": self.path, "app": "demo", "environment": "local", "version_var": "app_version"}
            values.update(overrides)
            return {key: value for key, value in values.items() if value is not None}

        def write(self, active="blue", versions=None, weights=None):
            doc = {"schema": 1, "app": "demo", "environment": "local", "active_color": active,
                   "versions": versions if versions is not None else {"blue": "1.0.0"},
                   "weights": weights if weights is not None else {"blue": 100, "green": 0},
                   "in_progress": None, "lock": None, "history": []}
            with open(self.path, "w", encoding="utf-8") as handle:
                json.dump(doc, handle)

        def raw(self):
            with open(self.path, "rb") as handle:
                return handle.read()

    return Ledger()


# --- the plan ---------------------------------------------------------------------------------------------------------

def test_a_canary_goes_to_the_idle_color_with_the_steps_as_data(capsys, ledger):
    ledger.write()
    result = run(capsys, ledger.args(version="2.0.0", steps=[10, {"weight": 50, "pause_s": 120}, 100], pause_s=7))
    assert result["changed"] is False
    assert (result["strategy"], result["version"], result["old_color"], result["new_color"], result["from_version"]) == (
        "canary", "2.0.0", "blue", "green", "1.0.0")
    assert result["proceed"] is True and result["changes"] is True and result["refused"] is None
    assert result["phase"] == "planned" and result["reason"] == "starting"
    assert [(s["weight"], s["pause_s"], s["probes"]) for s in result["steps"]] == [(10, 7, "quick"), (50, 120, "quick"),
                                                                                   (100, 7, "quick")]
    assert result["duration_s"] == 12 + 125 + 12 + 20
    assert result["worst_case_rollback_s"] == 126
    assert result["expect"] == {"active_color": "blue", "version": "1.0.0"}
    assert result["step_weights"] == [10, 50, 100]
    assert result["weights"] == {"blue": 100, "green": 0}
    assert result["summary"][0] == "demo 1.0.0 on blue -> 2.0.0 on green"
    assert result["summary"][1] == "steps 10 % -> 50 % -> 100 %, pauses of 7 to 120 s, about 169 s in all"


def test_what_follows_a_failed_gate_and_a_promotion_is_planned(capsys, ledger):
    ledger.write()
    result = run(capsys, ledger.args(version="2.0.0", abort_delay_s="30", old_color="stop", old_color_warm_s=60))
    assert (result["abort_delay_s"], result["retire_old_color"], result["old_color_warm_s"]) == (30, True, 60)
    kept = run(capsys, ledger.args(version="2.0.0"))
    assert (kept["abort_delay_s"], kept["retire_old_color"]) == (0, False)
    # A rollback keeps the color it leaves: that is where the release it left stays warm.
    rollback = run(capsys, ledger.args(version="0.9.0", strategy="rollback", old_color="stop"))
    assert rollback["retire_old_color"] is False


def test_uniform_pauses_read_as_one(capsys, ledger):
    ledger.write(active="green", versions={"blue": "1.0.0", "green": "2.0.0"})
    result = run(capsys, ledger.args(version="4.2.0", steps=[10, 50, 100], pause_s=7), check=True)
    assert result["summary"][0] == "demo 2.0.0 on green -> 4.2.0 on blue"
    assert "steps 10 % -> 50 % -> 100 %, 7 s pause each" in result["summary"][1]
    assert result["summary"][-1] == "check mode: nothing was changed"


def test_check_mode_plans_and_does_not_proceed(capsys, ledger):
    ledger.write()
    before = ledger.raw()
    result = run(capsys, ledger.args(version="2.0.0"), check=True)
    assert result["proceed"] is False and result["changes"] is True and result["phase"] == "checked"
    assert [s["weight"] for s in result["steps"]] == [10, 25, 50, 100]
    assert ledger.raw() == before


def test_the_version_that_serves_is_unchanged(capsys, ledger):
    ledger.write()
    result = run(capsys, ledger.args(version="1.0.0"))
    assert result["proceed"] is False and result["phase"] == "unchanged"
    assert result["reason"] == "already serving 1.0.0: nothing to do"


def test_a_whole_number_version_is_text(capsys, ledger):
    ledger.write()
    assert run(capsys, ledger.args(version=3))["version"] == "3"


def test_a_canary_without_a_stable_release_is_refused(capsys, ledger):
    result = run(capsys, ledger.args(version="2.0.0"))
    assert result["proceed"] is False and result["phase"] == "planned"
    assert result["refused"] == ("demo has no stable release in local to judge a canary against; bring it up with site.yml "
                                 "first.")
    assert result["old_color"] == "blue" and result["from_version"] is None


def test_blue_green_is_one_step_to_the_idle_color(capsys, ledger):
    ledger.write()
    result = run(capsys, ledger.args(strategy="blue_green", version="2.0.0", steps=[10, 20]))
    assert (result["old_color"], result["new_color"], result["proceed"], result["phase"]) == ("blue", "green", True, "planned")
    assert result["steps"] == [{"weight": 100, "pause_s": 0, "probes": "comprehensive",
                                "analysis": {"min_requests": 20, "insufficient_data": "inconclusive"}}]


def test_blue_green_of_the_version_that_serves_stays_on_the_active_color(capsys, ledger):
    ledger.write(versions={"blue": "1.0.0", "green": "2.0.0"})
    result = run(capsys, ledger.args(strategy="blue_green", version="1.0.0"))
    assert (result["new_color"], result["changes"], result["proceed"], result["phase"]) == ("blue", False, False, "unchanged")


def test_blue_green_in_check_mode_still_says_what_changes(capsys, ledger):
    ledger.write(versions={"blue": "1.0.0", "green": "2.0.0"})
    result = run(capsys, ledger.args(strategy="blue_green", version="2.0.0", probes="quick"), check=True)
    assert (result["new_color"], result["changes"], result["proceed"], result["phase"]) == ("green", True, False, "checked")
    assert result["steps"][0]["probes"] == "quick"


def test_a_rollback_goes_to_the_color_that_runs_the_target_warm(capsys, ledger):
    ledger.write(active="green", versions={"blue": "1.0.0", "green": "2.0.0"})
    result = run(capsys, ledger.args(strategy="rollback", version="1.0.0"))
    assert (result["old_color"], result["new_color"], result["from_version"], result["proceed"]) == ("green", "blue", "2.0.0", True)
    cold = run(capsys, ledger.args(strategy="rollback", version="0.9.0"))
    assert cold["new_color"] == "blue"


# --- every bad input: one sentence, before the ledger is read ---------------------------------------------------------

BAD = [
    # versions (test_bad_input_matrix: canary/blue-green version ../x, empty, with spaces, null, a/b, 2.10)
    ({"version": "../x"}, VERSION_START, '(got "../x").'),
    ({"version": ""}, VERSION_START, '(got "").'),
    ({"version": "1.0 beta"}, VERSION_START, '(got "1.0 beta").'),
    ({"version": None}, VERSION_START, "(got null)."),
    ({"version": "a/b", "strategy": "blue_green"}, VERSION_START, '(got "a/b").'),
    ({"version": 2.1, "strategy": "blue_green"}, VERSION_START, "(got 2.1)."),
    ({"version": True}, VERSION_START, "(got true)."),
    ({"version": "x" * 65}, VERSION_START, '(got "%s").' % ("x" * 65)),
    ({"version": "1..2"}, VERSION_START, '(got "1..2").'),
    ({"version": "-rf"}, VERSION_START, '(got "-rf").'),
    ({"version": "a b", "version_var": None}, "version must be letters, digits", '(got "a b").'),
    # steps (test_canary and test_bad_input_matrix: [50, 25], [0, 10], [10, 150], [], [25, 25], "50,25", ...)
    ({"steps": [50, 25]}, "canary_steps must be strictly increasing (got steps [50, 25]).", ""),
    ({"steps": [25, 25]}, "canary_steps must be strictly increasing (got steps [25, 25]).", ""),
    ({"steps": "50,25"}, 'canary_steps must be strictly increasing (got steps "50,25").', ""),
    ({"steps": [0, 10]}, "each of canary_steps must be from 1 to 100 (got steps [0, 10]).", ""),
    ({"steps": [10, 150]}, "each of canary_steps must be from 1 to 100 (got steps [10, 150]).", ""),
    ({"steps": [50, 101]}, "each of canary_steps must be from 1 to 100 (got steps [50, 101]).", ""),
    ({"steps": []}, "canary_steps must not be empty (got steps []).", ""),
    ({"steps": ["ten", 50]}, 'canary_steps must be whole numbers (got steps ["ten", 50]).', ""),
    ({"steps": [12.5, 50]}, "canary_steps must be whole numbers (got steps [12.5, 50]).", ""),
    ({"steps": "10,x,50"}, 'canary_steps must be whole percentages separated by commas', '(got steps "10,x,50").'),
    ({"steps": {"weight": 10}}, "canary_steps must be a list of percentages", ""),
    ({"steps": [{"weight": 10, "pause": 5}]}, "step 1 of canary_steps has unknown key pause", ""),
    ({"steps": [{"pause_s": 5}]}, "step 1 of canary_steps has no weight", ""),
    ({"steps": [{"weight": 10, "probes": "slow"}]}, "step 1 of canary_steps: probes must be one of", ""),
    # step defaults
    ({"pause_s": -1}, "canary_step_pause_s must not be negative (got -1).", ""),
    ({"pause_s": "1m"}, 'canary_step_pause_s must be a whole number of seconds (got "1m").', ""),
    ({"probes": "all"}, "canary_step_probe_mode must be one of quick, standard, critical-path-only, comprehensive", ""),
    ({"analysis": {"p99": 1}}, "canary_analysis has unknown limit p99", ""),
    # what follows a failed gate and a promotion
    ({"abort_delay_s": -5}, "abort_delay_s must not be negative (got -5).", ""),
    ({"abort_delay_s": "soon"}, 'abort_delay_s must be a whole number of seconds (got "soon").', ""),
    ({"old_color": "stop", "old_color_warm_s": 1.5}, "old_color_warm_s must be a whole number of seconds (got 1.5).", ""),
]


@pytest.mark.parametrize("args, start, end", BAD, ids=[json.dumps(case[0]) for case in BAD])
def test_bad_input_fails_with_one_sentence_and_reads_no_ledger(capsys, tmp_path, args, start, end):
    # A ledger folder that does not exist: the inputs are refused before it is looked at.
    values = {"path": str(tmp_path / "missing" / "demo.ledger.json"), "app": "demo", "environment": "local",
              "version_var": "app_version", "version": "2.0.0"}
    values.update(args)
    result = run(capsys, {key: value for key, value in values.items() if value is not None or key == "version"})
    assert result["failed"] is True
    assert result["msg"].startswith(start), result["msg"]
    assert result["msg"].endswith(end), result["msg"]
    assert "\n" not in result["msg"] and "Traceback" not in result["msg"]
    assert not (tmp_path / "missing").exists()


def test_a_corrupt_ledger_is_refused_with_one_sentence(capsys, ledger):
    with open(ledger.path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    result = run(capsys, ledger.args(version="2.0.0"))
    assert result["failed"] is True and "is corrupt (not JSON" in result["msg"]


def test_a_missing_ledger_folder_is_refused(capsys, tmp_path):
    result = run(capsys, {"path": str(tmp_path / "nope" / "demo.ledger.json"), "app": "demo", "environment": "local",
                          "version": "2.0.0"})
    assert result["failed"] is True and "does not exist" in result["msg"]
