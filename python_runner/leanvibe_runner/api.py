"""The Python API: one function per playbook, each returning a RunResult (or a RunHandle in the background).

    from leanvibe_runner import canary
    result = canary("inventories/staging", "2.2.0", steps=[10, 50, 100], on_event=print)
    if not result.ok: ...

Every function takes the same keywords: extravars, on_event (called with each RunEvent), cancel (a callable
polled about twice a second; once it returns True the run stops: a canary that already started aborts
through its own rollback, anything else is stopped), artifact_dir (ansible-runner's private data dir; a
fresh temporary dir by default, kept for inspection), project_dir (where playbooks/ lives) and background
(return a RunHandle at once instead of waiting).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from .codes import ExitCode, UsageError
from .events import BEFORE_CHANGES, RunEvent, RunInterpreter
from .collection import probe_modes
from .inputs import check_version, parse_extra_vars, parse_steps, resolve_inventory
from .reporting import ReportResult, Window, check_monitoring_url, compute_report, fetch_uptime, parse_window, utcnow
from .result import RunResult

EventCallback = Callable[[RunEvent], None]
CancelCallback = Callable[[], bool]
ExtraVars = Union[Mapping[str, Any], Iterable[Any], None]

PLAYBOOKS = {
    "canary": "playbooks/canary.yml",
    "blue-green": "playbooks/blue_green.yml",
    "rollback": "playbooks/rollback.yml",
    "probe": "playbooks/probes.yml",
    "status": "playbooks/status.yml",
    "history": "playbooks/status.yml",
}
# A canary asked to abort gets this long to roll itself back before it is killed.
ABORT_GRACE_S = 300.0
# Environment variables whose values ansible-runner's artifacts must not keep (its `command` file records them all).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|AUTH", re.IGNORECASE)
REDACTED = "********"


def scrub_artifacts(private_dir: Path, artifact_dir: Path) -> None:
    """Keep secrets out of what a run leaves behind: the extra vars given with -e (they may hold secrets),
    and the values of secret-looking variables in the environment ansible-runner records."""
    (private_dir / "env" / "extravars").unlink(missing_ok=True)
    command_file = artifact_dir / "command"
    try:
        command = json.loads(command_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    env = command.get("env")
    if isinstance(env, dict):
        command["env"] = {key: REDACTED if SECRET_NAME.search(key) and value else value for key, value in env.items()}
    fd = os.open(command_file, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(command, handle)


def find_project_dir(explicit: Optional[Union[str, Path]] = None) -> Path:
    """The folder that holds playbooks/: the argument, $LEANVIBE_PROJECT_DIR, this checkout, or the installed collection."""
    if explicit:
        if not (Path(explicit) / PLAYBOOKS["canary"]).is_file():
            raise UsageError("project dir %s holds no %s" % (explicit, PLAYBOOKS["canary"]))
        return Path(explicit).resolve()
    candidates = []
    if os.environ.get("LEANVIBE_PROJECT_DIR"):
        candidates.append(Path(os.environ["LEANVIBE_PROJECT_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2])
    try:
        import ansible_collections.leanvibe.deploy as collection  # installed collection (an EE, AWX)

        candidates.extend(Path(p) for p in collection.__path__)
    except ImportError:
        pass
    for candidate in candidates:
        if (candidate / PLAYBOOKS["canary"]).is_file():
            return candidate.resolve()
    raise UsageError("cannot find the leanvibe.deploy playbooks: pass --project-dir or set LEANVIBE_PROJECT_DIR")


class RunHandle:
    """A run in the background: ``wait()`` for its RunResult, ``cancel()`` to stop it."""

    def __init__(self, target: Callable[[CancelCallback], RunResult], cancel: Optional[CancelCallback]):
        self._cancel_requested = threading.Event()
        self._user_cancel = cancel
        self._result: Optional[RunResult] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, args=(target,), name="leanvibe-deploy-run", daemon=True)
        self._thread.start()

    def _should_cancel(self) -> bool:
        return self._cancel_requested.is_set() or bool(self._user_cancel and self._user_cancel())

    def _main(self, target: Callable[[CancelCallback], RunResult]) -> None:
        try:
            self._result = target(self._should_cancel)
        except BaseException as exc:  # handed to wait()
            self._error = exc

    def cancel(self) -> None:
        self._cancel_requested.set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> Optional[RunResult]:
        """The result, or None when the run is still going after ``timeout`` seconds."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._result


def _usage_result(command: str, error: UsageError, started: float) -> RunResult:
    return RunResult(command=command, status="invalid", exit_code=ExitCode.USAGE, reasons=[str(error)],
                     duration_s=round(time.monotonic() - started, 3))


def _execute(command: str, extravars: dict[str, Any], *, on_event: Optional[EventCallback],
             cancel: Optional[CancelCallback], artifact_dir: Optional[Union[str, Path]], project: Path,
             inventory_path: Path, check: bool = False, playbook: Optional[str] = None) -> RunResult:
    import ansible_runner

    started = time.monotonic()
    if artifact_dir:
        private_dir = Path(artifact_dir).expanduser().resolve()
        private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        private_dir = Path(tempfile.mkdtemp(prefix="leanvibe-deploy-%s-" % command))
    interpreter = RunInterpreter(command)
    abort_file = private_dir / "abort"
    if command == "canary":
        abort_file.unlink(missing_ok=True)
        extravars = dict(extravars, canary_abort_file=str(abort_file))
    state = {"cancel_at": None, "cancelled": False, "hard": False}

    def emit(event: RunEvent) -> None:
        if on_event is not None:
            on_event(event)

    def event_handler(event: dict[str, Any]) -> bool:
        for progress in interpreter.feed(event):
            emit(progress)
        return True  # keep ansible-runner's artifacts of every event

    def cancel_callback() -> bool:
        # ansible-runner asks again on every poll and takes the last answer: once stopping, keep saying so.
        if state["hard"]:
            return True
        if state["cancel_at"] is None:
            if cancel is None or not cancel():
                return False
            state["cancel_at"] = time.monotonic()
            state["cancelled"] = True
            if command == "canary" and interpreter.phase not in (None, "checked", "unchanged"):
                # Changes may have started: abort through the playbook's own rollback.
                abort_file.write_text("aborted by the caller\n", encoding="utf-8")
                emit(RunEvent("phase", "aborting: the canary rolls back at its next gate", {"abort_file": str(abort_file)}))
                return False
            emit(RunEvent("phase", "cancelling: stopping ansible-playbook", {}))
            state["hard"] = True
            return True
        # A canary that was asked to abort and has not ended within the grace period is stopped after all.
        state["hard"] = time.monotonic() - state["cancel_at"] > ABORT_GRACE_S
        return state["hard"]

    cmdline = "--check --diff" if check else None
    emit(RunEvent("started", "%s on %s (artifacts in %s)" % (command, inventory_path, private_dir),
                  {"inventory": str(inventory_path), "artifact_dir": str(private_dir)}))
    # The ansible-playbook next to this interpreter (the venv's), whatever the caller's PATH.
    bin_dir = os.path.dirname(sys.executable)
    envvars = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1",
               "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", os.defpath)])}
    if (project / "ansible.cfg").is_file():
        envvars["ANSIBLE_CONFIG"] = str(project / "ansible.cfg")
    runner = ansible_runner.run(
        private_data_dir=str(private_dir), project_dir=str(project), playbook=playbook or PLAYBOOKS[command],
        inventory=str(inventory_path), extravars=extravars, envvars=envvars, cmdline=cmdline,
        quiet=True, event_handler=event_handler, cancel_callback=cancel_callback,
        settings={"pexpect_timeout": 0.5, "suppress_ansible_output": True})
    scrub_artifacts(private_dir, Path(runner.config.artifact_dir))
    result = interpreter.result(runner.rc, runner.status, cancelled=state["cancelled"])
    result.duration_s = round(time.monotonic() - started, 3)
    result.artifact_dir = str(runner.config.artifact_dir)
    result.inventory = str(inventory_path)
    emit(RunEvent("finished", "%s: %s (exit %d)" % (command, result.status, int(result.exit_code)), result.to_dict()))
    return result


def run(command: str, inventory: Any, *, version: Optional[str] = None, steps: Any = None,
        target_version: Optional[str] = None, emergency: bool = False, reason: Optional[str] = None,
        mode: Optional[str] = None, limit: Optional[int] = None, check: bool = False,
        extravars: ExtraVars = None, on_event: Optional[EventCallback] = None, cancel: Optional[CancelCallback] = None,
        artifact_dir: Optional[Union[str, Path]] = None, project_dir: Optional[Union[str, Path]] = None,
        background: bool = False) -> Union[RunResult, RunHandle]:
    """Run one command's playbook. Bad input gives an ``invalid`` result (exit code 2) and starts nothing."""
    started = time.monotonic()
    try:
        if command not in PLAYBOOKS:
            raise UsageError("unknown command %r: use one of %s" % (command, ", ".join(PLAYBOOKS)))
        project = find_project_dir(project_dir)
        inventory_path = resolve_inventory(inventory, project)
        variables = parse_extra_vars(extravars)
        if command in ("canary", "blue-green"):
            if version is None:
                raise UsageError("%s needs the version to deploy (--version X)" % command)
            variables["app_version"] = check_version(version)
        elif version is not None and command != "rollback":
            raise UsageError("%s takes no version" % command)
        if command == "canary" and steps is not None:
            variables["canary_steps"] = parse_steps(steps)
        elif steps is not None:
            raise UsageError("only canary takes steps")
        if command == "rollback":
            target = target_version if target_version is not None else version
            if target is not None:
                variables["target_version"] = check_version(target, "target version")
            variables["emergency"] = bool(emergency)
            if reason:
                variables["rollback_reason"] = str(reason)
        if command == "probe":
            if mode is not None and mode not in probe_modes():
                raise UsageError("probe mode %r is not one of %s" % (mode, ", ".join(probe_modes())))
            variables["probe_mode"] = mode or "comprehensive"
        if command in ("status", "history"):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000):
                raise UsageError("the history limit must be a whole number from 1 to 1000")
            variables["history_limit"] = limit or (20 if command == "history" else 5)
        if check and command not in ("canary", "blue-green", "rollback"):
            raise UsageError("%s changes nothing; --check does not apply" % command)
    except UsageError as exc:
        result = _usage_result(command, exc, started)
        if on_event is not None:
            on_event(RunEvent("finished", "%s: invalid: %s" % (command, exc), result.to_dict()))
        if background:
            return RunHandle(lambda _cancel: result, cancel)
        return result

    def target(should_cancel: Optional[CancelCallback]) -> RunResult:
        return _execute(command, variables, on_event=on_event, cancel=should_cancel,
                        artifact_dir=artifact_dir, project=project, inventory_path=inventory_path, check=check)

    if background:
        return RunHandle(target, cancel)
    return target(cancel)


def canary(inventory: Any, version: str, *, steps: Any = None, **options: Any) -> Union[RunResult, RunHandle]:
    """Progressive canary of ``version`` (playbooks/canary.yml); exit code 0 when promoted, 1 when rolled back."""
    return run("canary", inventory, version=version, steps=steps, **options)


def blue_green(inventory: Any, version: str, **options: Any) -> Union[RunResult, RunHandle]:
    """Blue-green switch to ``version`` behind a probe gate (playbooks/blue_green.yml)."""
    return run("blue-green", inventory, version=version, **options)


def rollback(inventory: Any, *, target_version: Optional[str] = None, emergency: bool = False,
             reason: Optional[str] = None, **options: Any) -> Union[RunResult, RunHandle]:
    """Traffic back to the previous stable release, or ``target_version`` (playbooks/rollback.yml)."""
    return run("rollback", inventory, target_version=target_version, emergency=emergency, reason=reason, **options)


def probe(inventory: Any, *, mode: str = "comprehensive", **options: Any) -> Union[RunResult, RunHandle]:
    """The synthetic probe suite through the environment's LB (playbooks/probes.yml)."""
    return run("probe", inventory, mode=mode, **options)


def status(inventory: Any, **options: Any) -> Union[RunResult, RunHandle]:
    """What serves, the ledger's colors, versions and weights, and the last deployments (playbooks/status.yml)."""
    return run("status", inventory, **options)


def history(inventory: Any, *, limit: int = 20, **options: Any) -> Union[RunResult, RunHandle]:
    """The last ``limit`` entries of the deployment ledger (playbooks/status.yml)."""
    return run("history", inventory, limit=limit, **options)


# The report reads the whole ledger: every history entry, however many.
REPORT_HISTORY_LIMIT = 1000000


def report(inventory: Any, window: Any = "30d", *, monitoring_url: Optional[str] = None, extravars: ExtraVars = None,
           on_event: Optional[EventCallback] = None, cancel: Optional[CancelCallback] = None,
           artifact_dir: Optional[Union[str, Path]] = None, project_dir: Optional[Union[str, Path]] = None,
           background: bool = False, timeout_s: float = 5.0) -> Union[ReportResult, RunHandle]:
    """Delivery figures of an environment over ``window`` (``<n>h`` or ``<n>d``, 1h to 365d): deployments,
    autonomous share, change failure rate, rollbacks, MTTR from the ledger (playbooks/status.yml), and uptime
    over 24h, 7d and 30d from the monitoring service (``monitoring_url``, else the inventory's ``monitoring_url``).

    Exit code 0 with the figures; 2 for bad input (nothing runs); 3 when the ledger cannot be read. A monitoring
    service that is not set or not reachable is a note in the uptime figures, not a failure.
    """
    started = time.monotonic()
    try:
        span = parse_window(window)
        url = check_monitoring_url(monitoring_url) if monitoring_url is not None else None
        project = find_project_dir(project_dir)
        inventory_path = resolve_inventory(inventory, project)
        variables = parse_extra_vars(extravars)
        variables["history_limit"] = REPORT_HISTORY_LIMIT
    except UsageError as exc:
        invalid = ReportResult(status="invalid", exit_code=ExitCode.USAGE, reasons=[str(exc)],
                               duration_s=round(time.monotonic() - started, 3))
        if on_event is not None:
            on_event(RunEvent("finished", "report: invalid: %s" % exc, invalid.to_dict()))
        if background:
            return RunHandle(lambda _cancel: invalid, cancel)  # type: ignore[arg-type,return-value]
        return invalid

    def target(should_cancel: Optional[CancelCallback]) -> ReportResult:
        return _report(span, url, variables, on_event=on_event, cancel=should_cancel, artifact_dir=artifact_dir,
                       project=project, inventory_path=inventory_path, started=started, timeout_s=timeout_s)

    if background:
        return RunHandle(target, cancel)  # type: ignore[arg-type,return-value]
    return target(cancel)


def _report(span: Window, url: Optional[str], variables: dict[str, Any], *, on_event: Optional[EventCallback],
            cancel: Optional[CancelCallback], artifact_dir: Optional[Union[str, Path]], project: Path,
            inventory_path: Path, started: float, timeout_s: float) -> ReportResult:
    def forward(event: RunEvent) -> None:
        # The end of the ledger read is not the end of the report: its own "finished" comes last.
        if on_event is not None and event.kind != "finished":
            on_event(event)

    run_result = _execute("report", variables, on_event=forward, cancel=cancel, artifact_dir=artifact_dir,
                          project=project, inventory_path=inventory_path, playbook=PLAYBOOKS["status"])
    details = run_result.details
    result = ReportResult(status="reported", exit_code=ExitCode.OK, environment=details.get("environment"),
                          app=details.get("app"), artifact_dir=run_result.artifact_dir, inventory=run_result.inventory)
    history = details.get("history")
    if run_result.cancelled:
        result.status, result.exit_code = "cancelled", ExitCode.FAILED_CLEAN
        result.reasons = list(run_result.reasons) or ["cancelled by the caller"]
    elif run_result.exit_code == ExitCode.USAGE:
        result.status, result.exit_code = "invalid", ExitCode.USAGE
        result.reasons = list(run_result.reasons) or ["the inventory or its hosts are not usable"]
    elif not isinstance(history, list):
        # status.yml publishes the history once the ledger was read; without it the ledger is unknown.
        result.status, result.exit_code = "unreadable", ExitCode.NEEDS_HUMAN
        result.reasons = ["the ledger could not be read: %s" % "; ".join(run_result.reasons or ["no history published"])]
    if result.exit_code != ExitCode.OK:
        result.duration_s = round(time.monotonic() - started, 3)
        if on_event is not None:
            on_event(RunEvent("finished", "report: %s (exit %d)" % (result.status, int(result.exit_code)), result.to_dict()))
        return result
    configured = details.get("monitoring_url")
    source = url if url is not None else (configured if configured not in ("", "None") else None)
    uptime, result.monitoring = fetch_uptime(source, result.environment, timeout_s=timeout_s)
    now = utcnow()
    computed = compute_report(history or [], uptime, span, now)
    result.generated_at = computed["window"]["end"]
    result.window = computed["window"]
    result.ledger = computed["ledger"]
    result.figures = computed["figures"]
    result.duration_s = round(time.monotonic() - started, 3)
    if on_event is not None:
        on_event(RunEvent("finished", "report: %d deployments in %s" % (result.figures["deployments"]["value"], span.label),
                          result.to_dict()))
    return result


__all__ = ["run", "canary", "blue_green", "rollback", "probe", "status", "history", "report", "RunHandle",
           "find_project_dir", "BEFORE_CHANGES"]
