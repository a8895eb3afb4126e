"""Unit tests of module_utils/plan.py: steps as data, the one validator of canary steps."""

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.plan import (
    DEFAULT_STEP,
    duration_s,
    parse_steps,
    step_defaults,
    worst_case_rollback_s,
)


def weights(steps):
    return [step["weight"] for step in steps]


def test_a_plain_list_of_weights_gets_the_default_settings():
    steps = parse_steps([10, 50, 100])
    assert weights(steps) == [10, 50, 100]
    assert all(step["pause_s"] == 60 and step["probes"] == "quick" for step in steps)
    assert steps[0]["analysis"] == DEFAULT_STEP["analysis"]


@pytest.mark.parametrize("given", [None, "", "  "])
def test_no_steps_means_the_default_steps(given):
    assert weights(parse_steps(given)) == [10, 25, 50, 100]


@pytest.mark.parametrize("text, expected", [("10,25,50,100", [10, 25, 50, 100]), (" 10 , 50 ,100 ", [10, 50, 100]), ("100", [100])])
def test_survey_text_is_read_as_weights(text, expected):
    assert weights(parse_steps(text)) == expected


def test_mapping_steps_carry_their_own_settings_over_the_defaults():
    defaults = step_defaults(pause_s=5, probes="standard", analysis={"min_requests": 10})
    steps = parse_steps([10, {"weight": 50, "pause_s": 120, "probes": "comprehensive", "analysis": {"max_error_rate": 0.05}},
                         {"weight": 100}], defaults)
    assert steps[0] == {"weight": 10, "pause_s": 5, "probes": "standard",
                        "analysis": {"min_requests": 10, "insufficient_data": "inconclusive"}}
    assert steps[1] == {"weight": 50, "pause_s": 120, "probes": "comprehensive",
                        "analysis": {"min_requests": 10, "insufficient_data": "inconclusive", "max_error_rate": 0.05}}
    assert steps[2]["pause_s"] == 5 and steps[2]["probes"] == "standard"


@pytest.mark.parametrize("given, message", [
    ([25, 25], "canary_steps must be strictly increasing (got steps [25, 25])."),
    ([50, 25], "canary_steps must be strictly increasing (got steps [50, 25])."),
    ("50,25", 'canary_steps must be strictly increasing (got steps "50,25").'),
    (["ten", 50], 'canary_steps must be whole numbers (got steps ["ten", 50]).'),
    ([12.5, 50], "canary_steps must be whole numbers (got steps [12.5, 50])."),
    ([True, 50], "canary_steps must be whole numbers (got steps [true, 50])."),
    (["10", 50], 'canary_steps must be whole numbers (got steps ["10", 50]).'),
    ("10,x,50", 'canary_steps must be whole percentages separated by commas, such as 10,25,50,100 (got steps "10,x,50").'),
    ("10,,50", 'canary_steps must be whole percentages separated by commas, such as 10,25,50,100 (got steps "10,,50").'),
    ("-10,50", 'canary_steps must be whole percentages separated by commas, such as 10,25,50,100 (got steps "-10,50").'),
    ([50, 101], "each of canary_steps must be from 1 to 100 (got steps [50, 101])."),
    ([0, 10], "each of canary_steps must be from 1 to 100 (got steps [0, 10])."),
    ([10, 150], "each of canary_steps must be from 1 to 100 (got steps [10, 150])."),
    ("0,10", 'each of canary_steps must be from 1 to 100 (got steps "0,10").'),
    ([], "canary_steps must not be empty (got steps [])."),
    ({"weight": 10}, 'canary_steps must be a list of percentages (got steps {"weight": 10}).'),
    (10, "canary_steps must be a list of percentages (got steps 10)."),
    ([{"pause_s": 10}], 'step 1 of canary_steps has no weight (got steps [{"pause_s": 10}]).'),
    ([{"weight": 10, "setWeight": 10}], "step 1 of canary_steps has unknown key setWeight: a step takes weight, pause_s, probes, analysis"),
    ([{"weight": 10.5}], 'canary_steps must be whole numbers (got steps [{"weight": 10.5}]).'),
    ([{"weight": 50}, 25], 'canary_steps must be strictly increasing (got steps [{"weight": 50}, 25]).'),
    ([{"weight": 10, "pause_s": -1}], "step 1 of canary_steps: pause_s must not be negative (got -1)."),
    ([{"weight": 10, "pause_s": "soon"}], 'step 1 of canary_steps: pause_s must be a whole number of seconds (got "soon").'),
    ([{"weight": 10, "probes": "all"}], 'step 1 of canary_steps: probes must be one of quick, standard, critical-path-only, comprehensive (got "all").'),
    ([{"weight": 10, "analysis": 5}], "step 1 of canary_steps: analysis must be a mapping of limits"),
    ([{"weight": 10, "analysis": {"p99": 3}}], "step 1 of canary_steps: analysis has unknown limit p99"),
])
def test_bad_steps_are_refused_with_one_sentence(given, message):
    with pytest.raises(ValueError) as caught:
        parse_steps(given)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"pause_s": -1}, "canary_step_pause_s must not be negative (got -1)."),
    ({"pause_s": "x"}, 'canary_step_pause_s must be a whole number of seconds (got "x").'),
    ({"probes": "slow"}, 'canary_step_probe_mode must be one of quick, standard, critical-path-only, comprehensive (got "slow").'),
    ({"analysis": ["min_requests"]}, "canary_analysis must be a mapping of limits"),
    ({"analysis": {"min_request": 3}}, "canary_analysis has unknown limit min_request"),
])
def test_bad_step_defaults_are_refused(kwargs, message):
    with pytest.raises(ValidationError) as caught:
        step_defaults(**kwargs)
    assert str(caught.value).startswith(message), str(caught.value)


def test_pause_given_as_text_is_read_as_a_number():
    assert step_defaults(pause_s="7")["pause_s"] == 7


def test_duration_and_worst_case_rollback():
    steps = parse_steps([10, {"weight": 50, "pause_s": 120}, 100], step_defaults(pause_s=7))
    assert duration_s(steps) == (7 + 5) + (120 + 5) + (7 + 5) + 20
    assert worst_case_rollback_s(steps) == 120 + 5 + 1
