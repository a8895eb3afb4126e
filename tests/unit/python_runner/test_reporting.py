"""leanvibe-deploy report: the figures (compute_report) from crafted ledgers whose answers are worked out by hand,
the window, the monitoring service client, the API over a fake ansible_runner.run, and the CLI."""

import datetime
import http.server
import io
import json
import socket
import sys
import tempfile
import threading
from pathlib import Path

import ansible_runner
import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import Stream, poll, refuse_real_runs  # noqa: E402

import leanvibe_runner  # noqa: E402
from leanvibe_runner import api, cli  # noqa: E402
from leanvibe_runner.codes import ExitCode, UsageError  # noqa: E402
from leanvibe_runner.reporting import (ReportResult, compute_report, fetch_uptime, iso, parse_window,  # noqa: E402
                                    report_schema, write_report)

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.timezone.utc)
WINDOW = parse_window("30d")
ERROR_PREFIX = "leanvibe-deploy: error:"


def ago(days=0, hours=0, minutes=0, seconds=0.0, now=NOW):
    return now - datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def entry(kind, version, from_version, outcome, finished, autonomous=True, started=None, duration_s=None, rollback=None):
    """A history entry shaped like the ledger's (plugins/module_utils/ledger_document.py)."""
    started = started or finished - datetime.timedelta(seconds=90)
    data = {"id": "%s-%s" % (finished.strftime("%Y%m%dT%H%M%SZ"), version), "environment": "local", "version": version,
            "from_version": from_version, "type": kind, "started": iso(started), "finished": iso(finished),
            "duration_s": round((finished - started).total_seconds(), 3) if duration_s is None else duration_s,
            "outcome": outcome, "reasons": ["why"], "autonomous": autonomous, "run_id": "r", "steps": []}
    if rollback is not None:
        data["rollback"] = rollback
    return data


def timing(detected, started, restored, duration_ms):
    return {"detected": iso(detected) if detected else None, "started": iso(started), "restored": iso(restored),
            "duration_ms": duration_ms}


def validate_report(data):
    jsonschema.Draft202012Validator(report_schema()).validate(data)
    return data


def reported(history, uptime=None, window=WINDOW, now=NOW):
    """compute_report's figures, after checking the whole report document against report.schema.json."""
    computed = compute_report(history, uptime, window, now)
    result = ReportResult(status="reported", exit_code=ExitCode.OK, environment="local", app="demo",
                          generated_at=computed["window"]["end"], window=computed["window"], ledger=computed["ledger"],
                          figures=computed["figures"])
    validate_report(result.to_dict())
    return computed


# -- the crafted ledger ------------------------------------------------------------------------------------------
# 30 days up to NOW. The initial release of site.yml, then 10 deployments: 6 promoted (one of them, 2.4.0, rolled
# back by hand 30 minutes later), 2 rolled back automatically (800 ms and 1200 ms), 1 failed before traffic,
# 1 interrupted; and the rollback by hand of 2.4.0 (an entry of type rollback, 50 ms).
T_AUTO1 = ago(days=26)
T_AUTO2 = ago(days=25)
T_MANUAL = ago(days=23) + datetime.timedelta(minutes=30)


def crafted_ledger():
    return [
        entry("deploy", "1.0.0", None, "deployed", ago(days=29)),
        entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=28)),
        entry("deploy", "2.1.0", "2.0.0", "promoted", ago(days=27)),
        # Detected at the failed gate, flipped 200 ms later, serving again 1 s after the detection.
        entry("deploy", "2.2.0", "2.1.0", "rolled_back", T_AUTO1, rollback=timing(
            T_AUTO1 - datetime.timedelta(seconds=1.0), T_AUTO1 - datetime.timedelta(seconds=0.8),
            T_AUTO1, 800)),
        # No detection time: from the start of the rollback, 1.2 s.
        entry("deploy", "2.2.1", "2.1.0", "rolled_back", T_AUTO2, rollback=timing(
            None, T_AUTO2 - datetime.timedelta(seconds=1.2), T_AUTO2, 1200)),
        entry("deploy", "2.3.0", "2.1.0", "failed", ago(days=24)),
        entry("deploy", "2.4.0", "2.1.0", "promoted", ago(days=23)),
        entry("rollback", "2.1.0", "2.4.0", "rolled_back", T_MANUAL, autonomous=False,
              started=T_MANUAL - datetime.timedelta(seconds=0.05), duration_s=0.05),
        entry("deploy", "2.5.0", "2.1.0", "promoted", ago(days=22)),
        entry("deploy", "2.6.0", "2.5.0", "promoted", ago(days=21)),
        # `begin` closes an unfinished run as interrupted, with autonomous true.
        entry("deploy", "2.7.0", "2.6.0", "interrupted", ago(days=20)),
        entry("deploy", "2.8.0", "2.6.0", "promoted", ago(days=19)),
    ]


def test_the_crafted_ledger_gives_the_figures_worked_out_by_hand():
    computed = reported(crafted_ledger())
    figures = computed["figures"]
    window = {"start": "2026-10-28T12:00:00.000Z", "end": "2026-11-27T12:00:00.000Z", "label": "30d"}
    assert computed["window"] == window
    assert all(figures[name]["window"] == window for name in ("deployments", "autonomous_share", "change_failure_rate",
                                                              "rollbacks", "mttr"))

    deployments = figures["deployments"]
    assert (deployments["value"], deployments["data_points"], deployments["initial_releases_excluded"]) == (10, 10, 1)
    assert deployments["by_outcome"] == {"promoted": 6, "deployed": 0, "rolled_back": 2, "failed": 1, "interrupted": 1}

    # Without a human: 5 promoted and left alone, 2 rolled back automatically, 1 failed before traffic = 8 of 10;
    # 2.4.0 (rolled back by hand) and 2.7.0 (interrupted) needed one.
    share = figures["autonomous_share"]
    assert (share["value"], share["data_points"], share["autonomous"], share["needed_a_human"]) == (80.0, 10, 8, 2)

    # Failed: 2 rolled back automatically + 1 before traffic + 2.4.0 rolled back by hand = 4 of the 9 with a known
    # outcome (the interrupted run is left out).
    cfr = figures["change_failure_rate"]
    assert (cfr["value"], cfr["data_points"], cfr["failed"], cfr["interrupted_excluded"]) == (round(400 / 9, 2), 9, 4, 1)
    assert cfr["value"] == 44.44
    assert cfr["breakdown"] == {"auto_rolled_back": 2, "failed_before_traffic": 1, "rolled_back_by_hand_in_progress": 0,
                                "rolled_back_later_automatically": 0, "rolled_back_later_by_hand": 1}
    assert "1 interrupted deployment left out" in cfr["note"]

    # 2 automatic (800 ms, 1200 ms) and 1 by hand (duration_s 0.05 -> 50 ms): median 800, max 1200.
    rollbacks = figures["rollbacks"]
    assert (rollbacks["value"], rollbacks["data_points"]) == (3, 3)
    assert rollbacks["breakdown"] == {"automatic": 2, "manual": 1}
    assert rollbacks["duration_ms"] == {"median": 800.0, "max": 1200.0, "data_points": 3}
    assert rollbacks["note"] is None

    # Detected -> restored 1.0 s; started -> restored 1.2 s; the rollback entry's start -> finish 0.05 s.
    mttr = figures["mttr"]
    assert (mttr["value"], mttr["mean"], mttr["max"], mttr["data_points"], mttr["unit"]) == (1.0, 0.75, 1.2, 3, "s")
    assert computed["ledger"] == {"entries": 12, "in_window": 12, "skipped": 0, "first": iso(ago(days=29)),
                                  "last": iso(ago(days=19))}


def test_the_order_of_the_history_does_not_matter():
    assert compute_report(list(reversed(crafted_ledger())), None, WINDOW, NOW) == compute_report(crafted_ledger(), None, WINDOW, NOW)


def test_every_figure_has_a_definition_a_unit_and_a_window():
    figures = reported(crafted_ledger())["figures"]
    every = [figures[name] for name in ("deployments", "autonomous_share", "change_failure_rate", "rollbacks", "mttr")]
    every += list(figures["uptime"].values())
    for figure in every:
        assert set(("value", "unit", "window", "data_points", "definition", "note")) <= set(figure)
        assert figure["definition"].endswith(".") and len(figure["definition"]) > 40
    assert "initial release" in figures["deployments"]["definition"]
    assert "interrupted" in figures["change_failure_rate"]["definition"]


# -- no data -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("history", [[], None, [entry("deploy", "1.0.0", None, "deployed", ago(days=1))]])
def test_an_empty_ledger_gives_null_figures_with_no_data_points(history):
    figures = reported(history)["figures"]
    assert (figures["deployments"]["value"], figures["deployments"]["data_points"]) == (0, 0)
    for name in ("autonomous_share", "change_failure_rate", "mttr"):
        assert (figures[name]["value"], figures[name]["data_points"]) == (None, 0), name
        assert figures[name]["note"], name
    assert (figures["rollbacks"]["value"], figures["rollbacks"]["data_points"]) == (0, 0)
    assert figures["rollbacks"]["duration_ms"] == {"median": None, "max": None, "data_points": 0}
    assert figures["mttr"]["mean"] is None
    for label in ("24h", "7d", "30d"):
        assert (figures["uptime"][label]["value"], figures["uptime"][label]["data_points"]) == (None, 0)


def test_the_initial_release_is_no_deployment():
    figures = reported([entry("deploy", "1.0.0", None, "deployed", ago(days=1))])["figures"]
    assert figures["deployments"]["initial_releases_excluded"] == 1
    assert figures["deployments"]["note"] == "1 initial release by site.yml not counted"
    # A deployed entry that replaced a release is a deployment.
    figures = reported([entry("deploy", "1.1.0", "1.0.0", "deployed", ago(days=1))])["figures"]
    assert figures["deployments"]["by_outcome"]["deployed"] == 1 and figures["autonomous_share"]["value"] == 100.0


# -- the window --------------------------------------------------------------------------------------------------
def test_window_edges_and_entries_outside_it():
    start = NOW - datetime.timedelta(days=7)
    history = [
        entry("deploy", "1.0.0", "0.9.0", "promoted", start - datetime.timedelta(milliseconds=1)),  # just before
        entry("deploy", "1.1.0", "1.0.0", "promoted", start),  # on the start: in
        entry("deploy", "1.2.0", "1.1.0", "failed", ago(days=3)),
        entry("deploy", "1.3.0", "1.1.0", "promoted", NOW),  # on the end: in
        entry("deploy", "1.4.0", "1.3.0", "rolled_back", NOW + datetime.timedelta(milliseconds=1)),  # after now: out
    ]
    computed = reported(history, window=parse_window("7d"))
    figures = computed["figures"]
    assert figures["deployments"]["value"] == 3
    assert figures["deployments"]["by_outcome"] == {"promoted": 2, "deployed": 0, "rolled_back": 0, "failed": 1,
                                                    "interrupted": 0}
    assert figures["change_failure_rate"]["value"] == round(100 / 3, 2)
    assert figures["rollbacks"]["value"] == 0
    assert computed["window"]["start"] == iso(start)
    assert (computed["ledger"]["entries"], computed["ledger"]["in_window"]) == (4, 3)


def test_a_rollback_in_the_window_of_a_deployment_before_it():
    history = [
        entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=2)),
        entry("rollback", "1.0.0", "2.0.0", "rolled_back", ago(hours=20), autonomous=False, duration_s=0.02),
    ]
    figures = reported(history, window=parse_window("24h"))["figures"]
    assert figures["deployments"]["value"] == 0 and figures["change_failure_rate"]["value"] is None
    assert figures["rollbacks"]["value"] == 1 and figures["rollbacks"]["breakdown"] == {"automatic": 0, "manual": 1}
    # Over 3 days the deployment is in, and it failed.
    figures = reported(history, window=parse_window("3d"))["figures"]
    assert figures["change_failure_rate"]["breakdown"]["rolled_back_later_by_hand"] == 1
    assert figures["autonomous_share"]["value"] == 0.0


@pytest.mark.parametrize("text, hours", [("1h", 1), ("24h", 24), ("7d", 168), ("30d", 720), ("365d", 8760),
                                         ("8760h", 8760)])
def test_windows_in_range(text, hours):
    window = parse_window(text)
    assert window.label == text and window.length == datetime.timedelta(hours=hours)


@pytest.mark.parametrize("text", ["0h", "0d", "366d", "8761h", "30", "30m", "-1d", "1.5d", "", None, "30 d", "030d", "1w",
                                  "d", "9999999d"])
def test_windows_out_of_range_or_malformed(text):
    with pytest.raises(UsageError, match=r"window .* (is not valid|is out of range)"):
        parse_window(text)


# -- rollbacks by hand, later rollbacks and the serving release --------------------------------------------------
def test_a_rollback_by_hand_counts_against_the_release_it_took_out_only():
    history = [
        entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=5)),
        entry("deploy", "2.1.0", "2.0.0", "promoted", ago(days=4)),
        # Takes 2.1.0 out, not 2.0.0.
        entry("rollback", "2.0.0", "2.1.0", "rolled_back", ago(days=3), autonomous=False),
        # 2.0.0 came back by a rollback: rolling forward from it again undoes no deployment.
        entry("rollback", "2.1.0", "2.0.0", "rolled_back", ago(days=2), autonomous=False),
    ]
    cfr = reported(history)["figures"]["change_failure_rate"]
    assert (cfr["failed"], cfr["data_points"], cfr["breakdown"]["rolled_back_later_by_hand"]) == (1, 2, 1)


def test_the_same_release_deployed_twice_is_matched_to_the_last_deployment():
    history = [
        entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=5)),
        entry("deploy", "2.1.0", "2.0.0", "promoted", ago(days=4)),
        entry("deploy", "2.0.0", "2.1.0", "promoted", ago(days=3)),
        entry("rollback", "2.1.0", "2.0.0", "rolled_back", ago(days=2), autonomous=False),
    ]
    figures = reported(history, window=parse_window("3d"))["figures"]
    assert figures["change_failure_rate"]["failed"] == 1 and figures["deployments"]["value"] == 1
    figures = reported(history, window=parse_window("6d"))["figures"]
    assert figures["change_failure_rate"]["failed"] == 1 and figures["deployments"]["value"] == 3
    assert figures["autonomous_share"]["autonomous"] == 2


def test_failed_and_rolled_back_canaries_leave_the_stable_release_in_service():
    history = [
        entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=5)),
        entry("deploy", "2.1.0", "2.0.0", "rolled_back", ago(days=4)),
        entry("deploy", "2.2.0", "2.0.0", "failed", ago(days=3)),
        entry("deploy", "2.3.0", "2.0.0", "interrupted", ago(days=3)),
        # Still 2.0.0 serving, promoted 5 days ago: this rollback by hand takes it out.
        entry("rollback", "1.0.0", "2.0.0", "rolled_back", ago(days=2), autonomous=False),
    ]
    breakdown = reported(history)["figures"]["change_failure_rate"]["breakdown"]
    assert breakdown["rolled_back_later_by_hand"] == 1 and breakdown["auto_rolled_back"] == 1
    assert breakdown["failed_before_traffic"] == 1


def test_a_canary_rolled_back_by_hand_in_progress():
    history = [entry("deploy", "2.0.0", "1.0.0", "rolled_back", ago(days=1), autonomous=False,
                     rollback=timing(None, ago(days=1, seconds=0.5), ago(days=1), 40))]
    figures = reported(history)["figures"]
    assert figures["change_failure_rate"]["breakdown"]["rolled_back_by_hand_in_progress"] == 1
    assert figures["autonomous_share"]["value"] == 0.0
    assert figures["rollbacks"]["breakdown"] == {"automatic": 0, "manual": 1}
    assert figures["rollbacks"]["duration_ms"]["median"] == 40.0
    assert figures["mttr"]["value"] == 0.5


def test_an_automatic_rollback_after_promotion_is_a_failure_without_a_human():
    history = [entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=2)),
               entry("rollback", "1.0.0", "2.0.0", "rolled_back", ago(days=1), autonomous=True, duration_s=0.01)]
    figures = reported(history)["figures"]
    assert figures["change_failure_rate"]["breakdown"]["rolled_back_later_automatically"] == 1
    assert figures["autonomous_share"]["value"] == 100.0
    assert figures["rollbacks"]["breakdown"] == {"automatic": 1, "manual": 0}


def test_a_non_autonomous_promotion_needs_a_human():
    history = [entry("promote", "2.0.0", "1.0.0", "promoted", ago(days=1), autonomous=False)]
    figures = reported(history)["figures"]
    assert figures["deployments"]["value"] == 1 and figures["autonomous_share"]["value"] == 0.0
    assert figures["change_failure_rate"]["value"] == 0.0


# -- durations and MTTR of entries written before the ledger recorded rollback times ------------------------------
def test_old_rollbacks_without_times_are_counted_but_not_in_the_median():
    history = [
        entry("deploy", "2.0.0", "1.0.0", "rolled_back", ago(days=3)),  # no "rollback": the deploy's duration says nothing
        entry("deploy", "2.1.0", "1.0.0", "rolled_back", ago(days=2), rollback=timing(
            ago(days=2, seconds=3), ago(days=2, seconds=1), ago(days=2), 1000)),
        entry("deploy", "2.2.0", "1.0.0", "promoted", ago(days=1, hours=1)),
        entry("rollback", "1.0.0", "2.2.0", "rolled_back", ago(days=1), autonomous=False, duration_s=0.3,
              started=ago(days=1, seconds=0.3)),
    ]
    figures = reported(history)["figures"]
    rollbacks = figures["rollbacks"]
    assert (rollbacks["value"], rollbacks["data_points"]) == (3, 3)
    assert rollbacks["duration_ms"] == {"median": 650.0, "max": 1000.0, "data_points": 2}
    assert rollbacks["note"] == "1 of 3 rollbacks carry no duration: counted, not in the median and maximum"
    mttr = figures["mttr"]
    # 3 s (detected -> restored) and 0.3 s (the rollback entry): median 1.65, mean 1.65.
    assert (mttr["value"], mttr["mean"], mttr["data_points"]) == (1.65, 1.65, 2)
    assert mttr["note"] == "1 of 3 rollbacks carry no detection or restore time: left out"


def test_entries_without_a_readable_finish_are_skipped_and_counted():
    history = [entry("deploy", "2.0.0", "1.0.0", "promoted", ago(days=1)), {"type": "deploy", "finished": "yesterday"},
               "not an entry", {"type": "deploy"}]
    computed = reported(history)
    assert computed["ledger"]["skipped"] == 3 and computed["figures"]["deployments"]["value"] == 1


# -- uptime from the monitoring service ---------------------------------------------------------------------------
def uptime_answer(label, uptime_pct, success_pct, rounds, checks):
    hours = {"24h": 24, "7d": 168, "30d": 720}[label]
    return {"environment": "local", "window": label, "start": iso(ago(hours=hours)), "end": iso(NOW),
            "uptime_pct": uptime_pct, "success_rate_pct": success_pct, "rounds": rounds, "checks": checks}


def test_uptime_figures_come_from_the_monitor_answers():
    answers = {"24h": uptime_answer("24h", 99.5, 99.9, 2880, 14400), "7d": uptime_answer("7d", 98.25, 99.0, 20160, 100800),
               "30d": uptime_answer("30d", None, None, 0, 0)}
    uptime = reported([], answers)["figures"]["uptime"]
    assert (uptime["24h"]["value"], uptime["24h"]["data_points"], uptime["24h"]["unit"]) == (99.5, 2880, "%")
    assert uptime["24h"]["success_rate"] == {"value": 99.9, "unit": "%", "data_points": 14400}
    assert uptime["24h"]["window"] == {"start": iso(ago(hours=24)), "end": iso(NOW), "label": "24h"}
    assert uptime["24h"]["note"] is None
    assert (uptime["7d"]["value"], uptime["7d"]["data_points"]) == (98.25, 20160)
    assert (uptime["30d"]["value"], uptime["30d"]["data_points"]) == (None, 0)
    assert "no probe rounds" in uptime["30d"]["note"]


def test_uptime_without_a_monitor_keeps_its_note():
    answers = {label: {"note": "no monitoring_url is set"} for label in ("24h", "7d", "30d")}
    uptime = reported([], answers)["figures"]["uptime"]
    for label in ("24h", "7d", "30d"):
        assert (uptime[label]["value"], uptime[label]["data_points"], uptime[label]["note"]) == (None, 0, "no monitoring_url is set")
        assert uptime[label]["window"]["label"] == label


class MonitorStub:
    """A real HTTP server answering GET /api/uptime like the monitoring service (or with `status` and `body`)."""

    def __init__(self, status=200, body=None):
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                stub.requests.append(self.path)
                window = self.path.rsplit("window=", 1)[-1]
                payload = body if body is not None else json.dumps(uptime_answer(window, 100.0, 99.0, 10, 50)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetch_uptime_asks_each_window_of_the_environment():
    with MonitorStub() as monitor:
        answers, summary = fetch_uptime(monitor.url, "local")
    assert monitor.requests == ["/api/uptime?environment=local&window=%s" % label for label in ("24h", "7d", "30d")]
    assert summary == {"url": monitor.url.rstrip("/"), "reachable": True, "note": None}
    assert answers["7d"]["rounds"] == 10 and answers["30d"]["uptime_pct"] == 100.0


def test_fetch_uptime_without_a_url():
    answers, summary = fetch_uptime(None, "local")
    assert summary["url"] is None and summary["reachable"] is False and "no monitoring_url" in summary["note"]
    assert all("no monitoring_url" in answers[label]["note"] for label in ("24h", "7d", "30d"))


def test_fetch_uptime_of_a_monitor_that_is_not_there_is_a_note_not_an_error():
    url = "http://127.0.0.1:%d" % free_port()
    answers, summary = fetch_uptime(url, "local", timeout_s=2)
    assert summary["reachable"] is False and "is unreachable" in summary["note"] and url in summary["note"]
    assert [answers[label]["note"] for label in ("24h", "7d", "30d")] == [summary["note"]] * 3


def test_fetch_uptime_of_an_unknown_environment_and_of_garbage():
    with MonitorStub(status=404, body=b'{"detail": "environment nowhere is unknown"}') as monitor:
        answers, summary = fetch_uptime(monitor.url, "nowhere")
    assert summary["reachable"] is True
    assert answers["24h"]["note"].endswith("answered HTTP 404: environment nowhere is unknown")
    with MonitorStub(body=b"<html>") as monitor:
        answers, summary = fetch_uptime(monitor.url, "local")
    assert "not its JSON" in answers["30d"]["note"] and summary["note"] == answers["24h"]["note"]
    answers, summary = fetch_uptime("ftp://monitor", "local")
    assert "is not valid" in summary["note"] and summary["reachable"] is False


# -- the API over a fake ansible_runner.run ----------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_real_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(ansible_runner, "run", refuse_real_runs)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("LEANVIBE_PROJECT_DIR", raising=False)


def live_history(now):
    """A promotion a day ago and an automatic rollback an hour ago (800 ms), relative to the real clock."""
    return [entry("deploy", "1.0.0", None, "deployed", now - datetime.timedelta(days=3)),
            entry("deploy", "2.0.0", "1.0.0", "promoted", now - datetime.timedelta(days=1)),
            entry("deploy", "2.0.1", "2.0.0", "rolled_back", now - datetime.timedelta(hours=1), rollback=timing(
                now - datetime.timedelta(hours=1, seconds=2), now - datetime.timedelta(hours=1, seconds=1),
                now - datetime.timedelta(hours=1), 800))]


def status_events(history, monitoring_url=None, lb_status=200):
    published = {"command": "status", "phase": "done", "status": "serving" if lb_status == 200 else "not_serving",
                 "version": "2.0.0", "environment": "local", "app": "demo", "lb_url": "http://127.0.0.1:8000",
                 "lb_status": lb_status, "active_color": "green", "versions": {"blue": "1.0.0", "green": "2.0.0"},
                 "weights": {"green": 100}, "in_progress": None, "lock": None, "history": history,
                 "monitoring_url": monitoring_url}
    return Stream().task("Read the deployment ledger").publish(**published).stats(published).events


def unreadable_ledger_events():
    message = "ledger /run/state/demo.ledger.json is corrupt (not JSON: Expecting value); fix it or move it away."
    return (Stream().task("Read the deployment ledger")
            .failed("Read the deployment ledger", "leanvibe.deploy.deployment_state", {"msg": message})
            .stats(None).events)


def test_api_report_reads_the_whole_ledger_and_computes_the_figures(project, fake):
    now = datetime.datetime.now(datetime.timezone.utc)
    runner = fake(status_events(live_history(now)))
    events = []
    result = leanvibe_runner.report("local", "7d", project_dir=project, on_event=events.append, extravars=["a=1"])
    assert isinstance(result, ReportResult)
    assert (result.status, result.exit_code, result.ok) == ("reported", ExitCode.OK, True)
    assert runner.kwargs["playbook"] == "playbooks/status.yml"
    assert runner.kwargs["extravars"] == {"a": "1", "history_limit": api.REPORT_HISTORY_LIMIT}
    assert (result.environment, result.app, result.window["label"]) == ("local", "demo", "7d")
    figures = result.figures
    assert figures["deployments"]["value"] == 2 and figures["deployments"]["initial_releases_excluded"] == 1
    assert figures["change_failure_rate"]["value"] == 50.0 and figures["autonomous_share"]["value"] == 100.0
    assert figures["rollbacks"]["duration_ms"]["median"] == 800.0 and figures["mttr"]["value"] == 2.0
    assert result.monitoring["reachable"] is False and "no monitoring_url" in result.monitoring["note"]
    assert all(figures["uptime"][label]["data_points"] == 0 for label in ("24h", "7d", "30d"))
    assert result.artifact_dir and result.inventory.endswith("inventories/local")
    validate_report(result.to_dict())
    kinds = [event.kind for event in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("finished") == 1
    assert events[-1].data["figures"]["deployments"]["value"] == 2


def test_api_report_asks_the_inventory_monitor_and_the_option_wins(project, fake):
    now = datetime.datetime.now(datetime.timezone.utc)
    with MonitorStub() as monitor:
        fake(status_events(live_history(now), monitoring_url=monitor.url))
        result = leanvibe_runner.report("local", project_dir=project)
        assert monitor.requests and result.monitoring == {"url": monitor.url.rstrip("/"), "reachable": True, "note": None}
        assert result.figures["uptime"]["24h"]["value"] == 100.0 and result.figures["uptime"]["24h"]["data_points"] == 10
        fake(status_events(live_history(now), monitoring_url="http://127.0.0.1:%d" % free_port()))
        result = leanvibe_runner.report("local", project_dir=project, monitoring_url=monitor.url)
        assert result.monitoring["reachable"] is True
    validate_report(result.to_dict())


def test_api_report_of_an_lb_that_does_not_serve_still_reports(project, fake):
    fake(status_events([], lb_status=-1))
    result = leanvibe_runner.report("local", project_dir=project)
    assert (result.status, result.exit_code) == ("reported", ExitCode.OK)


def test_api_report_of_an_unreadable_ledger_exits_3(project, fake):
    fake(unreadable_ledger_events(), rc=2, status="failed")
    result = leanvibe_runner.report("local", project_dir=project)
    assert (result.status, result.exit_code, result.figures) == ("unreadable", ExitCode.NEEDS_HUMAN, None)
    assert result.reasons[0].startswith("the ledger could not be read: ledger /run/state/demo.ledger.json is corrupt")
    validate_report(result.to_dict())


@pytest.mark.parametrize("options, message", [
    ({"window": "366d"}, "window 366d is out of range"),
    ({"window": "30m"}, "window '30m' is not valid"),
    ({"window": "30d", "monitoring_url": "monitor:5000"}, "monitoring URL 'monitor:5000' is not valid"),
    ({"window": "30d", "extravars": ["history_limit=5"]}, "history_limit"),
])
def test_api_report_usage_errors_start_nothing(project, options, message):
    window = options.pop("window")
    result = leanvibe_runner.report("local", window, project_dir=project, **options)
    assert (result.status, result.exit_code, result.artifact_dir) == ("invalid", ExitCode.USAGE, None)
    assert message in result.reasons[0]
    validate_report(result.to_dict())


def test_api_report_in_the_background(project, fake):
    fake(status_events([]))
    handle = leanvibe_runner.report("local", "24h", project_dir=project, background=True)
    assert isinstance(handle, leanvibe_runner.RunHandle)
    result = handle.wait(timeout=30)
    assert result.status == "reported" and result.window["label"] == "24h"


def test_api_report_cancelled(project, fake):
    fake(status_events([]), during=lambda cancel_callback, _handler: poll(cancel_callback))
    result = leanvibe_runner.report("local", project_dir=project, cancel=lambda: True)
    assert (result.status, result.exit_code, result.figures) == ("cancelled", ExitCode.FAILED_CLEAN, None)
    assert "cancelled by the caller" in result.reasons
    validate_report(result.to_dict())


def test_report_is_the_api_function():
    assert leanvibe_runner.report is api.report and "report" in leanvibe_runner.__all__


# -- the CLI -----------------------------------------------------------------------------------------------------
def test_cli_report_json_prints_one_object_that_validates(project, fake, capsys):
    now = datetime.datetime.now(datetime.timezone.utc)
    fake(status_events(live_history(now)))
    code = cli.main(["report", "-i", "local", "--json", "--window", "7d", "--project-dir", str(project),
                     "--monitoring-url", "http://127.0.0.1:%d" % free_port()])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = validate_report(json.loads(out))
    assert (data["command"], data["status"], data["exit_code"]) == ("report", "reported", 0)
    assert data["figures"]["deployments"]["by_outcome"]["rolled_back"] == 1
    assert data["figures"]["uptime"]["30d"]["data_points"] == 0
    assert "is unreachable" in data["figures"]["uptime"]["30d"]["note"]
    assert "started" in err  # progress goes to stderr with --json


def test_cli_report_prints_a_table(project, fake, capsys):
    now = datetime.datetime.now(datetime.timezone.utc)
    fake(status_events(live_history(now)))
    assert cli.main(["report", "-i", "local", "-q", "--project-dir", str(project)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("report of demo in local: reported (exit 0) in ") and "window 30d" in lines[0]
    assert lines[1].split() == ["figure", "value", "window", "data", "points", "detail"]
    rows = {line.split("  ")[1].strip(): line for line in lines[2:] if line.startswith("  ") and not line.startswith("   ")}
    assert "promoted 1, rolled_back 1" in rows["deployments"]
    assert "50.00 %" in rows["change failure rate"] and "auto rolled back 1" in rows["change failure rate"]
    assert "100.00 %" in rows["autonomous share"]
    assert "median 800 ms, max 800 ms (1 timed)" in rows["rollbacks"]
    assert "2 s" in rows["MTTR"]
    assert sum(1 for line in lines if line.startswith("  uptime ")) == 3
    assert any(line.startswith("  monitoring: no monitoring_url") for line in lines)
    assert any(line.startswith("  artifacts: ") for line in lines)


def test_the_table_in_a_terminal_is_rich():
    now = datetime.datetime.now(datetime.timezone.utc)
    computed = compute_report(live_history(now), None, WINDOW, now)
    result = ReportResult(status="reported", exit_code=ExitCode.OK, environment="local", app="demo",
                          window=computed["window"], ledger=computed["ledger"], figures=computed["figures"])
    stream = io.StringIO()
    write_report(result.to_dict(), stream, rich=True)
    text = stream.getvalue()
    assert text.startswith("report of demo in local: reported (exit 0)")
    assert "change failure rate" in text and "50.00 %" in text and "\u2502" in text  # rich's box drawing


@pytest.mark.parametrize("window", ["0h", "366d", "8761h", "30m", "abc"])
def test_cli_report_bad_window_is_one_line_exit_2_and_runs_nothing(project, capsys, window):
    assert cli.main(["report", "-i", "local", "--window", window, "--project-dir", str(project)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX + " window ")


def test_cli_report_bad_window_with_json_prints_an_invalid_report(project, capsys):
    assert cli.main(["report", "-i", "local", "--window", "400d", "--json", "--project-dir", str(project)]) == 2
    out, err = capsys.readouterr()
    data = validate_report(json.loads(out))
    assert (data["status"], data["exit_code"], data["figures"]) == ("invalid", 2, None)
    assert len(err.splitlines()) == 1


def test_cli_report_argparse_errors_with_json_print_an_invalid_report(capsys):
    assert cli.main(["report", "--json"]) == 2
    out, err = capsys.readouterr()
    data = validate_report(json.loads(out))
    assert "required: -i/--inventory" in data["reasons"][0] and err.startswith(ERROR_PREFIX)


def test_cli_report_of_an_unreadable_ledger_exits_3(project, fake, capsys):
    fake(unreadable_ledger_events(), rc=2, status="failed")
    assert cli.main(["report", "-i", "local", "-q", "--project-dir", str(project)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("report: unreadable (exit 3)")
    assert "  reason: the ledger could not be read: ledger /run/state/demo.ledger.json is corrupt" in out


def test_the_schema_refuses_what_a_report_must_not_be():
    computed = compute_report(crafted_ledger(), None, WINDOW, NOW)
    good = ReportResult(status="reported", exit_code=ExitCode.OK, window=computed["window"], ledger=computed["ledger"],
                        figures=computed["figures"]).to_dict()
    validator = jsonschema.Draft202012Validator(report_schema())
    assert not list(validator.iter_errors(good))
    for change in (lambda d: d["figures"]["rollbacks"].pop("duration_ms"),
                   lambda d: d["figures"]["mttr"].update(extra=1),
                   lambda d: d["figures"]["uptime"].pop("7d"),
                   lambda d: d["figures"]["change_failure_rate"].update(value=101),
                   lambda d: d.update(exit_code=3),
                   lambda d: d.update(status="invalid")):
        bad = json.loads(json.dumps(good))
        change(bad)
        assert list(validator.iter_errors(bad)), change
