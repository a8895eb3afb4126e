"""Fixtures of the module_utils unit tests."""

import pytest
from ledger_test_helpers import new_ledger


@pytest.fixture
def ledger(tmp_path):
    """An empty ledger of app demo in environment local, in a folder of its own."""
    return new_ledger(tmp_path)
