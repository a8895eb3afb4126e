"""leanvibe_runner: the leanvibe.deploy playbooks through ansible-runner, for CI pipelines, AWX and programs."""

from .api import RunHandle, blue_green, canary, find_project_dir, history, probe, report, rollback, run, status
from .codes import ExitCode, UsageError
from .events import RunEvent
from .reporting import ReportResult, compute_report, report_schema
from .result import RunResult, StepResult, result_schema

VERSION = "0.1.0"

__all__ = ["run", "canary", "blue_green", "rollback", "probe", "status", "history", "report", "RunHandle", "RunResult",
           "StepResult", "RunEvent", "ExitCode", "UsageError", "find_project_dir", "result_schema", "ReportResult",
           "compute_report", "report_schema", "VERSION"]
