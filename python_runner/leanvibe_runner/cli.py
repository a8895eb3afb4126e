"""leanvibe-deploy: the command line over the Python API. Exit codes: see codes.ExitCode and the README."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, NoReturn, Optional, Sequence

from . import api
from .codes import ExitCode, UsageError
from .collection import probe_modes
from .progress import progress_for
from .reporting import ReportResult, write_report
from .result import RunResult

PROG = "leanvibe-deploy"
EPILOG = ("exit codes: 0 success or promoted; 1 failed and rolled back cleanly; 2 usage or configuration error; "
          "3 failed and the rollback failed or the state is unknown (a human is needed); 4 another deployment holds the lock")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageExit(message, self.prog)


class _UsageExit(Exception):
    def __init__(self, message: str, prog: str):
        super().__init__(message)
        self.prog = prog


def _probe_mode_choices() -> Optional[tuple[str, ...]]:
    try:
        return probe_modes()
    except UsageError:
        return None  # without the collection nothing can run; the API says why


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-i", "--inventory", required=True,
                        help="inventory path, or the name of one under inventories/ (local, staging, production)")
    common.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                        help="extra variables: KEY=VALUE, @FILE (YAML or JSON) or a JSON object; may repeat")
    common.add_argument("--artifact-dir", help="ansible-runner's private data dir (default: a new temporary dir, kept)")
    common.add_argument("--project-dir", help="folder holding playbooks/ (default: this checkout or the installed collection)")
    common.add_argument("--json", action="store_true", help="print one JSON result on stdout; progress goes to stderr")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress, only the result")

    parser = _Parser(prog=PROG, description="Blue-green and canary releases behind nginx, through ansible-runner.",
                     epilog=EPILOG)
    parser.add_argument("--about", action="version", version="%(prog)s 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    canary = sub.add_parser("canary", parents=[common], help="progressive canary with gates and automatic rollback",
                            epilog=EPILOG)
    canary.add_argument("--version", required=True, help="release to deploy, for example 2.2.0")
    canary.add_argument("--steps", help="canary weights in percent, for example 10,25,50,100")
    canary.add_argument("--check", action="store_true", help="print the plan only (check mode)")

    blue_green = sub.add_parser("blue-green", parents=[common], help="deploy to the idle color and switch after probes",
                                epilog=EPILOG)
    blue_green.add_argument("--version", required=True, help="release to deploy")
    blue_green.add_argument("--check", action="store_true", help="check mode with diffs")

    rollback = sub.add_parser("rollback", parents=[common], help="traffic back to the previous stable release",
                              epilog=EPILOG)
    rollback.add_argument("--version", dest="target_version", help="release to roll back to (default: the previous one)")
    rollback.add_argument("--emergency", action="store_true", help="skip the checks and take over any deploy lock")
    rollback.add_argument("--reason", help="why, for the ledger and the notifications")

    probe = sub.add_parser("probe", parents=[common], help="run the synthetic probes through the LB", epilog=EPILOG)
    probe.add_argument("--mode", choices=_probe_mode_choices(), default="comprehensive")

    sub.add_parser("status", parents=[common], help="what serves, colors, weights and the last deployments",
                   epilog=EPILOG)
    history = sub.add_parser("history", parents=[common], help="the deployment ledger's history", epilog=EPILOG)
    history.add_argument("--limit", type=int, default=20, help="entries to show (1 to 1000, default 20)")
    report = sub.add_parser("report", parents=[common], epilog=EPILOG,
                            help="deployments, autonomous share, change failure rate, rollbacks, MTTR and uptime")
    report.add_argument("--window", default="30d", help="the period of the ledger figures: <n>h or <n>d, 1h to 365d (default 30d)")
    report.add_argument("--monitoring-url", help="the monitoring service for uptime (default: the inventory's monitoring_url)")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"extravars": args.extra_vars, "artifact_dir": args.artifact_dir,
                               "project_dir": args.project_dir}
    for name in ("version", "steps", "check", "target_version", "emergency", "reason", "mode", "limit"):
        value = getattr(args, name, None)
        if value is not None and value is not False:
            options[name] = value
    return options


def _print_summary(result: RunResult, out) -> None:
    write = out.write
    head = "%s %s" % (result.command, result.version or "")
    write("%s: %s (exit %d) in %.1f s\n" % (head.strip(), result.status, int(result.exit_code), result.duration_s))
    if result.from_version and result.command in ("canary", "blue-green"):
        write("  from %s\n" % result.from_version)
    for step in result.steps:
        write("  step %3d %%  %-4s  probes %-4s  traffic %-12s %s\n" % (
            step.weight, step.verdict, step.probes or "-", step.analysis or "-", "; ".join(step.reasons)))
    if result.rolled_back:
        moved = ("from %s to %s" % (result.from_version, result.version) if result.command == "rollback"
                 else "to %s" % result.from_version)
        write("  rolled back %s%s\n" % (moved, " in %d ms" % result.rollback_ms if result.rollback_ms is not None else ""))
    for reason in result.reasons:
        write("  reason: %s\n" % reason)
    details = result.details
    if result.command == "status":
        write("  LB %s answers %s; active color %s; versions %s; weights %s\n" % (
            details.get("lb_url"), details.get("lb_status"), details.get("active_color"),
            json.dumps(details.get("versions")), json.dumps(details.get("weights"))))
        if details.get("lock"):
            write("  deploy lock held by %s\n" % json.dumps(details["lock"].get("holder")))
    if result.command in ("status", "history"):
        for entry in details.get("history") or []:
            write("  %-20s %-8s %-10s -> %-10s %-12s %s\n" % (
                str(entry.get("finished") or entry.get("started"))[:19], entry.get("type"),
                entry.get("from_version") or "-", entry.get("version"), entry.get("outcome"),
                "; ".join(entry.get("reasons") or [])))
    if result.command == "probe":
        for item in details.get("probes") or []:
            write("  %-20s %-6s %5s ms  %s\n" % (item.get("name"), "pass" if item.get("passed") else "FAIL",
                                                 item.get("duration_ms"), item.get("detail")))
    if result.lock_held_by:
        write("  the deploy lock is held by %s\n" % json.dumps(result.lock_held_by))
    if result.artifact_dir:
        write("  artifacts: %s\n" % result.artifact_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command; a crash or a second Ctrl-C exits 3 (the state is unknown), never 1 (which means clean)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted: the state is unknown, check it with `%s status`\n" % (PROG, PROG))
    except Exception as exc:  # pylint: disable=broad-except
        sys.stderr.write("%s: internal error (%s: %s): the state is unknown\n" % (PROG, type(exc).__name__, exc))
    return int(ExitCode.NEEDS_HUMAN)


def _write_result(result: RunResult | ReportResult, as_json: bool) -> None:
    try:
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
        elif isinstance(result, ReportResult):
            write_report(result.to_dict(), sys.stdout, rich=sys.stdout.isatty() and sys.platform != "win32")
        else:
            _print_summary(result, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; the exit code still tells
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except _UsageExit as exc:
        return _usage_exit(str(exc), want_json, argv)

    progress_stream = sys.stderr if args.json else sys.stdout
    progress = progress_for(progress_stream, quiet=args.quiet)
    cancel = threading.Event()

    def on_signal(signum, _frame):  # the first Ctrl-C aborts cleanly; a canary rolls back
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        if args.command == "report":
            result = api.report(args.inventory, args.window, monitoring_url=args.monitoring_url, extravars=args.extra_vars,
                                artifact_dir=args.artifact_dir, project_dir=args.project_dir, on_event=progress,
                                cancel=cancel.is_set)
        else:
            result = api.run(args.command, args.inventory, on_event=progress, cancel=cancel.is_set, **_options(args))
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        if progress is not None:
            progress.close()
    assert isinstance(result, (RunResult, ReportResult))
    if result.exit_code == ExitCode.USAGE and result.artifact_dir is None:
        return _usage_exit(result.reasons[0] if result.reasons else "invalid arguments", args.json, argv, result)
    _write_result(result, args.json)
    return int(result.exit_code)


def _usage_exit(message: str, want_json: bool, argv: Sequence[str], result: Optional[RunResult | ReportResult] = None) -> int:
    sys.stderr.write("%s: error: %s\n" % (PROG, message))
    if want_json:
        command = next((a for a in argv if not a.startswith("-")), None)
        if result is None and command == "report":
            result = ReportResult(status="invalid", exit_code=ExitCode.USAGE, reasons=[message])
        result = result or RunResult(command=str(command), status="invalid", exit_code=ExitCode.USAGE, reasons=[message])
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return int(ExitCode.USAGE)


if __name__ == "__main__":
    sys.exit(main())
