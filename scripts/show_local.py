#!/usr/bin/env python
"""Print what the local environment serves (the LB and each slot), the dashboard's URL and the last deployments."""

import json
import os
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEDGER = os.path.join(REPO, ".run", "state", "demo.ledger.json")
TARGETS = [("LB", "http://127.0.0.1:8000"), ("blue", "http://127.0.0.1:9001"), ("green", "http://127.0.0.1:9002")]
DASHBOARD = "http://127.0.0.1:5000"


def version_at(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as response:
            return "serves %s" % json.loads(response.read())["version"]
    except (OSError, ValueError, KeyError) as exc:
        return "not serving (%s)" % getattr(exc, "reason", exc)


def dashboard_state(url):
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=3) as response:
            scheduler = json.loads(response.read()).get("scheduler") or {}
    except (OSError, ValueError) as exc:
        return "not answering (%s)" % getattr(exc, "reason", exc)
    return "up, %s probe rounds recorded%s" % (
        scheduler.get("rounds", "?"), "; last error: %s" % scheduler["last_error"] if scheduler.get("last_error") else "")


def main():
    for name, url in TARGETS:
        print("%-6s %-24s %s" % (name, url, version_at(url)))
    print("\ndashboard  %s/  %s" % (DASHBOARD, dashboard_state(DASHBOARD)))
    try:
        with open(LEDGER, encoding="utf-8") as handle:
            ledger = json.load(handle)
    except (OSError, ValueError):
        return
    print("\nlast deployments (%s):" % os.path.relpath(LEDGER, REPO))
    for entry in ledger.get("history", [])[-5:]:
        print("  %s  %-8s %-10s -> %-8s %-11s %s" % (
            entry.get("finished", "")[:19], entry.get("type", ""), entry.get("from_version") or "-", entry.get("version", ""),
            entry.get("outcome", ""), "; ".join(entry.get("reasons", []))[:160]))


if __name__ == "__main__":
    main()
