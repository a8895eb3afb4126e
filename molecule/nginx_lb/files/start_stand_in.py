#!/usr/bin/env python
"""Start a stand-in slot for the nginx_lb scenario: `python -m http.server` serving a page that names its color.

Usage: start_stand_in.py PORT COLOR DOC_ROOT LOG_FILE PID_FILE

Fails when the port is taken. Otherwise writes DOC_ROOT/index.html ("<color>\n"), starts the server detached
(own session, no inherited pipes, so Ansible returns at once), waits until it accepts connections and writes
its pid to PID_FILE.
"""

import os
import socket
import subprocess
import sys
import time


def port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main(argv):
    port, color, doc_root, log_file, pid_file = argv
    port = int(port)
    if port_taken(port):
        sys.exit("port %d on 127.0.0.1 is already in use" % port)
    os.makedirs(doc_root, mode=0o755, exist_ok=True)
    with open(os.path.join(doc_root, "index.html"), "w", encoding="utf-8") as page:
        page.write(color + "\n")
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", doc_root],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + 15
    while not port_taken(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit("the %s stand-in server did not listen on %d; see %s" % (color, port, log_file))
        time.sleep(0.05)
    with open(pid_file, "w", encoding="utf-8") as handle:
        handle.write("%d\n" % proc.pid)
    print("%s stand-in server listens on 127.0.0.1:%d (pid %d)" % (color, port, proc.pid))


if __name__ == "__main__":
    main(sys.argv[1:])
