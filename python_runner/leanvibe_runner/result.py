"""Typed results of a run: what every caller (CLI, API, CI) gets back."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from .codes import ExitCode

SCHEMA_VERSION = 1


@dataclasses.dataclass
class StepResult:
    """One canary step: the canary's share of traffic and how its gate judged it."""

    weight: int
    verdict: str = "running"
    """pass, fail or running (the run ended inside the step)."""
    probes: Optional[str] = None
    """pass or fail: the quick probes through the LB."""
    analysis: Optional[str] = None
    """pass, fail or inconclusive: the step's real traffic, worst over the LBs."""
    reasons: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class JsonOutcome:
    """What every result the runner returns shares: `ok`, and a JSON form that names its schema version."""

    exit_code: ExitCode
    schema_version = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        data["exit_code"] = int(self.exit_code)
        data["schema_version"] = self.schema_version
        return data


def packaged_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped with the package (result.schema.json, report.schema.json)."""
    import json
    from importlib import resources

    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@dataclasses.dataclass
class RunResult(JsonOutcome):
    command: str
    status: str
    """promoted, unchanged, checked, rolled_back, failed, passed, serving, not_serving, invalid, locked,
    rollback_failed, unknown or cancelled."""
    exit_code: ExitCode
    version: Optional[str] = None
    from_version: Optional[str] = None
    steps: list[StepResult] = dataclasses.field(default_factory=list)
    rolled_back: bool = False
    reasons: list[str] = dataclasses.field(default_factory=list)
    duration_s: float = 0.0
    artifact_dir: Optional[str] = None
    inventory: Optional[str] = None
    rollback_ms: Optional[int] = None
    cancelled: bool = False
    lock_held_by: Optional[dict[str, Any]] = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    """What the playbook published besides the fields above (status: ledger, weights, history; probe: probes)."""


def result_schema() -> dict[str, Any]:
    """The JSON Schema of RunResult.to_dict() (result.schema.json, shipped with the package)."""
    return packaged_schema("result.schema.json")
