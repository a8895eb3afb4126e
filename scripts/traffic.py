#!/usr/bin/env python
"""Steady user-like traffic through the LB, bounded in time and count, on loopback only.

    python scripts/traffic.py [--url http://127.0.0.1:8000] [--rate 40] [--seconds 60] [--connections 4]

Keep-alive clients that never retry: every failure counts. Half the requests are GET /health,
half GET /api/v1/tasks with the API key. Prints one summary line (JSON) at the end, or at SIGTERM.
"""

import argparse
import http.client
import json
import signal
import threading
import time
import urllib.parse

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="local-dev-key")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second in all")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    host = url.hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        parser.error("traffic goes to loopback addresses only, not %r" % host)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "status": {}}
    max_requests = int(args.rate * args.seconds) + args.connections
    deadline = time.monotonic() + args.seconds
    interval = args.connections / args.rate

    def client(index):
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        sent = 0
        while not stop.is_set() and time.monotonic() < deadline and sent < max_requests // args.connections:
            started = time.monotonic()
            path, headers = ("/health", {}) if (sent + index) % 2 == 0 else ("/api/v1/tasks", {"Authorization": "Bearer " + args.api_key})
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                key = str(response.status)
                ok = response.status < 500
            except (OSError, http.client.HTTPException) as exc:
                key, ok = type(exc).__name__, False
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
            sent += 1
            with lock:
                counts["ok" if ok else "failed"] += 1
                counts["status"][key] = counts["status"].get(key, 0) + 1
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        conn.close()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 15)
    print(json.dumps(counts, sort_keys=True))


if __name__ == "__main__":
    main()
