#!/usr/bin/env python3
"""Stop what a local environment started under RUN_DIR: its supervisords (monitoring service, slots) and its nginx.

Used by `make stop` and by the integration tests. It waits until each process is gone.
"""

import os
import signal
import sys
import time


def read_pid(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(pid_file, sig, name, timeout=30.0):
    pid = read_pid(pid_file)
    if pid is None or not alive(pid):
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        print("%s (pid %d) did not stop in %ds; killed" % (name, pid, timeout))
    else:
        print("stopped %s (pid %d)" % (name, pid))
    return True


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: stop_local.py RUN_DIR")
    run_dir = os.path.abspath(sys.argv[1])
    # supervisord stops its processes gracefully on SIGTERM before it exits. The monitor goes first, so that
    # stopping the environment is not recorded as downtime.
    stop(os.path.join(run_dir, "monitoring", "supervisor", "supervisord.pid"), signal.SIGTERM, "supervisord of the monitoring service")
    stop(os.path.join(run_dir, "app", "supervisor", "supervisord.pid"), signal.SIGTERM, "supervisord")
    stop(os.path.join(run_dir, "nginx", "run", "nginx.pid"), signal.SIGQUIT, "nginx")


if __name__ == "__main__":
    main()
