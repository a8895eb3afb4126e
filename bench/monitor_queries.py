#!/usr/bin/env python
"""Benchmark: the monitoring service's reads over real HTTP at production data volumes (30 days at one round per 30 s).

For each size (default 30 and 7 days) a temp SQLite database gets one environment, `production`, probed every 30 s
in mode standard (4 checks a round, as inventories/production runs it): 2,880 rounds and 11,520 checks a day, plus
about 10 deployment events a day (300 in 30 days: deploy, canary steps 10/25/50, promote; one deployment in six
rolls back), and a few outages and failed checks.

How it is filled: the Store has no bulk write (record_round is one round per transaction on a fresh connection,
about 2 ms, so 86,400 rounds would take minutes). Rounds and checks therefore go in with sqlite3 executemany, one
transaction per day, using the Store's own INSERT statements and column lists on the schema Store.ensure_schema
made; events go through Store.record_event. `--fill store` writes every round through Store.record_round instead.

The service runs in a child process (this script with --serve): the real FastAPI app of create_app with
start_scheduler=False, under uvicorn on 127.0.0.1 (first free port of 18700-18709). One keep-alive HTTP/1.1
connection asks each endpoint in turn, the page's queries included (static/app.js: /api/latency with
max_points=2000, /api/deployments?limit=20); one warm-up pass is not counted, then --rounds passes. Then: the
service's VmRSS and VmHWM from /proc, the database file size, the Store.record_round write at that size, and, on
the largest size, Store.prune to a 7-day retention and the hourly prune after it.

    .venv/bin/python bench/monitor_queries.py [--days 30 7] [--rounds 20] [--warmup 1] [--events-per-day 10]
"""

import argparse
import http.client
import json
import math
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".collections")
sys.path.insert(0, os.path.join(REPO, "monitor"))

# pylint: disable-next=wrong-import-position
from leanvibe_monitor.store import _CHECK_COLUMNS, _ROUND_COLUMNS, Store, _insert, iso  # noqa: E402

ENVIRONMENT = "production"
INTERVAL_S = 30.0
DAY_S = 86400.0
PROBES = ("basic_health", "database_health", "api_functionality", "websocket")  # mode standard
PROBE_MS = {"basic_health": 6.0, "database_health": 14.0, "api_functionality": 28.0, "websocket": 18.0}
PORTS = range(18700, 18710)
PAGE_MAX_POINTS = 2000  # static/app.js MAX_POINTS
PAGE_DEPLOYMENT_LIMIT = 20  # static/app.js DEPLOYMENT_LIMIT
RETENTION_DAYS = 7
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 120.0
WRITE_SAMPLES = 100

ENDPOINTS = (
    ("/api/overview", "/api/overview"),
    ("/api/latency 24h, max_points (page)", "/api/latency?environment=%s&window=24h&max_points=%d" % (ENVIRONMENT, PAGE_MAX_POINTS)),
    ("/api/latency 7d, max_points (page)", "/api/latency?environment=%s&window=7d&max_points=%d" % (ENVIRONMENT, PAGE_MAX_POINTS)),
    ("/api/latency 30d, max_points (page)", "/api/latency?environment=%s&window=30d&max_points=%d" % (ENVIRONMENT, PAGE_MAX_POINTS)),
    ("/api/latency 24h, all points", "/api/latency?environment=%s&window=24h" % ENVIRONMENT),
    ("/api/latency 7d, all points", "/api/latency?environment=%s&window=7d" % ENVIRONMENT),
    ("/api/latency 30d, all points", "/api/latency?environment=%s&window=30d" % ENVIRONMENT),
    ("/api/metrics?hours=24", "/api/metrics?hours=24"),
    ("/api/uptime 30d", "/api/uptime?environment=%s&window=30d" % ENVIRONMENT),
    ("/api/deployments (page)", "/api/deployments?limit=%d" % PAGE_DEPLOYMENT_LIMIT),
    ("/metrics", "/metrics"),
)


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --- the data ---------------------------------------------------------------------------------------


def plan_deployments(start, end, events_per_day, rng):
    """Deployment events spread over [start, end], oldest first, and the version serving after each moment."""
    events, serving = [], [(start, "1.0.0")]
    version, number = "1.0.0", 0
    wanted = int(round(events_per_day * (end - start) / DAY_S))
    gap = (end - start) / max(wanted / 4.5, 1)  # about 4.5 events per deployment
    at = start + gap / 2
    while len(events) < wanted and at < end - 600:
        number += 1
        new = "1.%d.0" % number
        rolls_back = number % 6 == 0
        steps = [10] if rolls_back else [10, 25, 50]
        moment = at
        # As the playbooks send them (canary.yml, tasks/canary_step.yml): weights on every event, a text, reasons on a rollback.
        events.append({"event": "deploy", "at_ts": moment, "version": new, "from_version": version, "weights": {version: 100},
                       "text": "leanvibe %s goes out as a canary in production (stable %s)" % (new, version)})
        for weight in steps:
            moment += 60 + rng.random() * 30
            events.append({"event": "step", "at_ts": moment, "version": new, "from_version": version,
                           "weights": {version: 100 - weight, new: weight}, "text": "leanvibe %s takes %d %% of production" % (new, weight)})
        moment += 60 + rng.random() * 30
        if rolls_back:
            reason = "traffic analysis: canary p95 %d ms over the 250 ms gate" % rng.randint(300, 600)
            events.append({"event": "rollback", "at_ts": moment, "version": new, "from_version": version, "to_version": version,
                           "weights": {version: 100}, "reasons": [reason], "rollback_ms": round(20 + rng.random() * 100, 1),
                           "text": "leanvibe %s rolled back automatically in production, %s serves: %s" % (new, version, reason)})
        else:
            events.append({"event": "promote", "at_ts": moment, "version": new, "from_version": version, "weights": {new: 100},
                           "text": "leanvibe %s promoted in production (was %s)" % (new, version)})
            version = new
            serving.append((moment, version))
        at += gap * (0.7 + 0.6 * rng.random())
    return events[:wanted], serving


def event_row(spec):
    """A deployment_events row as POST /api/events stores it (app.parse_event), received when it was sent."""
    body = {"event": spec["event"], "app": "leanvibe", "environment": ENVIRONMENT, "version": spec["version"], "at": iso(spec["at_ts"])}
    for key in ("from_version", "to_version", "weights", "reasons", "rollback_ms", "text"):
        if spec.get(key) is not None:
            body[key] = spec[key]
    return {"timestamp": iso(spec["at_ts"]), "ts": spec["at_ts"], "at": iso(spec["at_ts"]), "at_ts": spec["at_ts"],
            "environment": ENVIRONMENT, "app": "leanvibe", "event": spec["event"], "version": spec["version"],
            "from_version": spec.get("from_version"), "to_version": spec.get("to_version"), "weights": spec.get("weights"),
            "reasons": spec.get("reasons") or [], "text": spec.get("text"), "rollback_ms": spec.get("rollback_ms"), "payload": body}


def round_rows(index, ts, version, outage, rng):
    """(probe_rounds row, health_checks rows) of one round, shaped like scheduler.round_rows makes them."""
    round_id = "%032x" % (rng.getrandbits(96) << 32 | index)
    stamp = iso(ts)
    checks = []
    for probe in PROBES:
        failed = outage or rng.random() < 0.002
        ms = round(PROBE_MS[probe] * rng.lognormvariate(0, 0.35) + (2000.0 if outage else 0.0), 1)
        if outage or failed:
            detail = "connection refused" if outage else "HTTP 503"
        else:
            detail = "healthy, version %s" % version if probe == "basic_health" else "ok"
        checks.append({"timestamp": stamp, "ts": ts, "environment": ENVIRONMENT, "endpoint": probe,
                       "status_code": None if outage else (503 if failed else 200), "response_time_ms": ms, "success": not failed,
                       "detail": detail, "round_id": round_id})
    passed_count = sum(check["success"] for check in checks)
    up = checks[0]["success"]
    row = {"id": round_id, "timestamp": stamp, "ts": ts, "environment": ENVIRONMENT, "url": "https://api.leanvibe.ai",
           "passed": passed_count / len(checks) >= 0.85, "up": up, "success_rate": passed_count / len(checks),
           "duration_ms": round(max(check["response_time_ms"] for check in checks) + 3.0, 1),
           "health_ms": checks[0]["response_time_ms"], "version": version if up else None,
           "msg": "Suite passed: %d/%d probes." % (passed_count, len(checks))}
    return row, checks


def fill(path, days, events_per_day, end, how, seed):
    """Fill a new database; returns (rounds, checks, events, seconds)."""
    rng = random.Random(seed)
    store = Store("sqlite:///" + path)
    store.ensure_schema()
    start = end - days * DAY_S
    events, serving = plan_deployments(start, end, events_per_day, rng)
    # Two outages of 8 minutes: rounds down, every check failed.
    outages = [(start + days * DAY_S * fraction, start + days * DAY_S * fraction + 480) for fraction in (0.31, 0.77)]
    count = int(days * DAY_S / INTERVAL_S)
    started = time.perf_counter()
    conn = None if how == "store" else sqlite3.connect(path)
    checks_total = 0
    batch_rounds, batch_checks = [], []
    serving_index = 0
    for index in range(count):
        ts = start + (index + 1) * INTERVAL_S + rng.random() * 0.5
        while serving_index + 1 < len(serving) and serving[serving_index + 1][0] <= ts:
            serving_index += 1
        outage = any(low <= ts < high for low, high in outages)
        row, checks = round_rows(index, ts, serving[serving_index][1], outage, rng)
        checks_total += len(checks)
        if conn is None:
            store.record_round(row, checks)
            continue
        batch_rounds.append(tuple(row[column] for column in _ROUND_COLUMNS))
        batch_checks.extend(tuple(check[column] for column in _CHECK_COLUMNS) for check in checks)
        if len(batch_rounds) == int(DAY_S / INTERVAL_S) or index == count - 1:
            with conn:  # one transaction per day
                conn.executemany(_insert("probe_rounds", _ROUND_COLUMNS), batch_rounds)
                conn.executemany(_insert("health_checks", _CHECK_COLUMNS), batch_checks)
            batch_rounds, batch_checks = [], []
    for spec in events:
        store.record_event(event_row(spec))
    if conn is not None:
        conn.close()
    checkpoint(path)
    seconds = time.perf_counter() - started
    store.close()
    return count, checks_total, len(events), seconds


def checkpoint(path):
    """Move the WAL into the database file, so that its size is the database's."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def file_mb(path):
    return sum(os.path.getsize(name) for name in (path, path + "-wal") if os.path.exists(name)) / 1e6


# --- the service --------------------------------------------------------------------------------------


def free_port():
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit("no free port in %d-%d" % (PORTS[0], PORTS[-1]))


def write_config(folder, db_path, port):
    path = os.path.join(folder, "monitor-%d.json" % port)
    # The URL is a closed port: the scheduler is not started, nothing is ever probed.
    config = {"listen": "127.0.0.1:%d" % port, "database": "sqlite:///" + db_path, "token": "bench-token", "retention_days": 30,
              "collections_path": COLLECTIONS,
              "environments": [{"name": ENVIRONMENT, "url": "http://127.0.0.1:9", "interval_s": INTERVAL_S, "mode": "standard",
                                "api_key": "bench-key"}]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    return path


def serve(config_path):
    """The child process: the real app without its scheduler, under uvicorn as leanvibe-monitor runs it."""
    import uvicorn  # pylint: disable=import-outside-toplevel

    from leanvibe_monitor.app import create_app  # pylint: disable=import-outside-toplevel
    from leanvibe_monitor.config import load_config  # pylint: disable=import-outside-toplevel

    config = load_config(config_path)
    app = create_app(config, start_scheduler=False)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_config=None, log_level="warning",
                                           access_log=False, lifespan="on", server_header=False))
    server.run()


def start_service(folder, db_path):
    port = free_port()
    config_path = write_config(folder, db_path, port)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", config_path], cwd=REPO)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:  # bounded: START_TIMEOUT_S
        if proc.poll() is not None:
            sys.exit("the service exited with status %d" % proc.returncode)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    sys.exit("the service did not answer on port %d within %.0f s" % (port, START_TIMEOUT_S))


def stop_service(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def proc_status(pid, field):
    """A /proc/<pid>/status field in MB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid, encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def get(conn, path):
    """(ms, status, body bytes) of one GET on the keep-alive connection."""
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    return (time.perf_counter() - started) * 1000.0, response.status, len(body)


def measure(port, rounds, warmup):
    """{label: {"ms": [...], "bytes": n}}; each pass asks every endpoint once, in the table's order."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    results = {endpoint[0]: {"ms": [], "bytes": 0} for endpoint in ENDPOINTS}
    for index in range(warmup + rounds):
        for label, path in ENDPOINTS:
            ms, status, size = get(conn, path)
            if status != 200:
                sys.exit("GET %s answered %d" % (path, status))
            if index >= warmup:
                results[label]["ms"].append(ms)
                results[label]["bytes"] = size
    conn.close()
    return results


def write_cost(db_path, end):
    """Median ms of Store.record_round (the scheduler's write of one round) on this database."""
    store = Store("sqlite:///" + db_path)
    rng = random.Random(7)
    samples = []
    for index in range(WRITE_SAMPLES):
        row, checks = round_rows(10 ** 7 + index, end + (index + 1) * INTERVAL_S, "9.9.9", False, rng)
        started = time.perf_counter()
        store.record_round(row, checks)
        samples.append((time.perf_counter() - started) * 1000.0)
    store.close()
    return statistics.median(samples)


def prune_cost(db_path, end):
    """(seconds, rows deleted) of a prune to RETENTION_DAYS, then of the next hourly prune."""
    store = Store("sqlite:///" + db_path)
    started = time.perf_counter()
    deleted = store.prune(RETENTION_DAYS, now=end)
    first = time.perf_counter() - started
    started = time.perf_counter()
    hourly = store.prune(RETENTION_DAYS, now=end + 3600)
    second = time.perf_counter() - started
    store.close()
    return first, deleted, second, hourly


# --- main ---------------------------------------------------------------------------------------------


def run_size(folder, days, args, end):
    db_path = os.path.join(folder, "monitor-%gd.db" % days)
    rounds, checks, events, fill_s = fill(db_path, days, args.events_per_day, end, args.fill, args.seed)
    size = {"days": days, "rounds": rounds, "checks": checks, "events": events, "fill_s": fill_s, "db_mb": file_mb(db_path)}
    print("%g days: %d rounds, %d checks, %d events filled in %.1f s (%s), %.1f MB" % (
        days, rounds, checks, events, fill_s, args.fill, size["db_mb"]), flush=True)
    proc, port = start_service(folder, db_path)
    try:
        size["rss_start_mb"] = proc_status(proc.pid, "VmRSS")
        started = time.perf_counter()
        size["results"] = measure(port, args.rounds, args.warmup)
        size["measure_s"] = time.perf_counter() - started
        size["rss_end_mb"] = proc_status(proc.pid, "VmRSS")
        size["hwm_mb"] = proc_status(proc.pid, "VmHWM")
    finally:
        stop_service(proc)
    size["write_ms"] = write_cost(db_path, end)
    return size, db_path


def print_table(sizes):
    columns = " | ".join("%g d: median | %g d: p95" % (size["days"], size["days"]) for size in sizes)
    print("| endpoint | %s | response (%g d) |" % (columns, sizes[0]["days"]))
    print("| --- |" + " ---: | ---: |" * len(sizes) + " ---: |")
    for label in (endpoint[0] for endpoint in ENDPOINTS):
        cells = []
        for size in sizes:
            values = sorted(size["results"][label]["ms"])
            cells.append("%.1f ms | %.1f ms" % (statistics.median(values), percentile(values, 0.95)))
        print("| %s | %s | %s |" % (label, " | ".join(cells), "%.1f kB" % (sizes[0]["results"][label]["bytes"] / 1000.0)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, nargs="+", default=[30.0, 7.0],
                        help="sizes to fill, in days of data (default: 30 7); past 30 days is what a longer retention keeps, the API's windows"
                        " stop at 30 d")
    parser.add_argument("--rounds", type=int, default=20, help="timed passes over the endpoints (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="passes not counted (default 1)")
    parser.add_argument("--events-per-day", type=float, default=10.0, help="deployment events a day (default 10: 300 in 30 days)")
    parser.add_argument("--fill", choices=("batched", "store"), default="batched",
                        help="batched: the Store's INSERTs, one transaction a day; store: Store.record_round per round (minutes)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--keep", metavar="DIR", help="fill and keep the databases in DIR instead of a temp folder")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if not 1 <= args.rounds <= 1000 or not 0 <= args.warmup <= 100 or not all(1 <= days <= 365 for days in args.days):
        parser.error("--rounds takes 1 to 1000, --warmup 0 to 100, --days 1 to 365")

    began = time.perf_counter()
    end = time.time()
    folder = args.keep or tempfile.mkdtemp(prefix="monitor-bench-")
    os.makedirs(folder, exist_ok=True)
    sizes, prune = [], None
    try:
        for days in sorted(args.days, reverse=True):
            size, db_path = run_size(folder, days, args, end)
            sizes.append(size)
            if days == max(args.days) and days > RETENTION_DAYS:
                prune = prune_cost(db_path, end + WRITE_SAMPLES * INTERVAL_S)
                checkpoint(db_path)
                size["db_after_prune_mb"] = file_mb(db_path)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print()
    print("command: %s %s" % (os.path.relpath(sys.executable, REPO) if sys.executable.startswith(REPO) else sys.executable,
                              " ".join([os.path.relpath(os.path.abspath(__file__), REPO)] + sys.argv[1:])))
    print("one environment, every %g s, mode standard (%d checks a round); %d timed passes, %d warm-up; %d cores, load average %s" % (
        INTERVAL_S, len(PROBES), args.rounds, args.warmup, os.cpu_count(), ", ".join("%.2f" % load for load in os.getloadavg())))
    print()
    print_table(sizes)
    print()
    print("| size | rounds | checks | events | database file | fill | service VmRSS: started -> after the runs (peak) | Store.record_round |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        print("| %g days | %d | %d | %d | %.1f MB | %.1f s | %.0f -> %.0f MB (%.0f MB) | %.2f ms |" % (
            size["days"], size["rounds"], size["checks"], size["events"], size["db_mb"], size["fill_s"], size["rss_start_mb"],
            size["rss_end_mb"], size["hwm_mb"], size["write_ms"]))
    if prune is not None:
        first, deleted, second, hourly = prune
        print()
        print("prune of the %g-day database to %d days: %.2f s, deleted %s; the next hourly prune: %.3f s, deleted %s; file %.1f MB after"
              " (SQLite keeps the freed pages)" % (
                  sizes[0]["days"], RETENTION_DAYS, first, ", ".join("%s %d" % item for item in sorted(deleted.items())), second,
                  ", ".join("%s %d" % item for item in sorted(hourly.items())), sizes[0]["db_after_prune_mb"]))
    print("runtime: %.0f s (measuring: %s)" % (time.perf_counter() - began,
                                               ", ".join("%.0f s at %g days" % (size["measure_s"], size["days"]) for size in sizes)))


if __name__ == "__main__":
    main()
