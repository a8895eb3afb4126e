#!/usr/bin/env python
"""Start a server detached for the synthetic_probes scenario and record its pid.

Usage: start_detached.py --cwd DIR --port PORT --log LOG_FILE --pid-file PID_FILE [--wait SECONDS] -- COMMAND...

Fails when PORT on 127.0.0.1 is taken. Otherwise starts COMMAND in DIR with this process's environment (the
task's `environment:`), detached (own session, no inherited pipes, so Ansible returns at once), writes its pid
to PID_FILE at once (so destroy can stop it even when this helper is interrupted), and waits until it accepts
connections on PORT. When it exits or does not listen within --wait seconds, it is killed, PID_FILE removed and
the end of LOG_FILE shown.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(log_file, lines=20):
    try:
        with open(log_file, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except FileNotFoundError:
        return ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND given")
    if port_taken(args.port):
        sys.exit("port %d on 127.0.0.1 is already in use" % args.port)
    with open(args.log, "ab") as log:
        proc = subprocess.Popen(
            command, cwd=args.cwd,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    with open(args.pid_file, "w", encoding="utf-8") as handle:
        handle.write("%d\n" % proc.pid)
    deadline = time.monotonic() + args.wait
    while not port_taken(args.port):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            os.unlink(args.pid_file)
            sys.exit("%s did not listen on 127.0.0.1:%d within %g s (exit status %s); end of %s:\n%s"
                     % (" ".join(command), args.port, args.wait, proc.returncode, args.log, log_tail(args.log)))
        time.sleep(0.1)
    print("%s listens on 127.0.0.1:%d (pid %d)" % (" ".join(command), args.port, proc.pid))


if __name__ == "__main__":
    main()
