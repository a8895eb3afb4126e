#!/usr/bin/env python
"""Benchmark: how fast traffic goes back to the stable release, on an environment of its own.

The bench brings up a local environment (site.yml on inventories/local, every runtime file in a temp folder) on the
ports from --port-base (default $LEANVIBE_TEST_PORT_BASE, else 18000; never the ports of `make demo`), and a small
webhook receiver on the monitoring port that counts the deployment events. It stops it all at the end.

1. rollback.yml -e emergency=true against a one-task playbook (ansible.builtin.ping on the primary LB, same
   inventory, same connection, same extra vars), alternating in each round: the median wall time of each and their
   ratio; and the time from starting ansible-playbook until the LB answers the previous release (a client polls
   /health every 10 ms). Before each round, blue_green.yml puts a new release on the idle color, so that the previous
   one is warm.
2. With --canary-rounds N: the rescue path of canary.yml. A canary with LEANVIBE_FAULT_LATENCY_MS=300 under steady
   traffic fails a traffic-analysis gate; the figure is from the gate's verdict to the weights flipped, as the
   ledger's rollback entry records it (rollback.detected -> rollback.restored).

    .venv/bin/python bench/rollback_speed.py [--rounds 5] [--canary-rounds 0] [--port-base 22000]
"""

import argparse
import datetime
import http.client
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1")
DEMO_PORTS = (8000, 9001, 9002, 5000)
ONE_TASK = """---
# The yardstick of the emergency rollback: one module round trip on the primary LB, nothing else.
- name: One task
  hosts: lb[0]
  gather_facts: false
  tasks:
    - name: Ping the primary LB
      ansible.builtin.ping:
"""


class Bench:
    def __init__(self, port_base):
        self.port = port_base
        self.run_dir = tempfile.mkdtemp(prefix="lv-rollback-bench-")
        self.vars_file = os.path.join(self.run_dir, "bench-vars.json")
        self.one_task = os.path.join(self.run_dir, "one_task.yml")
        self.lb = ("127.0.0.1", port_base)
        with open(self.vars_file, "w", encoding="utf-8") as handle:
            json.dump({
                "leanvibe_run_dir": self.run_dir,
                "lb_listen": "127.0.0.1:%d" % port_base,
                "app_ports": {"blue": port_base + 1, "green": port_base + 2},
                "app_artifact_dir": os.path.join(self.run_dir, "artifacts"),
                "app_drain_timeout": 5,
                # No dashboard: the bench's receiver takes the deployment events on its port instead.
                "monitoring_enabled": False,
                "monitoring_listen": "127.0.0.1:%d" % (port_base + 5),
            }, handle)
        with open(self.one_task, "w", encoding="utf-8") as handle:
            handle.write(ONE_TASK)

    def command(self, playbook, *args):
        path = playbook if os.path.isabs(playbook) else os.path.join(REPO, playbook)
        return [os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(REPO, "inventories", "local"), path,
                "-e", "@" + self.vars_file] + list(args)

    def playbook(self, playbook, *args, check=True):
        proc = subprocess.run(self.command(playbook, *args), cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=600, check=False)
        if check and proc.returncode != 0:
            sys.exit("ansible-playbook %s failed:\n%s" % (" ".join((playbook,) + args), proc.stdout[-3000:]))
        return proc

    def timed(self, playbook, *args, watch_for=None):
        """(wall seconds, seconds until the LB answered `watch_for` or None) of one ansible-playbook run."""
        watch = HealthWatch(self.lb, watch_for) if watch_for else None
        started = time.perf_counter()
        if watch:
            watch.start(started)
        proc = subprocess.run(self.command(playbook, *args), cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=600, check=False)
        wall = time.perf_counter() - started
        if watch:
            watch.stop()
        if proc.returncode != 0:
            sys.exit("ansible-playbook %s failed:\n%s" % (" ".join((playbook,) + args), proc.stdout[-3000:]))
        return wall, (watch.seen - started if watch and watch.seen else None)

    def ledger(self):
        with open(os.path.join(self.run_dir, "state", "demo.ledger.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def served(self):
        conn = http.client.HTTPConnection(*self.lb, timeout=2)
        try:
            conn.request("GET", "/health")
            return json.loads(conn.getresponse().read())["version"]
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def stop(self):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "stop_local.py"), self.run_dir], check=False,
                       capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


class HealthWatch:
    """Polls the LB's /health every 10 ms on one keep-alive connection; notes when `version` first answers."""

    def __init__(self, lb, version):
        self.lb, self.version = lb, version
        self.seen = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, _started):
        self.thread.start()

    def stop(self):
        # The run may end a moment before the poller's next round.
        self.thread.join(timeout=1)
        self.halt.set()
        self.thread.join(timeout=5)

    def _run(self):
        conn = http.client.HTTPConnection(*self.lb, timeout=2)
        deadline = time.monotonic() + 120
        while not self.halt.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and json.loads(body).get("version") == self.version:
                    self.seen = time.perf_counter()
                    break
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection(*self.lb, timeout=2)
            self.halt.wait(0.01)
        conn.close()


class Receiver(http.server.ThreadingHTTPServer):
    """The deployment webhook (monitoring_url/api/events): counts the events, with the time each arrived."""

    daemon_threads = True

    def __init__(self, port):
        self.events = []
        super().__init__(("127.0.0.1", port), ReceiverHandler)


class ReceiverHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        self.server.events.append((time.perf_counter(), event))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


def seconds_between(first, second):
    parse = datetime.datetime.fromisoformat
    return (parse(second.replace("Z", "+00:00")) - parse(first.replace("Z", "+00:00"))).total_seconds()


def canary_rounds(bench, stable, rounds):
    gate_to_flip, module_flip = [], []
    for index in range(rounds):
        traffic = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "traffic.py"), "--url", "http://%s:%d" % bench.lb,
                                    "--seconds", "90", "--rate", "40"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc = bench.playbook("playbooks/canary.yml", "-e", "app_version=%s-slow.%d" % (stable, index),
                              "-e", json.dumps({"canary_steps": [25, 50, 100], "canary_step_pause_s": 3, "canary_abort_delay_s": 0,
                                                "canary_analysis": {"min_requests": 10},
                                                "app_env": {"LEANVIBE_FAULT_LATENCY_MS": "300"}}), check=False)
        traffic.terminate()
        traffic.communicate(timeout=30)
        entry = bench.ledger()["history"][-1]
        timing = entry.get("rollback") or {}
        if proc.returncode == 0 or entry.get("outcome") != "rolled_back" or not timing.get("detected"):
            sys.exit("the slow canary was not rolled back by a gate:\n%s" % proc.stdout[-3000:])
        module_flip.append(timing["duration_ms"])
        gate_to_flip.append(seconds_between(timing["detected"], timing["restored"]) * 1000)
    return gate_to_flip, module_flip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--canary-rounds", type=int, default=0)
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("LEANVIBE_TEST_PORT_BASE", "18000")),
                        help="LB on this port, slots on +1 and +2, webhook receiver on +5")
    args = parser.parse_args()
    ports = (args.port_base, args.port_base + 1, args.port_base + 2, args.port_base + 5)
    if set(ports) & set(DEMO_PORTS):
        parser.error("--port-base %d would use a port of `make demo` (%s)" % (args.port_base, ", ".join(map(str, DEMO_PORTS))))

    bench = Bench(args.port_base)
    receiver = Receiver(args.port_base + 5)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        bench.playbook("playbooks/site.yml")
        load_before = os.getloadavg()
        stable = bench.served()
        if stable is None:
            sys.exit("site.yml brought nothing up at http://%s:%d" % bench.lb)
        gate_to_flip, module_flip = canary_rounds(bench, stable, args.canary_rounds)

        rollback_cmd = ("playbooks/rollback.yml", "-e", "emergency=true")
        wall, one_task, visible, flipped_in, notified = [], [], [], [], []
        for index in range(args.rounds):
            # A fresh release on the idle color, so that `stable` is the warm previous one.
            bench.playbook("playbooks/blue_green.yml", "-e", "app_version=%s-bench.%d" % (stable, index), "-e", "gate_probe_mode=quick")
            events_before = len(receiver.events)
            # Alternate which one goes first, so neither always runs on a machine that just did the other.
            order = ("rollback", "one") if index % 2 == 0 else ("one", "rollback")
            for which in order:
                if which == "one":
                    one_task.append(bench.timed(bench.one_task, *rollback_cmd[1:])[0])
                    continue
                started = time.perf_counter()
                total, seen = bench.timed(*rollback_cmd, watch_for=stable)
                if seen is None:
                    sys.exit("the LB did not serve %s again after the emergency rollback" % stable)
                wall.append(total)
                visible.append(seen)
                entry = bench.ledger()["history"][-1]
                if entry.get("type") != "rollback" or entry.get("version") != stable:
                    sys.exit("the ledger did not record the emergency rollback: %s" % json.dumps(entry))
                flipped_in.append(entry["rollback"]["duration_ms"])
                # The notification is sent in the background: give it a few seconds after the run.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not any(
                        event.get("event") == "rollback" for _at, event in receiver.events[events_before:]):
                    time.sleep(0.05)
                arrived = [at - started for at, event in receiver.events[events_before:] if event.get("event") == "rollback"]
                notified.append(arrived[0] if arrived else None)

        cmd = " ".join(["ansible-playbook", "-i", "inventories/local"] + list(rollback_cmd))
        load_after = os.getloadavg()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
        print("machine: %d cores; stable release %s; LB at http://%s:%d" % ((os.cpu_count(),) + (stable,) + bench.lb))
        print("commit: %s%s" % (commit or "?", " (with uncommitted changes)" if subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip() else ""))
        print("load average (1, 5, 15 min): %s before the rounds, %s after" % (
            ", ".join("%.2f" % v for v in load_before), ", ".join("%.2f" % v for v in load_after)))
        print("command: %s -e @<bench vars: run dir and ports>" % cmd)
        print()
        print("| figure | median | all runs |")
        print("| --- | ---: | --- |")
        if gate_to_flip:
            print("| canary rescue: failed gate -> 100 %% stable | %.0f ms | %s |"
                  % (statistics.median(gate_to_flip), ", ".join("%.0f" % v for v in gate_to_flip)))
            print("| canary rescue, inside the rollback module: start -> weights applied | %.0f ms | %s |"
                  % (statistics.median(module_flip), ", ".join(str(v) for v in module_flip)))
        print("| one-task playbook (ansible.builtin.ping on lb[0]): whole run | %.2f s | %s |"
              % (statistics.median(one_task), ", ".join("%.2f" % v for v in one_task)))
        print("| rollback.yml -e emergency=true: whole run | %.2f s | %s |" % (statistics.median(wall), ", ".join("%.2f" % v for v in wall)))
        print("| rollback.yml -e emergency=true: start -> LB serves %s | %.2f s | %s |"
              % (stable, statistics.median(visible), ", ".join("%.2f" % v for v in visible)))
        print("| inside the rollback module: start -> weights applied | %.0f ms | %s |"
              % (statistics.median(flipped_in), ", ".join(str(v) for v in flipped_in)))
        ahead = [total - seen for total, seen in zip(wall, visible)]
        print("| LB serves %s this long before the rollback run ends | %.2f s | %s |"
              % (stable, statistics.median(ahead), ", ".join("%.2f" % v for v in ahead)))
        arrived = [v for v in notified if v is not None]
        print("| rollback notification received (from the start) | %s | %s |" % (
            "%.2f s" % statistics.median(arrived) if arrived else "none",
            ", ".join("%.2f" % v if v is not None else "missing" for v in notified)))
        print()
        print("ratio rollback.yml -e emergency=true / one-task playbook (medians): %.2f (goal: at most 1.5)"
              % (statistics.median(wall) / statistics.median(one_task)))
        if len(arrived) != len(notified):
            sys.exit("%d of %d rollbacks sent no notification" % (len(notified) - len(arrived), len(notified)))
    finally:
        receiver.shutdown()
        bench.stop()


if __name__ == "__main__":
    main()
