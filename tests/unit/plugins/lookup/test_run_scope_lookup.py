"""The run_scope lookup: the play's magic variables in, one sentence (or "") out."""

import pytest
from ansible.errors import AnsibleError
import yaml
from ansible.constants import config

from ansible_collections.leanvibe.deploy.plugins.lookup import run_scope as plugin

NAME = "leanvibe.deploy.run_scope"

VARIABLES = {"groups": {"all": ["lb-local", "app-local"], "lb": ["lb-local"], "app": ["app-local"]},
             "ansible_play_hosts_all": ["app-local"], "ansible_limit": "app-local",
             "ansible_inventory_sources": ["/inv/local"]}


def scope(terms, variables=VARIABLES, **kwargs):
    # What Ansible's plugin loader does: the options come from DOCUMENTATION.
    config.initialize_plugin_configuration_definitions("lookup", NAME, yaml.safe_load(plugin.DOCUMENTATION)["options"])
    lookup = plugin.LookupModule()
    lookup._load_name = NAME
    return lookup.run(terms, dict(variables), **kwargs)


def test_a_list_term_and_plain_terms_read_the_same():
    expected = ["--limit app-local leaves out lb-local; this playbook needs every host of groups lb and app."]
    assert scope([["lb", "app"]]) == expected
    assert scope(["lb", "app"]) == expected


def test_first_only_and_a_run_that_reaches_its_hosts():
    assert scope(["app"], first_only=True) == [""]
    assert scope(["lb"], dict(VARIABLES, ansible_play_hosts_all=["lb-local", "app-local"])) == [""]


def test_no_groups_is_an_ansible_error():
    with pytest.raises(AnsibleError, match="needs the groups"):
        scope([])
