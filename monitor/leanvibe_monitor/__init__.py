"""The LeanVibe monitoring service: probes every environment on a schedule, stores the rounds, serves a dashboard.

Run it with ``leanvibe-monitor --config FILE``; build the app in Python with
``leanvibe_monitor.app.create_app(load_config(path))``.
"""

from __future__ import annotations

from .config import ConfigError, EnvironmentConfig, MonitorConfig, load_config, parse_config
from .store import Store, StoreError, open_store

__all__ = ["ConfigError", "EnvironmentConfig", "MonitorConfig", "Store", "StoreError", "load_config", "open_store",
           "parse_config"]
