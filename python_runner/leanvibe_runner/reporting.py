"""The deployment report: delivery figures from the ledger's history and the monitor's probe rounds.

``compute_report(history, uptime_by_window, window, now)`` does no I/O: it takes the ledger's history entries (as
playbooks/status.yml publishes them), what the monitoring service's ``/api/uptime`` answered per window, the
report's window (``parse_window``) and the end of that window, and returns the figures. ``fetch_uptime`` asks the
monitoring service; ``leanvibe_runner.api.report`` puts the two together.

Every figure is an object with ``value``, ``unit``, ``window`` ({start, end, label}), ``data_points`` (how many
entries or probe rounds the value rests on), a one-sentence ``definition`` and a ``note`` (null, or why the value
is missing or rests on fewer entries than were counted).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import statistics
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterable, Mapping, Optional

from .codes import ExitCode, UsageError
from .result import JsonOutcome, packaged_schema

WINDOW_PATTERN = re.compile(r"([1-9][0-9]{0,5})([hd])")
MIN_WINDOW = datetime.timedelta(hours=1)
MAX_WINDOW = datetime.timedelta(days=365)
# The windows the monitoring service keeps (its retention is 30 days at most by default).
UPTIME_WINDOWS = ("24h", "7d", "30d")
DEPLOYMENT_TYPES = ("deploy", "promote")
SUCCESS_OUTCOMES = ("promoted", "deployed")
OUTCOMES = ("promoted", "deployed", "rolled_back", "failed", "interrupted")
MONITOR_TIMEOUT_S = 5.0

DEFINITIONS = {
    "deployments": (
        "History entries of type deploy or promote that finished in the window, per outcome; the initial release"
        " site.yml records (outcome deployed with no from_version) is not counted, since it replaced nothing."),
    "autonomous_share": (
        "Share of the window's deployments that finished without a human: promoted or deployed by an autonomous run"
        " and not rolled back by hand afterwards, or rolled back or failed by the pipeline itself; an interrupted run,"
        " a rollback by hand and a non-autonomous entry each need a human."),
    "change_failure_rate": (
        "Share of the window's deployments that failed: rolled back automatically, failed before taking traffic,"
        " rolled back by hand while in progress, or promoted and rolled back later (a rollback entry whose"
        " from_version is the release that entry put in service); interrupted runs have no known outcome and are left"
        " out of both counts."),
    "rollbacks": (
        "Rollbacks that finished in the window (outcome rolled_back: canaries the pipeline rolled back and rollback"
        " entries), automatic or by hand; duration from rollback.duration_ms, else duration_s of a rollback entry;"
        " rollbacks without either are counted but not in the median and maximum."),
    "mttr": (
        "Mean time to restore: seconds from the failure detected (rollback.detected, else rollback.started, else the"
        " rollback entry's start) to stable serving again (rollback.restored, else the entry's finish), over the"
        " window's rollbacks that carry those times; value is the median, mean the mean."),
    "uptime": (
        "Share of the monitoring service's probe rounds in the window whose basic health probe passed (uptime_pct of"
        " GET /api/uptime); data_points is the number of rounds; success_rate is the share of all probe checks that"
        " passed."),
}


# --- windows and times ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Window:
    label: str
    length: datetime.timedelta

    def bounds(self, now: datetime.datetime) -> dict[str, str]:
        return {"start": iso(now - self.length), "end": iso(now), "label": self.label}


def parse_window(text: Any) -> Window:
    """``<n>h`` or ``<n>d`` from 1h to 365d; anything else is a UsageError."""
    value = "" if text is None else str(text).strip()
    match = WINDOW_PATTERN.fullmatch(value)
    if not match:
        raise UsageError("window %r is not valid: use <n>h or <n>d, from 1h to 365d, for example 24h, 7d or 30d" % value)
    number, unit = int(match.group(1)), match.group(2)
    length = datetime.timedelta(hours=number) if unit == "h" else datetime.timedelta(days=number)
    if not MIN_WINDOW <= length <= MAX_WINDOW:
        raise UsageError("window %s is out of range: it must be from 1h to 365d" % value)
    return Window(value, length)


def iso(moment: datetime.datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the ledger writes times."""
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def parse_time(text: Any) -> Optional[datetime.datetime]:
    """An aware UTC datetime from an ISO 8601 time (no zone means UTC); None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# --- the ledger's history -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Entry:
    data: Mapping[str, Any]
    index: int
    started: Optional[datetime.datetime]
    finished: datetime.datetime
    rolled_back_later_by: Optional["_Entry"] = None

    @property
    def kind(self) -> str:
        return str(self.data.get("type") or "")

    @property
    def outcome(self) -> str:
        return str(self.data.get("outcome") or "")

    @property
    def autonomous(self) -> bool:
        return bool(self.data.get("autonomous", True))

    @property
    def is_initial_release(self) -> bool:
        return self.outcome == "deployed" and not self.data.get("from_version")

    @property
    def is_deployment(self) -> bool:
        return self.kind in DEPLOYMENT_TYPES and not self.is_initial_release

    @property
    def is_rollback(self) -> bool:
        return self.outcome == "rolled_back" and self.kind in DEPLOYMENT_TYPES + ("rollback",)

    @property
    def timing(self) -> Mapping[str, Any]:
        timing = self.data.get("rollback")
        return timing if isinstance(timing, Mapping) else {}

    def rollback_duration_ms(self) -> Optional[float]:
        value = self.timing.get("duration_ms")
        if _is_number(value) and value >= 0:
            return float(value)
        seconds = self.data.get("duration_s")
        if self.kind == "rollback" and _is_number(seconds) and seconds >= 0:
            return round(float(seconds) * 1000.0, 3)
        return None

    def restore_seconds(self) -> Optional[float]:
        timing = self.timing
        begun = parse_time(timing.get("detected")) or parse_time(timing.get("started"))
        if begun is None and self.kind == "rollback":
            begun = self.started
        restored = parse_time(timing.get("restored"))
        if restored is None and (timing or self.kind == "rollback"):
            restored = self.finished
        if begun is None or restored is None:
            return None
        return round(max(0.0, (restored - begun).total_seconds()), 3)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entries(history: Iterable[Any], now: datetime.datetime) -> tuple[list[_Entry], int]:
    """The history entries that finished by ``now``, oldest first; and how many were skipped (no readable finish)."""
    entries, skipped = [], 0
    for index, data in enumerate(history or []):
        finished = parse_time(data.get("finished")) if isinstance(data, Mapping) else None
        if finished is None:
            skipped += 1
            continue
        if finished > now:
            continue
        entries.append(_Entry(data, index, parse_time(data.get("started")), finished))
    entries.sort(key=lambda entry: (entry.finished, entry.index))
    return entries, skipped


def _mark_later_rollbacks(entries: list[_Entry]) -> None:
    """Follow what serves: a rollback entry whose from_version is the release a deployment put in service rolls
    that deployment back (automatically or by hand)."""
    serving: Optional[_Entry] = None
    for entry in entries:
        if entry.kind in DEPLOYMENT_TYPES and entry.outcome in SUCCESS_OUTCOMES:
            serving = entry
        elif entry.kind == "rollback" and entry.outcome == "rolled_back":
            if (serving is not None and serving.is_deployment and serving.rolled_back_later_by is None
                    and entry.data.get("from_version") == serving.data.get("version")):
                serving.rolled_back_later_by = entry
            # What serves now came back by a rollback, not by a deployment.
            serving = None
        # failed, interrupted and canaries rolled back in progress leave the stable release where it was.


# --- the figures ----------------------------------------------------------------------------------------------------

def _pct(part: int, whole: int) -> Optional[float]:
    return round(100.0 * part / whole, 2) if whole else None


def _figure(name: str, value: Any, unit: str, bounds: Mapping[str, str], data_points: int,
            note: Optional[str] = None, **extra: Any) -> dict[str, Any]:
    figure = {"value": value, "unit": unit, "window": dict(bounds), "data_points": data_points,
              "definition": DEFINITIONS[name], "note": note}
    figure.update(extra)
    return figure


def _deployment_class(entry: _Entry) -> str:
    """How a deployment ended: succeeded, auto_rolled_back, failed_before_traffic, rolled_back_by_hand_in_progress,
    rolled_back_later_automatically, rolled_back_later_by_hand, or interrupted."""
    if entry.outcome in SUCCESS_OUTCOMES:
        later = entry.rolled_back_later_by
        if later is None:
            return "succeeded"
        return "rolled_back_later_automatically" if later.autonomous else "rolled_back_later_by_hand"
    if entry.outcome == "rolled_back":
        return "auto_rolled_back" if entry.autonomous else "rolled_back_by_hand_in_progress"
    if entry.outcome == "failed":
        return "failed_before_traffic"
    return "interrupted"


def _needs_no_human(entry: _Entry, kind: str) -> bool:
    if not entry.autonomous:
        return False
    return kind in ("succeeded", "rolled_back_later_automatically", "auto_rolled_back", "failed_before_traffic")


def compute_report(history: Iterable[Any], uptime_by_window: Optional[Mapping[str, Any]], window: Window,
                   now: datetime.datetime) -> dict[str, Any]:
    """The report's figures (a dict keyed by figure) from the ledger's history and the monitor's answers.

    ``uptime_by_window`` maps 24h, 7d and 30d to the monitor's /api/uptime answer, or to ``{"note": why}`` when
    there is none. No I/O: the same input gives the same figures.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    bounds = window.bounds(now)
    start = now - window.length
    entries, skipped = _entries(history, now)
    _mark_later_rollbacks(entries)
    in_window = [entry for entry in entries if start <= entry.finished <= now]

    deployments = [entry for entry in in_window if entry.is_deployment]
    initial = sum(1 for entry in in_window if entry.kind in DEPLOYMENT_TYPES and entry.is_initial_release)
    by_outcome = {outcome: 0 for outcome in OUTCOMES}
    classes = {}
    for entry in deployments:
        by_outcome[entry.outcome if entry.outcome in by_outcome else "interrupted"] += 1
        classes[id(entry)] = _deployment_class(entry)
    figures: dict[str, Any] = {}
    figures["deployments"] = _figure(
        "deployments", len(deployments), "deployments", bounds, len(deployments),
        "%d initial release%s by site.yml not counted" % (initial, "" if initial == 1 else "s") if initial else None,
        by_outcome=by_outcome, initial_releases_excluded=initial)

    autonomous = sum(1 for entry in deployments if _needs_no_human(entry, classes[id(entry)]))
    figures["autonomous_share"] = _figure(
        "autonomous_share", _pct(autonomous, len(deployments)), "%", bounds, len(deployments),
        None if deployments else "no deployments finished in the window",
        autonomous=autonomous, needed_a_human=len(deployments) - autonomous)

    judged = [entry for entry in deployments if classes[id(entry)] != "interrupted"]
    breakdown = {
        "auto_rolled_back": 0, "failed_before_traffic": 0, "rolled_back_by_hand_in_progress": 0,
        "rolled_back_later_automatically": 0, "rolled_back_later_by_hand": 0,
    }
    for entry in judged:
        kind = classes[id(entry)]
        if kind in breakdown:
            breakdown[kind] += 1
    failures = sum(breakdown.values())
    interrupted = len(deployments) - len(judged)
    notes = []
    if not judged:
        notes.append("no deployment with a known outcome finished in the window")
    if interrupted:
        notes.append("%d interrupted deployment%s left out" % (interrupted, "" if interrupted == 1 else "s"))
    figures["change_failure_rate"] = _figure(
        "change_failure_rate", _pct(failures, len(judged)), "%", bounds, len(judged), "; ".join(notes) or None,
        failed=failures, breakdown=breakdown, interrupted_excluded=interrupted)

    rollbacks = [entry for entry in in_window if entry.is_rollback]
    durations = [value for value in (entry.rollback_duration_ms() for entry in rollbacks) if value is not None]
    untimed = len(rollbacks) - len(durations)
    automatic = sum(1 for entry in rollbacks if entry.autonomous)
    figures["rollbacks"] = _figure(
        "rollbacks", len(rollbacks), "rollbacks", bounds, len(rollbacks),
        "%d of %d rollbacks carry no duration: counted, not in the median and maximum" % (untimed, len(rollbacks))
        if untimed else None,
        breakdown={"automatic": automatic, "manual": len(rollbacks) - automatic},
        duration_ms={"median": _round(statistics.median(durations)) if durations else None,
                     "max": _round(max(durations)) if durations else None, "data_points": len(durations)})

    restores = [value for value in (entry.restore_seconds() for entry in rollbacks) if value is not None]
    if not rollbacks:
        mttr_note: Optional[str] = "no rollbacks finished in the window"
    elif len(restores) < len(rollbacks):
        mttr_note = "%d of %d rollbacks carry no detection or restore time: left out" % (
            len(rollbacks) - len(restores), len(rollbacks))
    else:
        mttr_note = None
    figures["mttr"] = _figure(
        "mttr", _round(statistics.median(restores)) if restores else None, "s", bounds, len(restores), mttr_note,
        mean=_round(statistics.fmean(restores)) if restores else None, max=_round(max(restores)) if restores else None)

    figures["uptime"] = {label: _uptime_figure(label, (uptime_by_window or {}).get(label), now)
                         for label in UPTIME_WINDOWS}
    return {"window": bounds, "figures": figures,
            "ledger": {"entries": len(entries), "in_window": len(in_window), "skipped": skipped,
                       "first": iso(entries[0].finished) if entries else None,
                       "last": iso(entries[-1].finished) if entries else None}}


def _round(value: float) -> float:
    return round(float(value), 3)


def _uptime_figure(label: str, answer: Any, now: datetime.datetime) -> dict[str, Any]:
    bounds = parse_window(label).bounds(now)
    if not isinstance(answer, Mapping):
        answer = {"note": "no answer from the monitoring service"}
    if answer.get("start") and answer.get("end"):
        bounds = {"start": str(answer["start"]), "end": str(answer["end"]), "label": label}
    rounds = answer.get("rounds")
    rounds = int(rounds) if _is_number(rounds) and rounds >= 0 else 0
    checks = answer.get("checks")
    checks = int(checks) if _is_number(checks) and checks >= 0 else 0
    uptime = answer.get("uptime_pct") if _is_number(answer.get("uptime_pct")) and rounds else None
    success = answer.get("success_rate_pct") if _is_number(answer.get("success_rate_pct")) and checks else None
    note = answer.get("note")
    if note is None and not rounds:
        note = "the monitoring service recorded no probe rounds in this window"
    return {"value": uptime, "unit": "%", "window": bounds, "data_points": rounds, "definition": DEFINITIONS["uptime"],
            "note": note, "success_rate": {"value": success, "unit": "%", "data_points": checks}}


# --- the monitoring service -----------------------------------------------------------------------------------------

def check_monitoring_url(url: Any) -> str:
    """An http(s) URL without query or fragment, without its trailing slash; UsageError otherwise."""
    text = str(url or "").strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError("monitoring URL %r is not valid: use http://host:port or https://host[:port][/path]" % text)
    return text.rstrip("/")


def fetch_uptime(monitoring_url: Optional[str], environment: Optional[str], windows: Iterable[str] = UPTIME_WINDOWS,
                 timeout_s: float = MONITOR_TIMEOUT_S, opener=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The monitor's /api/uptime answer per window, or {"note": why} for each; and a summary {url, reachable, note}.

    A monitor that is not configured, unreachable or answering garbage is a note, never an exception.
    """
    windows = list(windows)
    opener = opener or urllib.request.urlopen

    def everywhere(note: str) -> dict[str, Any]:
        return {label: {"note": note} for label in windows}

    if not monitoring_url:
        note = "no monitoring_url is set for this environment (inventory variable, or --monitoring-url)"
        return everywhere(note), {"url": None, "reachable": False, "note": note}
    try:
        base = check_monitoring_url(monitoring_url)
    except UsageError as exc:
        return everywhere(str(exc)), {"url": str(monitoring_url), "reachable": False, "note": str(exc)}
    answers: dict[str, Any] = {}
    reachable = False
    problems = []
    for label in windows:
        url = "%s/api/uptime?%s" % (base, urllib.parse.urlencode({"environment": environment or "", "window": label}))
        try:
            with opener(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=timeout_s) as response:
                body = json.loads(response.read().decode("utf-8"))
            reachable = True
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            answers[label] = body
        except urllib.error.HTTPError as exc:
            reachable = True
            detail = _error_detail(exc)
            answers[label] = {"note": "the monitoring service at %s answered HTTP %d%s" % (base, exc.code, detail)}
            problems.append(answers[label]["note"])
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            note = "the monitoring service at %s is unreachable (%s)" % (base, reason)
            # One unreachable service is unreachable for every window: no need to wait for each timeout.
            for rest in windows:
                answers.setdefault(rest, {"note": note})
            return answers, {"url": base, "reachable": reachable, "note": note}
        except (ValueError, UnicodeDecodeError) as exc:
            answers[label] = {"note": "the monitoring service at %s answered something that is not its JSON (%s)" % (base, exc)}
            problems.append(answers[label]["note"])
    return answers, {"url": base, "reachable": reachable, "note": problems[0] if problems else None}


def _error_detail(exc: "urllib.error.HTTPError") -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
    except (ValueError, OSError, UnicodeDecodeError, AttributeError):
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return ": %s" % detail if isinstance(detail, str) and detail else ""


# --- the result -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ReportResult(JsonOutcome):
    """What ``leanvibe-deploy report`` prints and ``leanvibe_runner.report`` returns (report.schema.json)."""

    status: str
    """reported, invalid (bad input, nothing ran), unreadable (the ledger could not be read) or cancelled."""
    exit_code: ExitCode
    environment: Optional[str] = None
    app: Optional[str] = None
    generated_at: Optional[str] = None
    window: Optional[dict[str, str]] = None
    ledger: Optional[dict[str, Any]] = None
    monitoring: dict[str, Any] = dataclasses.field(default_factory=lambda: {"url": None, "reachable": False, "note": None})
    figures: Optional[dict[str, Any]] = None
    reasons: list[str] = dataclasses.field(default_factory=list)
    duration_s: float = 0.0
    artifact_dir: Optional[str] = None
    inventory: Optional[str] = None
    command: str = "report"


def report_schema() -> dict[str, Any]:
    """The JSON Schema of ReportResult.to_dict() (report.schema.json, shipped with the package)."""
    return packaged_schema("report.schema.json")


# --- the table ------------------------------------------------------------------------------------------------------

def _show(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and unit != "%":
        value = int(value)
    if unit == "%":
        return "%.2f %%" % value
    if unit == "s":
        return "%s s" % value
    return str(value)


def table_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, value, window, data points, detail) per line of the human-readable report."""
    figures = report.get("figures") or {}
    rows = []
    deployments = figures.get("deployments")
    if deployments:
        outcomes = ", ".join("%s %d" % (name, count) for name, count in deployments["by_outcome"].items() if count)
        rows.append(("deployments", _show(deployments["value"], ""), deployments["window"]["label"],
                     str(deployments["data_points"]), "; ".join(filter(None, [outcomes, deployments["note"]]))))
    share = figures.get("autonomous_share")
    if share:
        rows.append(("autonomous share", _show(share["value"], "%"), share["window"]["label"], str(share["data_points"]),
                     share["note"] or "%d without a human, %d needed one" % (share["autonomous"], share["needed_a_human"])))
    cfr = figures.get("change_failure_rate")
    if cfr:
        parts = ["%s %d" % (name.replace("_", " "), count) for name, count in cfr["breakdown"].items() if count]
        rows.append(("change failure rate", _show(cfr["value"], "%"), cfr["window"]["label"], str(cfr["data_points"]),
                     "; ".join(filter(None, [", ".join(parts), cfr["note"]]))))
    rollbacks = figures.get("rollbacks")
    if rollbacks:
        duration = rollbacks["duration_ms"]
        text = "automatic %d, manual %d" % (rollbacks["breakdown"]["automatic"], rollbacks["breakdown"]["manual"])
        if duration["data_points"]:
            text += "; duration median %s ms, max %s ms (%d timed)" % (
                _show(duration["median"], "ms"), _show(duration["max"], "ms"), duration["data_points"])
        rows.append(("rollbacks", _show(rollbacks["value"], ""), rollbacks["window"]["label"],
                     str(rollbacks["data_points"]), "; ".join(filter(None, [text, rollbacks["note"]]))))
    mttr = figures.get("mttr")
    if mttr:
        text = "the median; mean %s, max %s" % (_show(mttr["mean"], "s"), _show(mttr["max"], "s")) if mttr["value"] is not None else ""
        rows.append(("MTTR", _show(mttr["value"], "s"), mttr["window"]["label"], str(mttr["data_points"]),
                     "; ".join(filter(None, [text, mttr["note"]]))))
    for label, uptime in (figures.get("uptime") or {}).items():
        success = uptime["success_rate"]
        text = ("probe checks passed %s of %d" % (_show(success["value"], "%"), success["data_points"])
                if success["data_points"] else "")
        rows.append(("uptime", _show(uptime["value"], "%"), label, str(uptime["data_points"]),
                     "; ".join(filter(None, [text, uptime["note"]]))))
    return rows


def headline(report: Mapping[str, Any]) -> str:
    window = report.get("window") or {}
    where = ""
    if report.get("app") or report.get("environment"):
        where = " of %s in %s" % (report.get("app") or "?", report.get("environment") or "?")
    text = "report%s: %s (exit %d) in %.1f s" % (where, report.get("status"), report.get("exit_code"),
                                                 report.get("duration_s") or 0.0)
    if window:
        text += "; window %s, %s to %s" % (window.get("label"), window.get("start"), window.get("end"))
    return text


def write_report(report: Mapping[str, Any], out, rich: bool = False) -> None:
    """The human-readable report: a rich table in a terminal, aligned plain text anywhere else."""
    rows = table_rows(report)
    header = ("figure", "value", "window", "data points", "detail")
    if rich and rows:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console(file=out, highlight=False)
        console.print(escape(headline(report)), style="bold green" if report.get("exit_code") == 0 else "bold red")
        table = Table(*header, show_lines=False)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        lines = []
    else:
        out.write(headline(report) + "\n")
        lines = [header] + rows if rows else []
    widths = [max(len(row[column]) for row in lines) for column in range(4)] if lines else []
    for row in lines:
        out.write("  " + "  ".join(cell.ljust(widths[column]) for column, cell in enumerate(row[:4])) + "  " + row[4] + "\n")
    for reason in report.get("reasons") or []:
        out.write("  reason: %s\n" % reason)
    monitoring = report.get("monitoring") or {}
    if report.get("figures") is not None and monitoring.get("note"):
        out.write("  monitoring: %s\n" % monitoring["note"])
    if report.get("artifact_dir"):
        out.write("  artifacts: %s\n" % report["artifact_dir"])
