#!/usr/bin/env python
"""Print what the local environment serves (the LB and each slot) and the last deployments from its ledger."""

import json
import os
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEDGER = os.path.join(REPO, ".run", "state", "demo.ledger.json")
TARGETS = [("LB", "http://127.0.0.1:8000"), ("blue", "http://127.0.0.1:9001"), ("green", "http://127.0.0.1:9002")]


def version_at(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as response:
            return "serves %s" % json.loads(response.read())["version"]
    except (OSError, ValueError, KeyError) as exc:
        return "not serving (%s)" % getattr(exc, "reason", exc)


def main():
    for name, url in TARGETS:
        print("%-6s %-24s %s" % (name, url, version_at(url)))
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
