#!/usr/bin/env python
"""Benchmark: how fast traffic goes back to the stable release, on the environment of `make demo`.

1. Rescue path of canary.yml: a canary with LEANVIBE_FAULT_LATENCY_MS=300 under steady traffic fails a
   traffic-analysis gate; the figure is from the gate's verdict to the weights flipped (the playbook
   prints "weights flipped in N ms (M ms after the gate)").
2. rollback.yml -e emergency=true: wall time from starting ansible-playbook to the LB answering the
   previous release (a client polls /health every 10 ms). Before each round, blue_green.yml puts the
   other release back, so the previous one is warm.

    .venv/bin/python bench/rollback_speed.py [--rounds 5] [--canary-rounds 3]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LB = "http://127.0.0.1:8000"
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), PATH=BIN + os.pathsep + os.environ["PATH"], ANSIBLE_NOCOLOR="1")


def playbook(*args, check=True):
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "inventories/local"] + list(args),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    if check and proc.returncode != 0:
        sys.exit("ansible-playbook %s failed:\n%s" % (" ".join(args), proc.stdout[-3000:]))
    return proc


def served():
    try:
        with urllib.request.urlopen(LB + "/health", timeout=2) as response:
            return json.loads(response.read())["version"]
    except (OSError, ValueError, KeyError):
        return None


def emergency_round(previous):
    started = time.perf_counter()
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", "inventories/local", "playbooks/rollback.yml", "-e", "emergency=true"],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + 60
    seen = None
    while time.perf_counter() < deadline:
        if served() == previous:
            seen = time.perf_counter() - started
            break
        time.sleep(0.01)
    proc.wait(timeout=120)
    return seen, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--canary-rounds", type=int, default=3)
    args = parser.parse_args()
    stable = served()
    if stable is None:
        sys.exit("nothing serves at %s: run `make demo` first" % LB)

    gate_to_flip, module_flip = [], []
    for index in range(args.canary_rounds):
        traffic = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "traffic.py"), "--seconds", "90", "--rate", "40"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        proc = playbook("playbooks/canary.yml", "-e", "app_version=%s-slow.%d" % (stable, index),
                        "-e", json.dumps({"canary_steps": [25, 50, 100], "canary_step_pause_s": 3, "canary_abort_delay_s": 0,
                                          "canary_analysis": {"min_requests": 10},
                                          "app_env": {"LEANVIBE_FAULT_LATENCY_MS": "300"}}), check=False)
        traffic.terminate()
        traffic.communicate(timeout=30)
        match = re.search(r"weights flipped in (\d+) ms \(([\d.]+)\s+ms after the gate\)", proc.stdout.replace("\n", " "))
        if proc.returncode == 0 or not match:
            sys.exit("the slow canary was not rolled back by a gate:\n%s" % proc.stdout[-3000:])
        module_flip.append(int(match.group(1)))
        gate_to_flip.append(float(match.group(2)))

    visible, wall = [], []
    other = None
    for index in range(args.rounds):
        # A fresh release on the idle color, so that `stable` is the warm previous one.
        other = "%s-bench.%d" % (stable, index)
        playbook("playbooks/blue_green.yml", "-e", "app_version=%s" % other, "-e", "gate_probe_mode=quick")
        seen, total = emergency_round(stable)
        if seen is None:
            sys.exit("the LB did not serve %s again after the emergency rollback" % stable)
        visible.append(seen)
        wall.append(total)

    print("machine: %d cores; stable release %s" % (os.cpu_count(), stable))
    print()
    print("| figure | median | all runs |")
    print("| --- | ---: | --- |")
    print("| canary rescue: failed gate -> 100 %% stable | %.0f ms | %s |" % (statistics.median(gate_to_flip), ", ".join("%.0f" % v for v in gate_to_flip)))
    print("| inside the rollback module: start -> weights applied | %.0f ms | %s |" % (statistics.median(module_flip), ", ".join(str(v) for v in module_flip)))
    print("| rollback.yml -e emergency=true: start -> LB serves %s | %.2f s | %s |"
          % (stable, statistics.median(visible), ", ".join("%.2f" % v for v in visible)))
    print("| rollback.yml -e emergency=true: whole run | %.2f s | %s |" % (statistics.median(wall), ", ".join("%.2f" % v for v in wall)))


if __name__ == "__main__":
    main()
