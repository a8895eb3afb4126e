#!/usr/bin/env python
"""Steady HTTP/1.1 keep-alive load through the LB, open loop, without retries; every request recorded.

    .venv/bin/python bench/loadgen.py [--url http://127.0.0.1:8000] [--rate 250] [--connections 16]
                                      [--seconds 30] [--mix health=5,list=3,write=1] [--records FILE]

asyncio streams and hand-written HTTP/1.1 (no third-party package): N connections share one schedule of
send times, `rate` per second (open loop: a slow answer does not slow the schedule down, it makes the
next request of that connection late, and the lateness is recorded). A request that fails (non-2xx, a
reset, a timeout, a refused connect, a malformed answer) is counted and NEVER retried; its connection is
closed and the next request of that worker opens a new one.

The mix (weights per scheduled request): `health` GET /health (its JSON body says the version that
answered), `list` GET /api/v1/tasks?limit=20, `write` a POST /api/v1/tasks whose task the same connection
DELETEs in its next slot. API calls carry `Authorization: Bearer <api key>`. Every request carries
`lg=<tag>-<seq>` in its query string, so that it can be found in the LB's access log (which upstream
answered it, after how many tries).

Each record: seq, connection, kind, scheduled send time, actual send time (wall clock, seconds), latency
(ms, until the whole response is read), status (0 when there is none), error kind ("" when none), version
(from /health bodies, else ""). At the end (the --seconds bound, --max-requests, SIGTERM or SIGINT, or
the parent's exit with --stop-with-parent) it
writes the records (JSON lines: a header object, then one array per request) and prints one JSON summary
line on stdout, which says whether the target rate was held. The first stdout line is a JSON "started"
event, for a caller that waits for the load to run.
"""

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import sys
import time
import urllib.parse

FIELDS = ["seq", "conn", "kind", "t_sched", "t_send", "latency_ms", "status", "error", "version"]
KINDS = ("health", "list", "write")
MAX_BODY = 1 << 20
HELD_FRACTION = 0.95
LATE_MS = 100.0


class BadResponse(Exception):
    """The server answered something that is not an HTTP/1.1 response we can read."""


def parse_mix(text):
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError("unknown kind %r in --mix (use %s)" % (name, ", ".join(KINDS)))
        try:
            weights[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError("weight of %s must be a number, not %r" % (name, value)) from None
        if weights[name] < 0:
            raise argparse.ArgumentTypeError("weight of %s must not be negative" % name)
    if not sum(weights.values()):
        raise argparse.ArgumentTypeError("--mix needs at least one positive weight")
    return weights


def error_kind(exc):
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed_mid_response" if exc.partial else "closed_before_response"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken_pipe"
    if isinstance(exc, BadResponse):
        return "bad_response"
    if isinstance(exc, OSError):
        return "oserror_%s" % (exc.errno or type(exc).__name__)
    return type(exc).__name__


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def read_response(reader, method):
    """(status, headers, body) of one response; raises on anything malformed or cut."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(lines[0][:80])
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from nginx: the final empty line
                break
            if len(body) + size > MAX_BODY:
                raise BadResponse("body larger than %d bytes" % MAX_BODY)
            body += await reader.readexactly(size + 2)
            del body[-2:]
        return status, headers, bytes(body)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise BadResponse("body larger than %d bytes" % MAX_BODY)
        return status, headers, await reader.readexactly(length)
    headers["connection"] = "close"
    return status, headers, await reader.read(MAX_BODY)


class LoadGen:
    def __init__(self, args):
        url = urllib.parse.urlsplit(args.url)
        self.host, self.port = url.hostname, url.port or 80
        self.hostport = "%s:%d" % (self.host, self.port)
        self.rate = args.rate
        self.connections = args.connections
        self.timeout = args.timeout
        self.tag = args.tag
        self.auth = "Authorization: Bearer %s\r\n" % args.api_key
        self.max_requests = args.max_requests or int(args.rate * args.seconds) + args.connections
        self.seconds = args.seconds
        kinds = [kind for kind in KINDS if args.mix.get(kind)]
        self.kinds, self.weights = kinds, [args.mix[kind] for kind in kinds]
        self.rng = random.Random(args.seed)
        self.records = []
        self.next_seq = 0
        self.stop = None
        self.parent = os.getppid() if args.stop_with_parent else None
        self.t0_perf = self.t0_wall = 0.0

    def wall(self, perf):
        return self.t0_wall + (perf - self.t0_perf)

    def request_bytes(self, kind, seq, task_id):
        marker = "lg=%s-%d" % (self.tag, seq)
        if kind == "health":
            return "GET", "/health?%s" % marker, ""
        if kind == "list":
            return "GET", "/api/v1/tasks?limit=20&%s" % marker, self.auth
        if kind == "delete":
            return "DELETE", "/api/v1/tasks/%s?%s" % (task_id, marker), self.auth
        return "POST", "/api/v1/tasks?%s" % marker, self.auth

    async def connect(self):
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)

    async def worker(self, index):
        conn = None
        pending_delete = None
        while not self.stop.is_set():
            seq = self.next_seq
            if seq >= self.max_requests:
                break
            self.next_seq += 1
            sched = self.t0_perf + seq / self.rate
            delay = sched - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    break  # stopped while waiting: this slot is not sent
                except asyncio.TimeoutError:
                    pass
            if pending_delete is not None:
                kind, task_id, pending_delete = "delete", pending_delete, None
            else:
                kind, task_id = self.rng.choices(self.kinds, self.weights)[0], None
            method, path, extra = self.request_bytes(kind, seq, task_id)
            body = b""
            if method == "POST":
                body = json.dumps({"title": "bench task %s-%d" % (self.tag, seq), "description": "loadgen"}).encode()
                extra += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
            payload = ("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: leanvibe-bench-loadgen\r\n%s\r\n" % (method, path, self.hostport, extra)).encode() + body
            sent = time.perf_counter()
            status, error, version = 0, "", ""
            try:
                if conn is None:
                    try:
                        conn = await self.connect()
                    except Exception as exc:  # noqa: BLE001 - every failure is a data point
                        raise ConnectionError("connect: " + error_kind(exc)) from exc
                reader, writer = conn
                writer.write(payload)
                await writer.drain()
                status, headers, data = await asyncio.wait_for(read_response(reader, method), self.timeout)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    conn = None
                if kind == "health" and data[:1] == b"{":
                    try:
                        version = str(json.loads(data).get("version") or "")
                    except ValueError:
                        pass
                elif kind == "write" and status == 201:
                    try:
                        pending_delete = int(json.loads(data)["id"])
                    except (ValueError, KeyError, TypeError):
                        pass
            except Exception as exc:  # noqa: BLE001 - every failure is a data point
                if isinstance(exc, ConnectionError) and str(exc).startswith("connect: "):
                    error = "connect_" + str(exc)[len("connect: "):]
                else:
                    error = error_kind(exc)
                if conn is not None:
                    conn[1].close()
                conn = None
            done = time.perf_counter()
            self.records.append([seq, index, kind, round(self.wall(sched), 6), round(self.wall(sent), 6),
                                 round((done - sent) * 1000, 3), status, error, version])
        if conn is not None:
            conn[1].close()

    async def watch_parent(self):
        """Stop when the process that started us is gone (its child is re-parented)."""
        while not self.stop.is_set():
            if os.getppid() != self.parent:
                self.stop.set()
                return
            await asyncio.sleep(1.0)

    async def run(self, on_started=None):
        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        self.t0_perf, self.t0_wall = time.perf_counter() + 0.2, time.time() + 0.2
        if on_started:
            on_started(self.t0_wall)
        workers = [asyncio.ensure_future(self.worker(index)) for index in range(self.connections)]
        if self.parent:
            watchdog = asyncio.ensure_future(self.watch_parent())
        try:
            await asyncio.wait_for(self.stop.wait(), self.seconds + 0.2)
        except asyncio.TimeoutError:
            pass
        self.stop.set()
        ended = time.time()
        if self.parent:
            watchdog.cancel()
        # In-flight requests finish (each is bounded by the timeout); nothing new is sent.
        await asyncio.wait(workers, timeout=self.timeout + 5)
        for task in workers:
            task.cancel()
        self.records.sort(key=lambda record: record[0])
        return ended

    def summary(self, ended):
        records = self.records
        duration = max(1e-6, min(ended, max((r[4] for r in records), default=ended)) - self.t0_wall)
        ok = [r for r in records if 200 <= r[6] < 300 and not r[7]]
        failed = len(records) - len(ok)
        latencies = sorted(r[5] for r in records if r[6])
        outcomes = {}
        for r in records:
            key = r[7] or str(r[6])
            outcomes[key] = outcomes.get(key, 0) + 1
        versions = {}
        for r in records:
            if r[8]:
                versions[r[8]] = versions.get(r[8], 0) + 1
        # The worst whole second of the run (not counting a partial last one).
        per_second = {}
        for r in records:
            second = int(r[4] - self.t0_wall)
            per_second[second] = per_second.get(second, 0) + 1
        full = [per_second.get(s, 0) for s in range(int(duration))]
        achieved = len(records) / duration
        late = sum(1 for r in records if (r[4] - r[3]) * 1000 > LATE_MS)
        return {
            "target_rps": self.rate,
            "achieved_rps": round(achieved, 1),
            "held_target_rate": achieved >= HELD_FRACTION * self.rate,
            "worst_second_rps": min(full) if full else None,
            "late_over_100ms": late,
            "max_lag_ms": round(max(((r[4] - r[3]) * 1000 for r in records), default=0.0), 1),
            "connections": self.connections,
            "duration_s": round(duration, 3),
            "requests": len(records),
            "ok": len(ok),
            "failed": failed,
            "outcomes": dict(sorted(outcomes.items())),
            "versions": versions,
            "latency_ms": {
                "p50": percentile(latencies, 0.50),
                "p90": percentile(latencies, 0.90),
                "p99": percentile(latencies, 0.99),
                "max": latencies[-1] if latencies else None,
                "mean": round(statistics.fmean(latencies), 3) if latencies else None,
            },
        }

    def write_records(self, path):
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        temp = path + ".tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"fields": FIELDS, "tag": self.tag, "t0": self.t0_wall, "target_rps": self.rate,
                                     "connections": self.connections, "url": "http://%s" % self.hostport}) + "\n")
            for record in self.records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        os.replace(temp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second in all (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="upper bound of the run (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=0, help="upper bound of requests (default: rate x seconds)")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("health=5,list=3,write=1"),
                        help="weights of health, list and write (POST + DELETE) (default: health=5,list=3,write=1)")
    parser.add_argument("--api-key", default="local-dev-key")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, connect included (default: %(default)s)")
    parser.add_argument("--tag", default=None, help="marker in every request's query string (default: random)")
    parser.add_argument("--seed", type=int, default=1, help="of the mix's random choices")
    parser.add_argument("--records", help="write every request here (JSON lines)")
    parser.add_argument("--stop-with-parent", action="store_true", help="stop (and report) when the parent process exits")
    args = parser.parse_args(argv)
    host = urllib.parse.urlsplit(args.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        parser.error("load goes to loopback addresses only, not %r" % host)
    if args.rate <= 0 or args.connections < 1 or args.seconds <= 0 or args.seconds > 3600:
        parser.error("--rate must be > 0, --connections >= 1 and --seconds in (0, 3600]")
    args.tag = args.tag or "lg%06x" % random.getrandbits(24)

    gen = LoadGen(args)

    def started(t0):
        print(json.dumps({"event": "started", "t0": t0, "tag": args.tag, "target_rps": args.rate,
                          "connections": args.connections}), flush=True)

    ended = asyncio.run(gen.run(started))
    if args.records:
        gen.write_records(args.records)
    summary = gen.summary(ended)
    print(json.dumps(dict(summary, event="summary", tag=args.tag), sort_keys=True), flush=True)
    if not summary["held_target_rate"]:
        print("loadgen: target rate NOT held: %.1f of %.1f requests/s (worst second %s, %d requests sent more than "
              "%d ms late)" % (summary["achieved_rps"], args.rate, summary["worst_second_rps"], summary["late_over_100ms"],
                               LATE_MS), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
