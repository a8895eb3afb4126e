#!/usr/bin/env python
"""Stop the processes a molecule scenario started, by their pid files.

Usage: stop_processes.py [--timeout SECONDS] PID_FILE=MATCH [PID_FILE=MATCH ...]

For each pid file: when the pid is alive and its command line contains MATCH (so a recycled pid is never
signalled), send SIGTERM, wait until it has exited (SIGKILL after the timeout) and remove the pid file.
A missing pid file or a dead process is not an error. Prints one JSON object: {"changed": bool, "stopped": [...]}.
"""

import argparse
import json
import os
import signal
import sys
import time


def read_pid(pid_file):
    try:
        with open(pid_file, encoding="utf-8") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def state_of(pid):
    """One-letter process state, or None when the pid is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid):
    return state_of(pid) not in (None, "Z")


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("targets", nargs="+", metavar="PID_FILE=MATCH")
    args = parser.parse_args(argv)
    stopped, errors = [], []
    for target in args.targets:
        pid_file, sep, match = target.partition("=")
        if not sep or not match:
            parser.error("%r is not PID_FILE=MATCH" % target)
        pid = read_pid(pid_file)
        if pid is not None and alive(pid) and match in cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, args.timeout):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
                errors.append("pid %d of %s ignored SIGTERM for %.0f s and was killed" % (pid, pid_file, args.timeout))
            stopped.append({"pid_file": pid_file, "pid": pid})
        if os.path.exists(pid_file) and (pid is None or not alive(pid)):
            os.unlink(pid_file)
    print(json.dumps({"changed": bool(stopped), "stopped": stopped, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
