#!/usr/bin/env python
"""Benchmark: deployments under steady keep-alive load, on the environment of `make demo`.

    .venv/bin/python bench/deploy_under_load.py [--rounds 3] [--rate 250] [--connections 16]

bench/loadgen.py holds `rate` requests/s through the LB (http://127.0.0.1:8000) on `connections`
keep-alive connections, never retrying, for the whole run. After a baseline without any deployment,
each round runs these phases with real ansible-playbook runs on inventories/local:

  a         blue_green.yml to a new release (the comprehensive probe gate through the LB, then 100 %)
  b         canary.yml of a new release, steps 10 -> 25 -> 50 -> 100 (3 s pause each), promoted
  c         canary.yml of a faulty release (LEANVIBE_FAULT_LATENCY_MS=300 by default): its own-port probes
            pass, its first step's traffic analysis fails the p95 gate, the rescue flips 100 % back
  prep      blue_green.yml to one more release, so that the release of b is warm in the idle color
  d         rollback.yml -e emergency=true: back to the release of b by a weight flip

Every request of the load is joined with its line in the LB's JSON access log (the load generator puts
`lg=<tag>-<seq>` in each query string), which says which upstream answered it and whether nginx had to
try another one first. The Lua weights are watched on nginx's admin socket (a GET every 10 ms), so
"weights applied" is the moment nginx's shared dict changed, not when Ansible reported the task.

Per phase: requests, failed requests caused by the deployment (non-2xx or connection errors, except the
faulty release's own answers), the faulty release's own 5xx (blast radius), the rate achieved, p50/p99
latency, flip latency and rollback durations (medians over rounds). A plain-text table goes to stdout,
everything to .run/bench/deploy_under_load-<time>.json (and deploy_under_load.json, the latest).
Exit status 0 when every phase ran as planned (`--strict`: and every goal was met), 1 otherwise.
"""

import argparse
import datetime
import http.client
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
RUN = os.path.join(REPO, ".run")
APP = "demo"
LB = "http://127.0.0.1:8000"
ACCESS_LOG = os.path.join(RUN, "nginx", "logs", "%s.access.log" % APP)
ADMIN_SOCKET = os.path.join(RUN, "nginx", "run", "admin.sock")
NGINX_STATE = os.path.join(RUN, "nginx", "conf", "%s.state.json" % APP)
LEDGER = os.path.join(RUN, "state", "%s.ledger.json" % APP)
ARTIFACTS = os.path.join(RUN, "artifacts")
OUT = os.path.join(RUN, "bench")
PLAYBOOK_TIMEOUT = 600
SETTLE_S = 2.0
BLAST_GOAL_PCT = 0.5
RATE_HELD = 0.95

PHASES = {
    "a": "a. blue-green switch",
    "b": "b. canary, promoted",
    "c": "c. faulty canary, auto rollback",
    "c_pre": "   (c, failed before taking traffic: no rollback)",
    "prep": "   (prep for d: blue-green)",
    "d": "d. emergency rollback",
}


def log(message):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# --- the Lua weights, watched on nginx's admin socket ----------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=2.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def parse_weights(text):
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {"blue": int(values.get("blue", 0)), "green": int(values.get("green", 0)),
            "stable": values.get("stable") or None, "canary": values.get("canary") or None}


class WeightsWatcher(threading.Thread):
    """GET /leanvibe/weights/<app> every `interval` s; each change with the last poll that still saw the old value."""

    def __init__(self, path, app, interval, max_seconds):
        super().__init__(name="weights-watcher", daemon=True)
        self.path, self.app, self.interval = path, app, interval
        self.deadline = time.monotonic() + max_seconds
        self.stopped = threading.Event()
        self.changes = []
        self.polls = self.errors = 0
        self.gaps = []

    def run(self):
        conn = None
        previous = previous_done = None
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            started = time.time()
            try:
                if conn is None:
                    conn = UnixHTTPConnection(self.path)
                conn.request("GET", "/leanvibe/weights/%s" % self.app)
                response = conn.getresponse()
                text = response.read().decode()
                if response.status != 200:
                    raise OSError("admin answered %d" % response.status)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                self.stopped.wait(self.interval)
                continue
            done = time.time()
            self.polls += 1
            if previous_done is not None:
                self.gaps.append(done - previous_done)
            if text != previous:
                self.changes.append({"t_lo": previous_done, "t_hi": done, "weights": parse_weights(text),
                                     "before": parse_weights(previous) if previous else None})
            previous, previous_done = text, done
            self.stopped.wait(max(0.0, self.interval - (time.time() - started)))
        if conn is not None:
            conn.close()


# --- ansible-playbook, with the timeline callback -------------------------------------------------


def playbook_env(timeline):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""), BENCH_TIMELINE_FILE=timeline,
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "bench", "callback_plugins"))
    enabled = [name for name in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if name.strip()]
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled + ["bench_timeline"])
    return env


def read_timeline(path):
    events = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
    return events


def find_results(events, module, kinds=("ok", "failed")):
    """Results of the leanvibe.deploy module `module` (the timeline's `action`, resolved to its FQCN)."""
    return [event for event in events if event.get("event") in kinds
            and event.get("action") in (module, "leanvibe.deploy." + module)]


def failed_gates(events):
    """The gates that failed with traffic on the new color: what a rollback answers."""
    return [event for event in find_results(events, "rollout_gate", ("failed",)) if event.get("traffic_moved")]


def build_artifact(version):
    path = os.path.join(ARTIFACTS, "leanvibe-demo-%s.tar.gz" % version)
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(REPO, "demo_service", "build_release.py"), "--version", version,
                        "--output-dir", ARTIFACTS], check=True, capture_output=True, timeout=120)


class Phase:
    def __init__(self, key, round_no, playbook, extra, version, expect_ok, folder):
        self.key, self.round, self.playbook, self.extra, self.version = key, round_no, playbook, extra, version
        self.expect_ok = expect_ok
        self.name = "r%d-%s" % (round_no, key)
        self.timeline_path = os.path.join(folder, self.name + ".timeline.jsonl")
        self.log_path = os.path.join(folder, self.name + ".log")
        self.start = self.end = self.window_end = None
        self.rc = None
        self.ledger_before = self.ledger_after = None
        self.events = []
        self.problem = None
        self.attempt = 1
        self.pre_traffic = False

    SAVED = ("key", "round", "playbook", "extra", "version", "expect_ok", "name", "timeline_path", "log_path", "start", "end",
             "window_end", "rc", "ledger_before", "ledger_after", "problem", "attempt", "pre_traffic")

    def state(self):
        return dict((name, getattr(self, name)) for name in self.SAVED)

    @classmethod
    def restore(cls, state):
        phase = cls.__new__(cls)
        for name in cls.SAVED:
            setattr(phase, name, state.get(name))
        phase.events = read_timeline(phase.timeline_path) if phase.timeline_path else []
        return phase

    def run(self):
        self.ledger_before = read_json(LEDGER)
        command = [os.path.join(BIN, "ansible-playbook"), "-i", "inventories/local", self.playbook]
        for extra in self.extra:
            command += ["-e", extra if isinstance(extra, str) else json.dumps(extra)]
        log("%s: %s" % (self.name, " ".join(command[3:])))
        with open(self.log_path, "w", encoding="utf-8") as output:
            self.start = time.time()
            try:
                self.rc = subprocess.run(command, cwd=REPO, env=playbook_env(self.timeline_path), stdout=output,
                                         stderr=subprocess.STDOUT, timeout=PLAYBOOK_TIMEOUT, check=False).returncode
            except subprocess.TimeoutExpired:
                self.rc = -1
            self.end = time.time()
        self.ledger_after = read_json(LEDGER)
        self.events = read_timeline(self.timeline_path)
        if self.expect_ok and self.rc != 0:
            self.problem = "ansible-playbook exited %s (see %s)" % (self.rc, self.log_path)
        elif not self.expect_ok:
            if self.rc == 0:
                self.problem = "the faulty canary was promoted (see %s)" % self.log_path
            elif not failed_gates(self.events):
                self.pre_traffic = True
                self.problem = ("the faulty canary failed before its traffic was judged, not by a gate: not a rollback "
                                "(see %s)" % self.log_path)
        active = self.ledger_after.get("active_color")
        serving = (self.ledger_after.get("versions") or {}).get(active)
        if self.problem is None and self.expect_ok and serving != self.version:
            self.problem = "the ledger says %s serves %s, not %s (see %s)" % (active, serving, self.version, self.log_path)
        log("%s: exit %s in %.1f s%s" % (self.name, self.rc, self.end - self.start, "; " + self.problem if self.problem else ""))
        return self.problem is None


# --- analysis ---------------------------------------------------------------------------------------


def load_records(path):
    with open(path, encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        fields = header["fields"]
        records = [dict(zip(fields, json.loads(line))) for line in handle if line.strip()]
    for record in records:
        record["t_done"] = record["t_send"] + record["latency_ms"] / 1000.0
        record["ok"] = 200 <= record["status"] < 300 and not record["error"]
    return header, records


def join_access_log(records, tag, offset):
    """Each record gets `lb`: its access-log line (status, upstream color picked, final upstream addr, tries)."""
    by_seq = dict((record["seq"], record) for record in records)
    marker = "lg=%s-" % tag
    pattern = re.compile(r"[?&]lg=%s-(\d+)" % re.escape(tag))
    found = 0
    with open(ACCESS_LOG, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        for line in handle:
            if marker not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            match = pattern.search(entry.get("uri", ""))
            record = by_seq.get(int(match.group(1))) if match else None
            if record is None:
                continue
            addrs = [part.strip() for part in str(entry.get("upstream_addr", "")).split(",") if part.strip()]
            statuses = [part.strip() for part in str(entry.get("upstream_status", "")).split(",") if part.strip()]
            record["lb"] = {"status": entry.get("status"), "picked": entry.get("upstream", "").rsplit("_", 1)[-1],
                            "addr": addrs[-1] if addrs else None, "addrs": addrs, "upstream_status": statuses,
                            "tries": len(addrs), "msec": entry.get("msec")}
            found += 1
    return found


def color_of(record, port_colors):
    lb = record.get("lb")
    if not lb or not lb["addr"]:
        return None
    return port_colors.get(lb["addr"])


def flip_to(change, color, records, port_colors):
    """Weights applied (the last poll that still saw the old weights) -> first response answered by `color`."""
    if change is None:
        return None
    t_applied = change["t_lo"]
    firsts = [r["t_done"] for r in records if r["t_done"] >= t_applied and color_of(r, port_colors) == color
              and r["lb"]["tries"] == 1]
    return round((min(firsts) - t_applied) * 1000, 1) if firsts else None


def drain_from(change, color, records, port_colors):
    """Weights applied -> last response answered by `color` (requests already in flight), and how many requests
    sent after the change was seen still went there."""
    if change is None:
        return None, None
    t_applied = change["t_lo"]
    served = [r for r in records if color_of(r, port_colors) == color and r["t_done"] >= t_applied - 5]
    last = max((r["t_done"] for r in served), default=None)
    late = sum(1 for r in served if r["t_send"] > change["t_hi"] + 0.005)
    # 0: nothing was in flight there when the weights changed (its last answer came earlier).
    return (round(max(0.0, last - t_applied) * 1000, 1) if last is not None else 0.0), late


def changes_in(watch_changes, start, end):
    return [c for c in watch_changes if c["t_lo"] is not None and start <= c["t_hi"] and c["t_lo"] <= end]


def first_change(changes, test):
    for change in changes:
        if change["before"] is not None and test(change["before"], change["weights"]):
            return change
    return None


def plan_colors(phase):
    """(old color, new color) of the phase, from the plan the playbook made (or the ledger)."""
    for event in find_results(phase.events, "rollout_plan", ("ok",)):
        if event.get("old_color") and event.get("new_color"):
            return event["old_color"], event["new_color"]
    old = phase.ledger_before.get("active_color")
    for event in find_results(phase.events, "rollback", ("ok",)):
        if event.get("to_color"):
            return old, event["to_color"]
    return old, phase.ledger_after.get("active_color")


def analyse_phase(phase, records, watch_changes, port_colors):
    window = [r for r in records if phase.start <= r["t_send"] < phase.window_end]
    duration = phase.window_end - phase.start
    result = {"phase": phase.key, "round": phase.round, "version": phase.version, "rc": phase.rc, "problem": phase.problem,
              "start": phase.start, "playbook_s": round(phase.end - phase.start, 2) if phase.end else None,
              "window_s": round(duration, 2), "requests": len(window), "log": phase.log_path, "timeline": phase.timeline_path}
    old, new = plan_colors(phase) if phase.key != "baseline" else (None, None)
    result.update(old_color=old, new_color=new)
    changes = changes_in(watch_changes, phase.start, phase.window_end)
    result["weight_changes"] = [{"t_lo": c["t_lo"], "t_hi": c["t_hi"], "weights": c["weights"]} for c in changes]

    # The faulty release: the canary color of phase c, from its first step until it was stopped.
    faulty_color = new if phase.key == "c" else None
    step1 = first_change(changes, lambda b, a: new and b[new] == 0 and a[new] > 0) if new else None
    faulty_from = step1["t_lo"] if step1 else None
    blast, deploy_failed, served_by_faulty = [], [], 0
    for record in window:
        color = color_of(record, port_colors)
        if faulty_color and faulty_from is not None and color == faulty_color and record["t_send"] >= faulty_from - 0.5:
            served_by_faulty += 1
            if not record["ok"] and record["status"] >= 500:
                blast.append(record)
                continue
        if not record["ok"]:
            deploy_failed.append(record)
    result["failed_deployment"] = len(deploy_failed)
    result["failed_deployment_kinds"] = kinds(deploy_failed)
    result["failed_deployment_detail"] = [failure_detail(r, phase, changes) for r in deploy_failed[:50]]
    result["blast_5xx"] = len(blast)
    result["blast_pct"] = round(100.0 * len(blast) / len(window), 3) if window else None
    result["served_by_faulty"] = served_by_faulty if faulty_color else None
    result["served_by_faulty_pct"] = round(100.0 * served_by_faulty / len(window), 2) if faulty_color and window else None
    result["retried_by_lb"] = sum(1 for r in window if r.get("lb") and r["lb"]["tries"] > 1)
    result["retried_by_lb_detail"] = [{"seq": r["seq"], "kind": r["kind"], "t_send": r["t_send"], "addrs": r["lb"]["addrs"],
                                       "upstream_status": r["lb"]["upstream_status"], "status": r["status"]}
                                      for r in window if r.get("lb") and r["lb"]["tries"] > 1][:50]
    result["not_in_access_log"] = sum(1 for r in window if "lb" not in r)
    result["achieved_rps"] = round(len(window) / duration, 1) if duration > 0 else None
    result["late_over_100ms"] = sum(1 for r in window if r["t_send"] - r["t_sched"] > 0.1)
    per_second = {}
    for r in window:
        second = int(r["t_send"] - phase.start)
        per_second[second] = per_second.get(second, 0) + 1
    result["worst_second_rps"] = min((per_second.get(second, 0) for second in range(int(duration))), default=None)
    latencies = sorted(r["latency_ms"] for r in window if r["status"])
    result["latencies"] = latencies
    result["p50_ms"], result["p99_ms"] = percentile(latencies, 0.5), percentile(latencies, 0.99)
    result["versions_seen"] = dict(sorted((v, sum(1 for r in window if r["version"] == v)) for v in {r["version"] for r in window if r["version"]}))

    if phase.key in ("a", "prep", "b") and new:
        full = first_change(changes, lambda b, a: b[new] < 100 and a[new] == 100)
        result["flip_ms"] = flip_to(full if phase.key != "b" else step1, new, window, port_colors)
        result["flip_full_ms"] = flip_to(full, new, window, port_colors)
        result["old_drained_ms"], result["old_after_flip"] = drain_from(full, old, window, port_colors)
    if phase.key == "c" and new:
        back = first_change(changes, lambda b, a: b[new] > 0 and a[new] == 0)
        result["first_step_flip_ms"] = flip_to(step1, new, window, port_colors)
        result["flip_ms"], result["faulty_after_flip"] = drain_from(back, new, window, port_colors)
        gates = failed_gates(phase.events)
        gate_at = float(gates[0].get("checked_at_epoch") or 0) if gates else None
        flips = find_results(phase.events, "rollback", ("ok",))
        flipped_at = flips[0].get("flipped_at") if flips else None
        result["gate_at"], result["flipped_at"] = gate_at, flipped_at
        result["gate_reasons"] = gates[0].get("reasons") if gates else None
        if gate_at and back:
            result["gate_to_module_flip_ms"] = round((flipped_at - gate_at) * 1000, 1) if flipped_at else None
            result["gate_to_weights_applied_ms"] = round((back["t_lo"] - gate_at) * 1000, 1)
            result["rollback_ms"] = round((back["t_lo"] - gate_at) * 1000 + (result["flip_ms"] or 0), 1)
            result["exposure_s"] = round(back["t_lo"] - faulty_from, 2) if faulty_from else None
            if flipped_at:
                result["module_flip_vs_watcher_ms"] = round((flipped_at - back["t_lo"]) * 1000, 1)
    if phase.key == "d" and new:
        full = first_change(changes, lambda b, a: b[new] < 100 and a[new] == 100)
        result["flip_ms"] = flip_to(full, new, window, port_colors)
        result["old_drained_ms"], result["old_after_flip"] = drain_from(full, old, window, port_colors)
        flips = find_results(phase.events, "rollback", ("ok",))
        flipped_at = flips[0].get("flipped_at") if flips else None
        result["flipped_at"] = flipped_at
        if full:
            result["start_to_weights_applied_ms"] = round((full["t_lo"] - phase.start) * 1000, 1)
            if result["flip_ms"] is not None:
                result["rollback_ms"] = round((full["t_lo"] - phase.start) * 1000 + result["flip_ms"], 1)
            if flipped_at:
                result["module_flip_vs_watcher_ms"] = round((flipped_at - full["t_lo"]) * 1000, 1)
        result["whole_run_ms"] = round((phase.end - phase.start) * 1000, 1)
    return result


def kinds(failed):
    counts = {}
    for record in failed:
        key = "%s %s" % (record["kind"], record["error"] or record["status"])
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def failure_detail(record, phase, changes):
    """What the evidence needs: when (relative to the phase and its weight changes), what, and what nginx saw."""
    nearest = min(changes, key=lambda c: abs(c["t_lo"] - record["t_send"]), default=None)
    task = None
    for event in phase.events:
        if event.get("event") == "task_start" and event["t"] <= record["t_send"]:
            task = event["task"]
    return {"seq": record["seq"], "conn": record["conn"], "kind": record["kind"], "status": record["status"],
            "error": record["error"], "t_send": record["t_send"], "latency_ms": record["latency_ms"],
            "since_phase_start_s": round(record["t_send"] - phase.start, 3), "during_task": task,
            "nearest_weight_change_s": round(record["t_send"] - nearest["t_lo"], 3) if nearest else None,
            "lb": record.get("lb")}


def aggregate(key, results):
    rows = [r for r in results if r["phase"] == key]
    if not rows:
        return None
    requests = sum(r["requests"] for r in rows)
    latencies = sorted(v for r in rows for v in r["latencies"])
    blast = sum(r["blast_5xx"] for r in rows)
    out = {
        "phase": key, "label": PHASES.get(key, key), "rounds": len(rows), "requests": requests,
        "failed_deployment": sum(r["failed_deployment"] for r in rows),
        "blast_5xx": blast if key == "c" else None,
        "blast_pct": round(100.0 * blast / requests, 3) if key == "c" and requests else None,
        "blast_pct_worst_round": max((r["blast_pct"] or 0) for r in rows) if key == "c" else None,
        "served_by_faulty": sum(r["served_by_faulty"] or 0 for r in rows) if key == "c" else None,
        "retried_by_lb": sum(r["retried_by_lb"] for r in rows),
        "achieved_rps_median": median([r["achieved_rps"] for r in rows]),
        "achieved_rps_min": min(r["achieved_rps"] for r in rows),
        "late_over_100ms": sum(r["late_over_100ms"] for r in rows),
        "worst_second_rps": min((r["worst_second_rps"] for r in rows if r["worst_second_rps"] is not None), default=None),
        "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
        "problems": [r["problem"] for r in rows if r.get("problem")],
    }
    for name in ("flip_ms", "flip_full_ms", "old_drained_ms", "first_step_flip_ms", "rollback_ms", "gate_to_module_flip_ms",
                 "gate_to_weights_applied_ms", "start_to_weights_applied_ms", "whole_run_ms", "exposure_s",
                 "module_flip_vs_watcher_ms", "playbook_s"):
        values = [r.get(name) for r in rows if r.get(name) is not None]
        if values:
            out[name] = {"median": round(median(values), 1), "all": values}
    for name in ("old_after_flip", "faulty_after_flip"):
        values = [r.get(name) for r in rows if r.get(name) is not None]
        if values:
            out[name] = sum(values)
    return out


def fmt_ms(value):
    if value is None:
        return "-"
    return "%.0f ms" % value if value < 10000 else "%.1f s" % (value / 1000)


def table(summary, target):
    head = ["phase", "rounds", "requests", "failed (deploy)", "blast: own 5xx (answered)", "rate req/s (min)", "worst 1 s",
            "p50", "p99", "flip (median)", "rollback (median)"]
    rows = []
    for row in summary:
        blast = "-"
        if row["blast_5xx"] is not None:
            blast = "%d = %.2f %% (of %d)" % (row["blast_5xx"], row["blast_pct"], row["served_by_faulty"])
        rate = "%.0f (%.0f)%s" % (row["achieved_rps_median"], row["achieved_rps_min"],
                                   "" if row["achieved_rps_min"] >= RATE_HELD * target else " NOT HELD")
        rows.append([row["label"].strip(), str(row["rounds"]), str(row["requests"]), str(row["failed_deployment"]), blast, rate,
                     str(row["worst_second_rps"]), fmt_ms(row["p50_ms"]), fmt_ms(row["p99_ms"]),
                     fmt_ms((row.get("flip_ms") or {}).get("median")), fmt_ms((row.get("rollback_ms") or {}).get("median"))])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(head))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r)))
    return "\n".join(lines)


def markdown(summary, target):
    lines = ["| phase | rounds | requests | failed, caused by the deployment | blast radius: faulty release's own 5xx | "
             "achieved req/s: median (min) of rounds; worst second | p50 | p99 | flip: weights applied -> LB serving them | rollback |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in summary:
        blast = "-" if row["blast_5xx"] is None else "%d = %.2f %% (of %d it answered)" % (
            row["blast_5xx"], row["blast_pct"], row["served_by_faulty"])
        flip, rollback = row.get("flip_ms"), row.get("rollback_ms")
        lines.append("| %s | %d | %d | %d | %s | %.0f (%.0f); %s | %s | %s | %s | %s |" % (
            row["label"].strip(), row["rounds"], row["requests"], row["failed_deployment"], blast, row["achieved_rps_median"],
            row["achieved_rps_min"], row["worst_second_rps"], fmt_ms(row["p50_ms"]), fmt_ms(row["p99_ms"]),
            "%s (%s)" % (fmt_ms(flip["median"]), ", ".join("%.0f" % v for v in flip["all"])) if flip else "-",
            "%s (%s)" % (fmt_ms(rollback["median"]), ", ".join("%.0f" % v for v in rollback["all"])) if rollback else "-"))
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------------


def served_version():
    try:
        with urllib.request.urlopen(LB + "/health", timeout=3) as response:
            return json.loads(response.read()).get("version")
    except (OSError, ValueError):
        return None


def faulty_phase(round_no, version, canary_vars, fault_env, folder, attempt=1):
    phase = Phase("c", round_no, "playbooks/canary.yml", ["app_version=%s" % version, dict(canary_vars, app_env=fault_env)],
                  version, False, folder)
    phase.attempt = attempt
    if attempt > 1:
        phase.name += "-attempt%d" % attempt
        phase.timeline_path = os.path.join(folder, phase.name + ".timeline.jsonl")
        phase.log_path = os.path.join(folder, phase.name + ".log")
    return phase


def run(args):
    """Drive the load and the phases; returns the folder with everything the analysis needs (run.json)."""
    fault_env = dict(item.strip().split("=", 1) for item in args.fault.split(",") if "=" in item)
    steps = [int(step) for step in args.steps.split(",")]
    stable = served_version()
    if stable is None or not os.path.exists(LEDGER) or not os.path.exists(ADMIN_SOCKET):
        sys.exit("the LB at %s does not serve, or %s / %s is missing: run `make demo` first" % (LB, LEDGER, ADMIN_SOCKET))
    members = read_json(NGINX_STATE)["members"]

    now = datetime.datetime.now()
    stamp, token = now.strftime("%Y%m%dT%H%M%S"), "b" + now.strftime("%m%d%H%M%S")
    folder = os.path.join(OUT, stamp)
    os.makedirs(folder, exist_ok=True)
    canary_vars = {"canary_steps": steps, "canary_step_pause_s": args.pause, "canary_abort_delay_s": args.abort_delay}
    plan = []
    for round_no in range(1, args.rounds + 1):
        def version(key, r=round_no):
            return "%s.r%d.%s" % (token, r, key)
        bg_gate = "gate_probe_mode=%s" % args.bg_gate_mode
        plan += [
            Phase("a", round_no, "playbooks/blue_green.yml", ["app_version=%s" % version("bg"), bg_gate], version("bg"), True, folder),
            Phase("b", round_no, "playbooks/canary.yml", ["app_version=%s" % version("canary"), canary_vars], version("canary"), True, folder),
            faulty_phase(round_no, version("faulty"), canary_vars, fault_env, folder),
            Phase("prep", round_no, "playbooks/blue_green.yml", ["app_version=%s" % version("prep"), bg_gate], version("prep"), True, folder),
            Phase("d", round_no, "playbooks/rollback.yml", ["emergency=true"], version("canary"), True, folder),
        ]
    log("building %d release artifacts before the load starts" % sum(1 for p in plan if p.key != "d"))
    for phase in plan:
        if phase.key != "d":
            build_artifact(phase.version)

    # Upper bounds: the load and the watcher stop by themselves even if this script dies.
    bound_s = min(args.baseline + args.rounds * 5 * (PLAYBOOK_TIMEOUT / 4) + 120, 3600)
    log_offset = os.path.getsize(ACCESS_LOG)
    watcher = WeightsWatcher(ADMIN_SOCKET, APP, args.poll, bound_s)
    watcher.start()
    records_path = os.path.join(folder, "requests.jsonl")
    tag = "lg" + token
    loadgen = subprocess.Popen([sys.executable, os.path.join(REPO, "bench", "loadgen.py"), "--url", LB, "--rate", str(args.rate),
                                "--connections", str(args.connections), "--seconds", str(bound_s), "--mix", args.mix, "--tag", tag,
                                "--records", records_path, "--stop-with-parent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = json.loads(loadgen.stdout.readline() or "{}")
    if started.get("event") != "started":
        watcher.stopped.set()
        loadgen.kill()
        sys.exit("the load generator did not start: %s" % loadgen.communicate()[1])
    log("load: %.0f requests/s on %d keep-alive connections, tag %s; baseline %.0f s" % (args.rate, args.connections, tag, args.baseline))

    baseline = Phase("baseline", 0, None, [], stable, True, folder)
    baseline.timeline_path = None
    baseline.start = started["t0"] + 1.0
    ran, aborted = [], None
    try:
        time.sleep(1.0 + args.baseline)
        baseline.end = time.time()
        queue = list(plan)
        while queue:
            phase = queue.pop(0)
            ok = phase.run()
            time.sleep(SETTLE_S)
            ran.append(phase)
            if not ok and phase.pre_traffic and phase.attempt < args.fault_attempts:
                # Not a rollback: it never took traffic. Counted apart; the faulty canary goes out again.
                phase.key = "c_pre"
                again = "%s-%d" % (phase.version.split("-")[0], phase.attempt + 1)
                build_artifact(again)
                queue.insert(0, faulty_phase(phase.round, again, canary_vars, fault_env, folder, phase.attempt + 1))
            elif not ok:
                aborted = phase.problem
                break
    except KeyboardInterrupt:
        aborted = "interrupted"
    finally:
        load_stop = time.time()
        loadgen.send_signal(signal.SIGTERM)
        try:
            out, err = loadgen.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            loadgen.kill()
            out, err = loadgen.communicate()
        watcher.stopped.set()
        watcher.join(5)
    stopped = time.time()
    if err.strip():
        log("loadgen: " + err.strip())
    baseline.window_end = ran[0].start if ran else load_stop
    for index, phase in enumerate(ran):
        phase.window_end = ran[index + 1].start if index + 1 < len(ran) else load_stop
    state = {
        "command": " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv), "stamp": stamp, "args": vars(args),
        "steps": steps, "port_colors": dict((member, color) for color, addrs in members.items() for member in addrs),
        "log_offset": log_offset, "tag": tag, "records": records_path, "stopped": stopped, "aborted": aborted,
        "loadavg_at_end": [round(v, 2) for v in os.getloadavg()], "nproc": os.cpu_count(),
        "loadgen": json.loads(out.strip().splitlines()[-1]) if out.strip() else {},
        "watch": {"changes": watcher.changes, "polls": watcher.polls, "errors": watcher.errors,
                  "gap_ms_median": round(median(watcher.gaps) * 1000, 1) if watcher.gaps else None,
                  "gap_ms_p99": round(percentile(sorted(watcher.gaps), 0.99) * 1000, 1) if watcher.gaps else None},
        "phases": [baseline.state()] + [phase.state() for phase in ran],
    }
    with open(os.path.join(folder, "run.json"), "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1, default=str)
    return folder


def analyse(folder):
    state = read_json(os.path.join(folder, "run.json"))
    args = argparse.Namespace(**state["args"])
    phases = [Phase.restore(item) for item in state["phases"]]
    header, records = load_records(state["records"])
    joined = join_access_log(records, header["tag"], state["log_offset"])
    changes = state["watch"]["changes"]
    results = [analyse_phase(phase, records, changes, state["port_colors"]) for phase in phases]
    summary = [row for row in (aggregate(key, results) for key in ["baseline", "a", "b", "c", "c_pre", "prep", "d"]) if row]
    summary[0]["label"] = "baseline, no deployment"
    rounds = sum(1 for p in phases if p.key == "d")
    load_summary = state["loadgen"]
    meta = dict((key, state[key]) for key in ("command", "stamp", "nproc", "loadavg_at_end", "steps", "tag", "aborted", "loadgen"))
    meta.update(args=state["args"], folder=folder, requests_in_access_log=joined,
                weights_watch=dict((k, v) for k, v in state["watch"].items() if k != "changes"))
    for row in results:
        row.pop("latencies", None)
    document = {"meta": meta, "summary": summary, "phases": results, "markdown": markdown(summary, args.rate)}
    path = os.path.join(OUT, "deploy_under_load-%s.json" % state["stamp"])
    for target in (path, os.path.join(OUT, "deploy_under_load.json")):
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, sort_keys=True, default=str)

    goals = []
    for row in summary:
        if row["phase"] != "baseline" and row["failed_deployment"]:
            goals.append("%s: %d failed requests caused by the deployment" % (row["label"].strip(), row["failed_deployment"]))
        if row["phase"] == "c" and (row["blast_pct_worst_round"] or 0) > BLAST_GOAL_PCT:
            goals.append("%s: blast radius %.2f %% > %.1f %% in a round" % (row["label"].strip(), row["blast_pct_worst_round"], BLAST_GOAL_PCT))
    load_avg = state["loadavg_at_end"]
    print()
    print("deployments under load: %d round(s), %.0f req/s target on %d keep-alive connections (mix %s, no retries); "
          "%d cores, load average %.2f %.2f %.2f at the end" % (rounds, args.rate, args.connections, args.mix, state["nproc"], *load_avg))
    print("faulty canary: %s; canary steps %s %%, %d s pause; weights read every %.0f ms on the admin socket (median gap %s ms)" % (
        args.fault, " -> ".join(map(str, state["steps"])), args.pause, args.poll * 1000, state["watch"]["gap_ms_median"]))
    print()
    print(table(summary, args.rate))
    print()
    c_row = next((row for row in summary if row["phase"] == "c"), None)
    d_row = next((row for row in summary if row["phase"] == "d"), None)
    if c_row:
        print("c: failed gate -> rollback module's flipped_at %s, -> weights changed in nginx %s, -> last response of the faulty "
              "release %s (medians); it answered %d requests (%.2f %%), exposed %s s per round" % (
                  fmt_ms((c_row.get("gate_to_module_flip_ms") or {}).get("median")),
                  fmt_ms((c_row.get("gate_to_weights_applied_ms") or {}).get("median")),
                  fmt_ms((c_row.get("rollback_ms") or {}).get("median")), c_row["served_by_faulty"] or 0,
                  100.0 * (c_row["served_by_faulty"] or 0) / max(1, c_row["requests"]),
                  ", ".join("%.1f" % v for v in (c_row.get("exposure_s") or {}).get("all", []))))
    if d_row:
        print("d: ansible-playbook start -> weights changed in nginx %s, -> first response of the previous release %s, whole run %s" % (
            fmt_ms((d_row.get("start_to_weights_applied_ms") or {}).get("median")), fmt_ms((d_row.get("rollback_ms") or {}).get("median")),
            fmt_ms((d_row.get("whole_run_ms") or {}).get("median"))))
    print("requests nginx retried on another upstream (hidden from the client): %s" % ", ".join(
        "%s %d" % (row["phase"], row["retried_by_lb"]) for row in summary))
    print("load generator, whole run: %s of %.0f req/s%s, %d requests, %d failed, %d of them in the access log" % (
        load_summary.get("achieved_rps"), args.rate, "" if load_summary.get("held_target_rate") else " (target NOT held)",
        load_summary.get("requests", 0), load_summary.get("failed", 0), joined))
    print("details: %s" % os.path.relpath(path, REPO))
    if state["aborted"]:
        print("ABORTED: %s" % state["aborted"])
    for goal in goals:
        print("GOAL MISSED: %s" % goal)
    if not goals and not state["aborted"]:
        print("goals met: no failed request caused by a deployment; blast radius at most %.1f %%" % BLAST_GOAL_PCT)
    return 1 if state["aborted"] or (args.strict and goals) else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mix", default="health=5,list=3,write=1")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds of load before the first phase")
    parser.add_argument("--steps", default="10,25,50,100")
    parser.add_argument("--pause", type=int, default=3, help="canary_step_pause_s")
    parser.add_argument("--abort-delay", type=int, default=3, help="canary_abort_delay_s")
    parser.add_argument("--fault", default="LEANVIBE_FAULT_LATENCY_MS=300",
                        help="app_env of the faulty canary, NAME=VALUE[,NAME=VALUE] (default: %(default)s)")
    parser.add_argument("--fault-attempts", type=int, default=1,
                        help="how many times a faulty canary that fails before taking traffic goes out again (default: %(default)s)")
    parser.add_argument("--bg-gate-mode", default="comprehensive", help="gate_probe_mode of the blue-green phases")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between two reads of the live weights")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed too")
    parser.add_argument("--reanalyse", metavar="FOLDER", help="only analyse an earlier run (.run/bench/<time>)")
    args = parser.parse_args()
    if args.reanalyse:
        return analyse(args.reanalyse)
    if not 1 <= args.rounds <= 10 or not 1 <= args.rate <= 2000 or not 1 <= args.connections <= 256 or not 0.002 <= args.poll <= 1:
        parser.error("--rounds 1-10, --rate 1-2000, --connections 1-256, --poll 0.002-1")
    return analyse(run(args))


if __name__ == "__main__":
    sys.exit(main())
