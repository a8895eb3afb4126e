"""Prometheus metrics of the monitoring service, in a CollectorRegistry of each app's own.

Counters and the response-time histogram count what this process saw (Prometheus handles the reset at a
restart); the ratio, weight and last-round gauges are read from the store at scrape time, so they survive restarts.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .store import Store, StoreError

log = logging.getLogger("leanvibe_monitor")

WINDOWS = (("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))
# Seconds: from a fast loopback /health to a probe that hit its deadline.
RESPONSE_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ERROR_KINDS = ("store", "probe")


class StoreCollector:
    """Gauges computed from the store when Prometheus scrapes."""

    def __init__(self, store: Store, environments: Iterable[str]) -> None:
        self.store = store
        self.environments = list(environments)

    @staticmethod
    def _families() -> dict:
        return {
            "uptime": GaugeMetricFamily("leanvibe_uptime_ratio", "Share of probe rounds with basic_health up, per window.",
                                        labels=["environment", "window"]),
            "success": GaugeMetricFamily("leanvibe_success_ratio", "Share of passed probe checks, per window.",
                                         labels=["environment", "window"]),
            "weight": GaugeMetricFamily("leanvibe_serving_weight_percent", "Traffic share of each serving version.",
                                        labels=["environment", "version"]),
            "last": GaugeMetricFamily("leanvibe_last_round_timestamp_seconds", "Unix time of the latest stored probe round.",
                                      labels=["environment"]),
            "store_up": GaugeMetricFamily("leanvibe_store_up", "1 when the store answered this scrape, else 0."),
        }

    def describe(self) -> Iterable:
        # Without describe() the registry would call collect() (and query the store) at registration.
        return list(self._families().values())

    def collect(self) -> Iterable:
        families = self._families()
        try:
            for name in self.environments:
                for label, seconds in WINDOWS:
                    window = self.store.window(name, label, seconds)
                    if window["uptime_pct"] is not None:
                        families["uptime"].add_metric([name, label], window["uptime_pct"] / 100.0)
                    if window["success_rate_pct"] is not None:
                        families["success"].add_metric([name, label], window["success_rate_pct"] / 100.0)
                for version, weight in sorted(self.store.current_serving(name)["weights"].items()):
                    families["weight"].add_metric([name, version], weight)
            last = self.store.last_round_times(self.environments)
            for name in self.environments:
                if name in last:
                    families["last"].add_metric([name], last[name])
            families["store_up"].add_metric([], 1.0)
        except StoreError as exc:
            log.warning("metrics scrape without store gauges: %s", exc)
            families = self._families()  # drop the half-filled gauges: no sample beats a wrong one
            families["store_up"].add_metric([], 0.0)
        return list(families.values())


class MonitorMetrics:
    """The app's registry with the scheduler's counters and the store's gauges."""

    def __init__(self, store: Optional[Store], environments: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        names = list(environments)
        self.rounds = Counter("leanvibe_probe_rounds", "Probe rounds run, by verdict.", ["environment", "result"],
                              registry=self.registry)
        self.checks = Counter("leanvibe_probe_checks", "Probe checks run, by probe and verdict.",
                              ["environment", "probe", "result"], registry=self.registry)
        self.response_time = Histogram("leanvibe_probe_response_time_seconds", "How long each probe took.",
                                       ["environment", "probe"], buckets=RESPONSE_TIME_BUCKETS, registry=self.registry)
        self.events = Counter("leanvibe_deployment_events", "Deployment events received, by kind.", ["environment", "event"],
                              registry=self.registry)
        self.errors = Counter("leanvibe_scheduler_errors", "Scheduler faults: store (unwritable database), probe (engine error).",
                              ["environment", "kind"], registry=self.registry)
        for name in names:
            # Series at 0 from the start: rate() and alerts see the first failure as an increase.
            for result in ("passed", "failed"):
                self.rounds.labels(environment=name, result=result)
            for kind in ERROR_KINDS:
                self.errors.labels(environment=name, kind=kind)
        if store is not None:
            self.registry.register(StoreCollector(store, names))

    def observe_round(self, environment: str, report: dict) -> None:
        self.rounds.labels(environment=environment, result="passed" if report.get("passed") else "failed").inc()
        for probe in report.get("probes") or []:
            name = str(probe.get("name"))
            self.checks.labels(environment=environment, probe=name, result="passed" if probe.get("passed") else "failed").inc()
            duration = probe.get("duration_ms")
            if isinstance(duration, (int, float)):
                self.response_time.labels(environment=environment, probe=name).observe(max(float(duration), 0.0) / 1000.0)

    def observe_error(self, environment: str, kind: str) -> None:
        self.errors.labels(environment=environment, kind=kind).inc()

    def observe_event(self, environment: str, event: str) -> None:
        self.events.labels(environment=environment, event=event).inc()
