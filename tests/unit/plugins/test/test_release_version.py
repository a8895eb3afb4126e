"""The release_version test (plugins/test/release_version.py), and the version check of canary.yml and blue_green.yml.

The roles check a version with the release_version test; the playbooks hand app_version to rollout_plan, which
refuses a bad one with one sentence (plan.validate_inputs). Both decide with common.validate_release_version. The cases
of tests/integration/test_bad_input_matrix.py that only checked this live here; the matrix keeps one per playbook
(version ../x) to prove that the refusal changes nothing.
"""

import os

import pytest
import yaml

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.plan import validate_inputs
from ansible_collections.leanvibe.deploy.plugins.test import release_version as plugin

PLAYBOOK_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "playbooks")

release_version = plugin.release_version

PLAYBOOKS = {"canary.yml": "canary", "blue_green.yml": "blue_green"}
WORDS = ("app_version must be given (-e app_version=X) as letters, digits, '.', '_', '+' or '-' (1 to 64, starting with a "
         "letter or digit, no '..'), without path separators or spaces")

# The value as the playbook gets it from -e (JSON), and how its sentence shows it.
REFUSED = {
    "version ../x": ("../x", '"../x"'),
    "version empty": ("", '""'),
    "version with spaces": ("1.0 beta", '"1.0 beta"'),
    "version null": (None, "null"),
    "version a/b": ("a/b", '"a/b"'),
    "version a\\b": ("a\\b", '"a\\\\b"'),
    "version 1..2": ("1..2", '"1..2"'),
    "version with a trailing newline": ("1.0\n", '"1.0\\n"'),
    "version starting with a dash": ("-rc1", '"-rc1"'),
    "version of 65 characters": ("A" * 65, '"%s"' % ("A" * 65)),
    # -e '{"app_version": 2.10}': YAML and JSON read a number, which would deploy "2.1".
    "version that YAML reads as a number": (2.10, "2.1"),
    "version true": (True, "true"),
    "version that is a list": (["1.0"], '["1.0"]'),
}


def test_the_collection_offers_the_test_by_its_name():
    assert plugin.TestModule().tests() == {"release_version": release_version}


@pytest.mark.parametrize("value", ["1.0.0", "2.0.0-rc.1", "v2_beta+7", "A" * 64, 3])
def test_release_versions_pass(value):
    assert release_version(value) is True


def plan_task(playbook):
    """The playbook's rollout_plan task."""
    with open(os.path.join(PLAYBOOK_DIR, playbook), encoding="utf-8") as handle:
        plays = yaml.safe_load(handle)
    tasks = [task for play in plays for task in play.get("tasks") or [] if "leanvibe.deploy.rollout_plan" in task]
    assert len(tasks) == 1, playbook
    return tasks[0]["leanvibe.deploy.rollout_plan"]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_the_playbooks_hand_app_version_to_the_plan(playbook):
    task = plan_task(playbook)
    assert (task["strategy"], task["version_var"]) == (PLAYBOOKS[playbook], "app_version")
    assert task["version"] == "{{ app_version | default(omit) }}"


@pytest.mark.parametrize("name", list(REFUSED))
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_a_bad_version_is_refused_with_one_sentence(playbook, name):
    value, shown = REFUSED[name]
    assert release_version(value) is False
    with pytest.raises(ValidationError) as caught:
        validate_inputs(PLAYBOOKS[playbook], value, version_var="app_version")
    sentence = str(caught.value)
    assert sentence == "%s (got %s)." % (WORDS, shown)
    assert "\n" not in sentence
