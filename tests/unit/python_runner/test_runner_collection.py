"""The runner takes the probe modes from the collection's probe engine, the one table of them."""

import importlib
import sys

import pytest

from leanvibe_runner import collection
from leanvibe_runner.codes import UsageError


def test_probe_modes_are_the_engines():
    probes = collection.module_utils("probes")
    assert probes.__name__ == "ansible_collections.leanvibe.deploy.plugins.module_utils.probes"
    assert collection.probe_modes() == tuple(probes.MODES)
    assert "critical-path-only" in collection.probe_modes()


def test_without_the_collection_it_is_a_usage_error(monkeypatch):
    def missing(name, *args, **kwargs):
        raise ImportError("No module named %r" % name)

    monkeypatch.setattr(importlib, "import_module", missing)
    monkeypatch.setattr(collection, "_search_paths", lambda: [])
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(UsageError, match="cannot import ansible_collections.leanvibe.deploy.plugins.module_utils.probes: "
                                         "install the leanvibe.deploy collection or set ANSIBLE_COLLECTIONS_PATH"):
        collection.probe_modes()
