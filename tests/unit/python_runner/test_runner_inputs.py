"""leanvibe_runner.inputs: versions, canary steps, inventories and -e values, checked before anything starts."""

import json
from pathlib import Path

import pytest

from leanvibe_runner.codes import UsageError
from leanvibe_runner.inputs import RESERVED_VARS, check_version, parse_extra_vars, parse_steps, resolve_inventory


# -- check_version ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2.2.0", "v2.3.0-rc.1", "1.0.0+build_7", "A" * 64, "0.0.1-SNAPSHOT"])
def test_check_version_accepts_good_versions(version):
    assert check_version(version) == version


def test_check_version_returns_text_of_non_strings():
    assert check_version(2) == "2"


@pytest.mark.parametrize("version", ["../x", "", None, "a b", "x/y", "A" * 65, ".hidden", "-rc1", "x\\y", "1.0;rm",
                                     " 1.0", "2.2.0 "])
def test_check_version_rejects_bad_versions(version):
    with pytest.raises(UsageError) as info:
        check_version(version)
    # The collection's validator (module_utils/common.py) and its sentence, the one the playbooks give.
    assert "letters, digits, '.', '_', '+' or '-'" in str(info.value)
    assert str(info.value).endswith("(got %s)." % json.dumps(version))


def test_check_version_names_what_it_checks():
    with pytest.raises(UsageError, match=r'^target version must be letters.* \(got "\.\./x"\)\.$'):
        check_version("../x", "target version")


def test_check_version_rejects_a_trailing_newline():
    with pytest.raises(UsageError):
        check_version("1.0.0\n")


# -- parse_steps --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps, expected", [
    ("10,25,50,100", [10, 25, 50, 100]),
    (" 10 , 50 ,100 ", [10, 50, 100]),
    ("100", [100]),
    ("1", [1]),
    ([10, 50, 100], [10, 50, 100]),
    ((5, 6), [5, 6]),
    # Blank survey text means the default steps, as rollout_plan reads it.
    ("", [10, 25, 50, 100]),
])
def test_parse_steps_accepts_strings_and_lists(steps, expected):
    assert parse_steps(steps) == expected


@pytest.mark.parametrize("steps, message", [
    ("50,25", "strictly increasing"),
    ("10,10,20", "strictly increasing"),
    ([50, 25], "strictly increasing"),
    ("0,50", "from 1 to 100"),
    ([0], "from 1 to 100"),
    ("10,101", "from 1 to 100"),
    ([101], "from 1 to 100"),
    ([], "must not be empty"),
    ("10,,50", "whole percentages"),
    ("ten", "whole percentages"),
    ("10,twenty", "whole percentages"),
    ([10.5], "whole numbers"),
    ("-10,20", "whole percentages"),
    ("1000", "from 1 to 100"),
    ([True], "whole numbers"),
    ([10, False], "whole numbers"),
    (["10", "20"], "whole numbers"),
    (True, "must be a list"),
    (50, "must be a list"),
    ({"a": 10}, "must be a list"),
])
def test_parse_steps_rejects_bad_steps(steps, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_steps(steps)
    # The collection's sentence (module_utils/plan.py), naming the steps as given.
    assert str(info.value).endswith("(got steps %s)." % json.dumps(steps))


def test_parse_steps_hands_step_mappings_over_as_given():
    steps = [10, {"weight": 50, "pause_s": 300, "probes": "standard"}, 100]
    assert parse_steps(steps) == steps


# -- resolve_inventory --------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    for name in ("local", "staging", "production"):
        (root / "inventories" / name).mkdir(parents=True)
        (root / "inventories" / name / "hosts.yml").write_text("all: {}\n", encoding="utf-8")
    (root / "inventories" / "README.md").write_text("not an inventory\n", encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative names must not be found by accident in the caller's folder
    return root


def test_resolve_inventory_takes_a_name_under_inventories(project):
    assert resolve_inventory("staging", project) == (project / "inventories" / "staging").resolve()


def test_resolve_inventory_takes_a_path_relative_to_the_project(project):
    assert resolve_inventory("inventories/local", project) == (project / "inventories" / "local").resolve()


def test_resolve_inventory_takes_an_absolute_path(project, tmp_path):
    hosts = tmp_path / "elsewhere.yml"
    hosts.write_text("all: {}\n", encoding="utf-8")
    assert resolve_inventory(str(hosts), project) == hosts.resolve()
    assert resolve_inventory(hosts, project) == hosts.resolve()


def test_resolve_inventory_takes_a_path_relative_to_the_working_dir(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.ini").write_text("[lb]\n", encoding="utf-8")
    assert resolve_inventory("mine.ini", project) == (tmp_path / "mine.ini").resolve()


def test_resolve_inventory_lists_the_known_names_when_missing(project):
    with pytest.raises(UsageError) as info:
        resolve_inventory("qa", project)
    message = str(info.value)
    assert message.startswith("inventory qa not found")
    assert "local, production, staging" in message  # sorted, folders only
    assert "README" not in message


def test_resolve_inventory_without_an_inventories_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="neither a path nor one of the project's inventories"):
        resolve_inventory("qa", tmp_path / "empty-project")


@pytest.mark.parametrize("inventory", [None, "", "   "])
def test_resolve_inventory_requires_one(project, inventory):
    with pytest.raises(UsageError, match="an inventory is required"):
        resolve_inventory(inventory, project)


# -- parse_extra_vars ---------------------------------------------------------------------------------------
def test_extra_vars_none_and_empty():
    assert parse_extra_vars(None) == {}
    assert parse_extra_vars([]) == {}


def test_extra_vars_key_value_pairs():
    assert parse_extra_vars(["a=1", "b=two c='x y'"]) == {"a": "1", "b": "two", "c": "x y"}


def test_extra_vars_yaml_file(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("canary_step_pause_s: 30\nnested:\n  key: [1, 2]\n", encoding="utf-8")
    assert parse_extra_vars(["@%s" % path]) == {"canary_step_pause_s": 30, "nested": {"key": [1, 2]}}


def test_extra_vars_json_file(tmp_path):
    path = tmp_path / "vars.json"
    path.write_text(json.dumps({"probe_timeout": 5, "flag": True}), encoding="utf-8")
    assert parse_extra_vars(["@" + str(path)]) == {"probe_timeout": 5, "flag": True}


def test_extra_vars_empty_file_is_no_vars(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("", encoding="utf-8")
    assert parse_extra_vars(["@%s" % path]) == {}


def test_extra_vars_missing_file(tmp_path):
    with pytest.raises(UsageError, match=r"extra vars file .*missing\.yml cannot be read"):
        parse_extra_vars(["@%s" % (tmp_path / "missing.yml")])


def test_extra_vars_file_holding_a_list(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(UsageError, match="must hold a mapping"):
        parse_extra_vars(["@%s" % path])


def test_extra_vars_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(UsageError, match="is not YAML or JSON"):
        parse_extra_vars(["@%s" % path])


def test_extra_vars_json_object():
    expected = {"canary_step_pause_s": 0, "list": [1, 2]}
    assert parse_extra_vars(['{"canary_step_pause_s": 0, "list": [1, 2]}']) == expected


def test_extra_vars_yaml_flow_mapping():
    assert parse_extra_vars(["{a: 1, b: x}"]) == {"a": 1, "b": "x"}


@pytest.mark.parametrize("text", ['{"a": 1', "{a: [1, 2}"])
def test_extra_vars_invalid_json(text):
    with pytest.raises(UsageError, match="neither JSON nor YAML"):
        parse_extra_vars([text])


def test_extra_vars_plain_words_are_not_pairs():
    with pytest.raises(UsageError, match="must be KEY=VALUE pairs"):
        parse_extra_vars(["justaword"])


@pytest.mark.parametrize("name", RESERVED_VARS)
def test_extra_vars_reserved_names_are_rejected(name):
    with pytest.raises(UsageError) as info:
        parse_extra_vars(["%s=1" % name])
    assert name in str(info.value)
    assert "with the command's own options" in str(info.value)


def test_extra_vars_reserved_names_are_rejected_from_mappings_and_files(tmp_path):
    with pytest.raises(UsageError, match="app_version"):
        parse_extra_vars({"app_version": "2.0.0"})
    path = tmp_path / "vars.yml"
    path.write_text("canary_steps: [10, 100]\n", encoding="utf-8")
    with pytest.raises(UsageError, match="canary_steps"):
        parse_extra_vars(["@%s" % path])


@pytest.mark.parametrize("values", [{"1abc": 1}, {"with-dash": 1}, {"a b": 1}, {1: "x"}, ['{"bad.name": 1}'],
                                    ["{\"\": 1}"]])
def test_extra_vars_invalid_names(values):
    with pytest.raises(UsageError, match="is not a valid variable name"):
        parse_extra_vars(values)


def test_extra_vars_merge_left_to_right(tmp_path):
    path = tmp_path / "vars.yml"
    path.write_text("a: from-file\nb: from-file\nnested: {x: 1, y: 2}\n", encoding="utf-8")
    merged = parse_extra_vars(["a=first", "@%s" % path, '{"b": "json", "nested": {"x": 9}}', "c=last",
                               {"c": "mapping"}])
    # Later values win; like ansible-playbook -e, a later mapping replaces a nested one as a whole.
    assert merged == {"a": "from-file", "b": "json", "nested": {"x": 9}, "c": "mapping"}


def test_extra_vars_from_a_mapping_are_copied():
    given = {"a": 1}
    merged = parse_extra_vars(given)
    merged["b"] = 2
    assert given == {"a": 1}


def test_extra_vars_file_path_with_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "v.yml").write_text("a: 1\n", encoding="utf-8")
    assert parse_extra_vars(["@~/v.yml"]) == {"a": 1}
    assert Path("~").expanduser() == tmp_path
