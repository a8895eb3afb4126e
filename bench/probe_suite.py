#!/usr/bin/env python
"""Benchmark: our comprehensive probe suite next to the seed guide's synthetic_probes.sh, same target, same run.

The seed script is copied from ../shared/seeds into a temp folder with only its BASE_URL changed. Its
websocket probe calls `websockets.connect(uri, timeout=...)`, which websockets 14 and later refuse; it runs
with a python3 from a bench-only venv holding websockets 13.1, the API it was written for, so that its
verdicts are about the target and not about a library upgrade.
Each round runs both, alternating which goes first, so that machine noise falls on both alike.

    .venv/bin/python bench/probe_suite.py [--url http://127.0.0.1:8000] [--rounds 10]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, ".collections"))

from ansible_collections.leanvibe.deploy.plugins.module_utils.probes import ProbeTarget, run_suite  # noqa: E402

SEED = os.path.join(REPO, "..", "shared", "seeds", "000_f92596442154b0ea.txt")
SEED_VENV = os.path.join(REPO, ".cache", "bench", "seed-venv")


def extract_seed_script(base_url, folder):
    with open(SEED, encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"```bash\n(#!/bin/bash\n# deploy/synthetic_probes\.sh.*?)```", text, re.S)
    if not match:
        sys.exit("the seed guide has no deploy/synthetic_probes.sh block")
    script = match.group(1)
    # The one change: where the staging environment points.
    script = script.replace('BASE_URL="https://staging.leanvibe.ai"', 'BASE_URL="%s"' % base_url, 1)
    path = os.path.join(folder, "synthetic_probes.sh")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(script)
    return path


def seed_python_bin():
    """A venv whose python3 has the websockets API the seed's inline Python uses."""
    python = os.path.join(SEED_VENV, "bin", "python3")
    if not os.path.exists(os.path.join(SEED_VENV, ".ready")):
        subprocess.run([sys.executable, "-m", "venv", SEED_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "websockets==13.1"], check=True)
        open(os.path.join(SEED_VENV, ".ready"), "w", encoding="utf-8").close()
    return os.path.dirname(python)


def run_seed(script, api_key, python_bin):
    env = dict(os.environ, STAGING_API_KEY=api_key, PATH=python_bin + os.pathsep + os.environ["PATH"])
    started = time.perf_counter()
    proc = subprocess.run(["bash", script, "staging", "--comprehensive"], capture_output=True, text=True, env=env, timeout=300, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    # The seed's emoji are stored mis-decoded; its summary line is plain text.
    summary = re.search(r"Passed: (\d+)/(\d+) probes", proc.stdout)
    judged = (int(summary.group(1)), int(summary.group(2))) if summary else (0, 0)
    return elapsed, proc.returncode, judged, proc.stdout


def run_ours(target):
    started = time.perf_counter()
    result = run_suite(target, mode="comprehensive")
    return (time.perf_counter() - started) * 1000, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="local-dev-key")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    target = ProbeTarget(args.url, api_key=args.api_key)
    seed_ms, ours_ms, ours_suite_ms = [], [], []
    python_bin = seed_python_bin()
    with tempfile.TemporaryDirectory() as folder:
        script = extract_seed_script(args.url, folder)
        for index in range(args.rounds):
            if index % 2 == 0:
                seed = run_seed(script, args.api_key, python_bin)
                ours = run_ours(target)
            else:
                ours = run_ours(target)
                seed = run_seed(script, args.api_key, python_bin)
            seed_ms.append(seed[0])
            ours_ms.append(ours[0])
            ours_suite_ms.append(ours[1]["duration_ms"])
    seed_median, ours_median = statistics.median(seed_ms), statistics.median(ours_ms)
    _elapsed, seed_rc, seed_judged, seed_out = seed
    ours_result = ours[1]

    print("target: %s, %d rounds, %d cores" % (args.url, args.rounds, os.cpu_count()))
    print()
    print("| suite | median wall time | verdict |")
    print("| --- | ---: | --- |")
    print("| seed synthetic_probes.sh --comprehensive | %.1f ms | %s (exit %d), %d of %d probes passed |" % (
        seed_median, "passed" if seed_rc == 0 else "FAILED", seed_rc, seed_judged[0], seed_judged[1]))
    print("| leanvibe.deploy synthetic_probe, comprehensive | %.1f ms (suite's own %.1f ms) | %s, %s |" % (
        ours_median, statistics.median(ours_suite_ms), "passed" if ours_result["passed"] else "FAILED",
        ", ".join("%s %s" % (probe["name"], "ok" if probe["passed"] else "failed") for probe in ours_result["probes"])))
    print()
    print("ratio (ours / seed, medians of the same run): %.3f" % (ours_median / seed_median))
    same = (seed_rc == 0) == ours_result["passed"] and seed_judged[0] == sum(probe["passed"] for probe in ours_result["probes"])
    print("same verdicts: %s" % ("yes" if same else "NO"))
    if os.environ.get("BENCH_VERBOSE"):
        print(seed_out)


if __name__ == "__main__":
    main()
