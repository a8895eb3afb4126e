# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The identity of a deploy run, read from /proc: who holds the deploy lock, and whether that run still runs.

The run identity (``run_identity``) names the ansible-playbook process that holds the deploy lock: its pid is found by
walking up from the current process while the parent has the same command line (forked workers share it), and its
run id is derived from that pid, its start time and the boot id, so every worker of one run computes the same id.
A later process that reuses the pid starts at another time, so it gets another id (``holder_alive_locally``).
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import socket
import uuid

from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso


def _proc_read(proc_root, pid, name):
    try:
        with open(os.path.join(proc_root, str(pid), name), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def proc_stat(pid, proc_root="/proc"):
    """(ppid, start time in clock ticks since boot) from /proc/<pid>/stat, or None."""
    data = _proc_read(proc_root, pid, "stat")
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_cmdline(pid, proc_root="/proc"):
    return _proc_read(proc_root, pid, "cmdline")


def main_process(pid=None, proc_root="/proc"):
    """The pid of the main ansible-playbook process: up from `pid` while the parent has the same command line."""
    pid = os.getpid() if pid is None else pid
    cmdline = proc_cmdline(pid, proc_root)
    if not cmdline:
        return pid
    for _step in range(256):
        stat = proc_stat(pid, proc_root)
        if stat is None or stat[0] <= 1:
            break
        if proc_cmdline(stat[0], proc_root) != cmdline:
            break
        pid = stat[0]
    return pid


def _boot_id(proc_root):
    data = _proc_read(proc_root, "sys/kernel/random", "boot_id")
    return data.decode("ascii", "replace").strip() if data else ""


def _boot_time(proc_root):
    try:
        with open(os.path.join(proc_root, "stat"), "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_id_for(pid, start_ticks, boot_id="", hostname=""):
    """A uuid4-shaped hex id, the same for every process that derives it from the same main process."""
    seed = "leanvibe-run|%s|%s|%s|%s" % (hostname, boot_id, pid, start_ticks)
    return uuid.UUID(bytes=hashlib.sha256(seed.encode("utf-8")).digest()[:16], version=4).hex


def _user():
    try:
        import pwd  # pylint: disable=import-outside-toplevel
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or str(os.getuid())


def run_identity(proc_root="/proc", pid=None, hostname=None):
    """{run_id, controller, pid, user, started} of the ansible-playbook run this process belongs to.

    Without a /proc tree the process group stands for the run (best effort: workers share it) and started is None.
    """
    hostname = hostname or socket.gethostname()
    start = os.getpid() if pid is None else pid
    if proc_stat(start, proc_root) is None:
        group = os.getpgid(0) if pid is None else pid
        return {"run_id": run_id_for(group, "pgid", "", hostname), "controller": hostname, "pid": group,
                "user": _user(), "started": None}
    main = main_process(start, proc_root)
    ticks = proc_stat(main, proc_root)[1]
    boot = _boot_id(proc_root)
    started = None
    btime = _boot_time(proc_root)
    if btime is not None:
        hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        seconds = btime + float(ticks) / hertz
        started = iso(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))
    return {"run_id": run_id_for(main, ticks, boot, hostname), "controller": hostname, "pid": main, "user": _user(),
            "started": started}


def holder_alive_locally(holder, proc_root="/proc", hostname=None):
    """Whether the run that holds a lock still runs, judged on this machine.

    True: its process runs here (same pid and same start time, so not a recycled pid). False: the holder ran on this
    machine and its process is gone. None: the holder ran on another controller, so this machine cannot tell.
    """
    if not isinstance(holder, dict):
        return None
    hostname = hostname or socket.gethostname()
    if holder.get("controller") != hostname:
        return None
    try:
        pid = int(str(holder.get("pid")))
    except ValueError:
        return False
    if pid < 1:
        return False
    stat = proc_stat(pid, proc_root)
    if stat is None:
        if os.path.exists(os.path.join(proc_root, "stat")):
            return False  # a /proc tree without this pid: the process is gone
        try:
            os.kill(pid, 0)
        except OSError as exc:
            return exc.errno == errno.EPERM
        return True
    if not holder.get("run_id"):
        return True
    return run_id_for(pid, stat[1], _boot_id(proc_root), hostname) == holder["run_id"]
