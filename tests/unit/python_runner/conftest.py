"""Fixtures the runner's API and report tests share: a project dir, and ansible_runner.run faked on demand."""

import sys
from pathlib import Path

import ansible_runner
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import FakeRunner, make_project  # noqa: E402


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project")


@pytest.fixture
def fake(monkeypatch):
    """fake(events, ...) puts a FakeRunner in place of ansible_runner.run and returns it."""
    def install(*args, **kwargs):
        runner = FakeRunner(*args, **kwargs)
        monkeypatch.setattr(ansible_runner, "run", runner)
        return runner
    return install
