"""The probe_table lookup, and every list of probe modes or names in the collection checked against the engine's table."""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleError

from ansible_collections.leanvibe.deploy.plugins.lookup.probe_table import LookupModule
from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import MODES, PROBES
from ansible_collections.leanvibe.deploy.plugins.modules import synthetic_probe

REPO = Path(__file__).resolve().parents[4]


def argument_spec(role):
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def test_the_lookup_returns_the_engines_table():
    assert LookupModule().run([]) == [{"modes": {mode: list(names) for mode, names in MODES.items()}, "probes": list(PROBES)}]


def test_the_lookup_takes_no_terms():
    with pytest.raises(AnsibleError, match="takes no terms"):
        LookupModule().run(["quick"])


def test_the_roles_offer_the_engines_modes_and_probes():
    environment = argument_spec("monitoring")["monitoring_environments"]["options"]
    assert sorted(environment["mode"]["choices"]) == sorted(MODES)
    assert sorted(environment["probes"]["choices"]) == sorted(PROBES)
    assert sorted(argument_spec("synthetic_probes")["synthetic_probes_mode"]["choices"]) == sorted(MODES)


def test_the_module_documents_the_engines_modes():
    assert sorted(yaml.safe_load(synthetic_probe.DOCUMENTATION)["options"]["mode"]["choices"]) == sorted(MODES)
