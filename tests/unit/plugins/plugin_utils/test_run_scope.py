"""plugin_utils/run_scope.py: whether a run reaches the hosts its playbook needs, as the lookup run_scope answers."""

import pytest

from ansible_collections.leanvibe.deploy.plugins.plugin_utils.run_scope import needed_hosts, scope_problem

GROUPS = {"all": ["lb1", "lb2", "app1", "app2"], "ungrouped": [], "lb": ["lb1", "lb2"], "app": ["app1", "app2"]}
EVERY = ["lb1", "lb2", "app1", "app2"]


def test_a_run_that_reaches_every_host_has_no_problem():
    assert scope_problem(GROUPS, EVERY, ["lb", "app"]) == ""


def test_needed_hosts_are_every_host_or_the_first_of_each_group():
    assert needed_hosts(GROUPS, ["lb", "app"]) == EVERY
    assert needed_hosts(GROUPS, ["lb", "app"], first_only=True) == ["lb1", "app1"]


def test_a_group_without_hosts_is_named_with_the_inventory():
    groups = dict(GROUPS, lb=[])
    assert scope_problem(groups, ["app1", "app2"], ["lb", "app"], inventory_sources=["/inv/local"]) == (
        "inventory /inv/local has no host in group lb; this playbook needs hosts in groups lb and app.")
    assert scope_problem({"all": []}, [], ["lb"], inventory_sources=["a", "b"]) == (
        "inventory a, b has no host in group lb; this playbook needs hosts in group lb.")


def test_a_limit_that_leaves_out_a_needed_host_is_refused():
    assert scope_problem(GROUPS, ["app1", "app2"], ["lb", "app"], limit="app*") == (
        "--limit app* leaves out lb1, lb2; this playbook needs every host of groups lb and app.")


def test_first_only_needs_the_first_host_of_each_group_only():
    assert scope_problem(GROUPS, ["lb1", "app1"], ["lb", "app"], first_only=True) == ""
    assert scope_problem(GROUPS, ["lb2", "app1"], ["lb"], first_only=True, limit="lb2,app1") == (
        "--limit lb2,app1 leaves out lb1; this playbook needs the first host of group lb.")


def test_no_groups_is_a_caller_error():
    with pytest.raises(ValueError, match="needs the groups"):
        scope_problem(GROUPS, EVERY, [])
