#!/usr/bin/env python3
"""Print what the local environment serves: the LB and each slot."""

import json
import urllib.error
import urllib.request

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


if __name__ == "__main__":
    main()
