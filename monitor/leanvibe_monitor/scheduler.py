"""The probe scheduler: one thread per environment runs the collection's probe suite every interval_s and stores it.

A target that is down is a failed round (stored). A store that fails (an unwritable database) costs that round's
row, never the loop: the error is logged as one sentence, counted, and shown by /healthz until a round stores again.
A housekeeping thread prunes rows past the retention at start and about hourly.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from .config import EnvironmentConfig, MonitorConfig, import_probe_engine
from .metrics import MonitorMetrics
from .store import Store, StoreError, iso

log = logging.getLogger("leanvibe_monitor")

PRUNE_INTERVAL_S = 3600.0
PRUNE_RETRY_S = 60.0  # after a failed prune: soon, so a recovered database clears the error within a minute
STOP_GRACE_S = 2.0
HEALTH_PROBE = "basic_health"
# probes.probe_basic_health's detail of a pass: "healthy, version 2.1.0" (the LB's /health JSON "version").
_VERSION_DETAIL_RE = re.compile(r"healthy, version (\S.{0,199})")


@dataclass
class EnvironmentState:
    """What the scheduler knows about one environment since it started."""

    rounds: int = 0
    errors: int = 0
    last_error: Optional[str] = None
    last_error_at: Optional[float] = None
    last_round_at: Optional[float] = None
    run_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "errors": self.errors, "last_error": self.last_error,
                "last_error_at": None if self.last_error_at is None else iso(self.last_error_at),
                "last_round_at": None if self.last_round_at is None else iso(self.last_round_at)}


def version_from_report(report: dict) -> Optional[str]:
    """The version /health reported in this round, when basic_health passed."""
    for probe in report.get("probes") or []:
        if probe.get("name") == HEALTH_PROBE and probe.get("passed"):
            match = _VERSION_DETAIL_RE.fullmatch(str(probe.get("detail") or ""))
            if match and match.group(1) != "None":  # the service sent no version
                return match.group(1)
    return None


def round_rows(environment: str, round_id: str, started: float, report: dict) -> tuple:
    """(probe_rounds row, health_checks rows) of one suite report."""
    probes = report.get("probes") or []
    health = next((probe for probe in probes if probe.get("name") == HEALTH_PROBE), None)
    up = bool(health["passed"]) if health is not None else bool(report.get("passed"))
    stamp = iso(started)
    round_row = {
        "id": round_id, "timestamp": stamp, "ts": started, "environment": environment, "url": report.get("url") or "",
        "passed": bool(report.get("passed")), "up": up, "success_rate": float(report.get("success_rate") or 0.0),
        "duration_ms": float(report.get("duration_ms") or 0.0),
        "health_ms": float(health["duration_ms"]) if health is not None else None,
        "version": version_from_report(report), "msg": str(report.get("msg") or ""),
    }
    checks = [{"timestamp": stamp, "ts": started, "environment": environment, "endpoint": str(probe.get("name")),
               "status_code": probe.get("status_code"), "response_time_ms": float(probe.get("duration_ms") or 0.0),
               "success": bool(probe.get("passed")), "detail": str(probe.get("detail") or ""), "round_id": round_id}
              for probe in probes]
    return round_row, checks


class Scheduler:
    """Runs and stores probe rounds; thread-safe; ``run_round`` also serves POST /api/run-probes."""

    def __init__(self, config: MonitorConfig, store: Store, metrics: Optional[MonitorMetrics] = None,
                 prune_interval_s: float = PRUNE_INTERVAL_S, prune_retry_s: float = PRUNE_RETRY_S) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.engine: Any = config.engine or import_probe_engine(config.collections_path)
        self.prune_interval_s = prune_interval_s
        self.prune_retry_s = prune_retry_s
        self.states = {env.name: EnvironmentState() for env in config.environments}
        self.housekeeping = EnvironmentState()
        self._stop = threading.Event()
        self._threads: list = []
        self._lock = threading.Lock()

    # -- lifecycle --

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads) and not self._stop.is_set()

    def start(self) -> None:
        """Start one thread per environment and the housekeeping thread (no-op when running)."""
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            threads = [threading.Thread(target=self._loop, args=(env,), name="leanvibe-monitor-%s" % env.name, daemon=True)
                       for env in self.config.environments]
            threads.append(threading.Thread(target=self._housekeeping, name="leanvibe-monitor-retention", daemon=True))
            for thread in threads:
                thread.start()
            self._threads = threads
        log.info("scheduler started: %s", ", ".join("%s every %gs" % (env.name, env.interval_s) for env in self.config.environments))

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop the threads; waits for a round in flight (at most the longest probe timeout). True when all ended."""
        self._stop.set()
        with self._lock:
            threads, self._threads = self._threads, []
        if timeout is None:
            timeout = max((env.timeout_s for env in self.config.environments), default=0.0) + STOP_GRACE_S
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            log.warning("scheduler stopped with threads still running: %s", ", ".join(alive))
        elif threads:
            log.info("scheduler stopped")
        return not alive

    def status(self) -> dict:
        """/healthz's scheduler object: running, the latest unresolved error, rounds run; per environment too."""
        states = list(self.states.values()) + [self.housekeeping]
        errors = [state for state in states if state.last_error is not None]
        latest = max(errors, key=lambda state: state.last_error_at or 0.0) if errors else None
        return {"running": self.running, "last_error": latest.last_error if latest else None,
                "rounds": sum(state.rounds for state in self.states.values()),
                "errors": sum(state.errors for state in states),
                "environments": {name: state.as_dict() for name, state in self.states.items()}}

    # -- rounds --

    def run_round(self, name: str) -> dict:
        """Run one suite against an environment now and store it; the report plus round_id, up, version, stored, error."""
        env = self.config.environment(name)
        if env is None:
            raise KeyError(name)
        state = self.states[name]
        with state.run_lock:  # a manual round waits for a scheduled one: never two suites at one LB at once
            return self._run_round(env, state)

    def _run_round(self, env: EnvironmentConfig, state: EnvironmentState) -> dict:
        started = time.time()
        round_id = uuid.uuid4().hex
        try:
            report = self.engine.run_suite(env.target, probe_names=list(env.probe_names), success_threshold=env.success_threshold)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # an engine bug must not end the loop
            message = "environment %s: the probe engine failed: %s: %s." % (env.name, type(exc).__name__, str(exc).rstrip("."))
            self._fault(env.name, state, "probe", message)
            return {"environment": env.name, "round_id": round_id, "at": iso(started), "passed": False, "up": False,
                    "success_rate": 0.0, "duration_ms": round((time.time() - started) * 1000.0, 1), "version": None,
                    "msg": message, "probes": [], "stored": False, "error": message}
        round_row, checks = round_rows(env.name, round_id, started, report)
        state.rounds += 1
        state.last_round_at = started
        if self.metrics is not None:
            self.metrics.observe_round(env.name, report)
        log.info("%s (%s, %.0f ms%s): %s", env.name, "up" if round_row["up"] else "down", round_row["duration_ms"],
                 ", version %s" % round_row["version"] if round_row["version"] else "", report.get("msg"))
        error = None
        try:
            self.store.record_round(round_row, checks)
        except StoreError as exc:
            error = "environment %s: round not stored: %s" % (env.name, exc)
            self._fault(env.name, state, "store", error)
        else:
            state.last_error = None  # the latest round is fine again
        return {"environment": env.name, "round_id": round_id, "at": round_row["timestamp"], "passed": round_row["passed"],
                "up": round_row["up"], "success_rate": round_row["success_rate"], "duration_ms": round_row["duration_ms"],
                "version": round_row["version"], "msg": round_row["msg"], "probes": report.get("probes") or [],
                "stored": error is None, "error": error}

    def _fault(self, environment: str, state: EnvironmentState, kind: str, message: str) -> None:
        state.errors += 1
        state.last_error = message
        state.last_error_at = time.time()
        if self.metrics is not None:
            self.metrics.observe_error(environment, kind)
        log.error("%s", message)

    def _loop(self, env: EnvironmentConfig) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():  # bounded by stop(): every wait below wakes up on it
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            started = time.monotonic()
            try:
                self.run_round(env.name)
            except Exception:  # pylint: disable=broad-exception-caught  # log a bug in a round, keep the schedule
                log.exception("%s: probe round failed unexpectedly", env.name)
            # A round longer than the interval is followed at once by the next: no backlog of missed rounds.
            next_at = max(started + env.interval_s, time.monotonic())

    # -- retention --

    def prune(self) -> Optional[dict]:
        """Delete rows older than retention_days now; {table: rows} or None when the store failed."""
        try:
            deleted = self.store.prune(self.config.retention_days)
        except StoreError as exc:
            state = self.housekeeping
            state.errors += 1
            state.last_error = "retention: %s" % exc
            state.last_error_at = time.time()
            log.error("%s", state.last_error)
            return None
        self.housekeeping.last_error = None
        self.housekeeping.rounds += 1
        if any(deleted.values()):
            log.info("retention: deleted rows older than %d days: %s", self.config.retention_days,
                     ", ".join("%s %d" % item for item in sorted(deleted.items())))
        return deleted

    def _housekeeping(self) -> None:
        while not self._stop.is_set():
            pruned = self.prune()
            if self._stop.wait(self.prune_interval_s if pruned is not None else min(self.prune_retry_s, self.prune_interval_s)):
                break
