"""Fault knobs: environment switches that make a release bad on purpose, for tests and demos."""

import asyncio
import logging
import math
import os
import random
import threading
from dataclasses import dataclass
from typing import Callable, List, Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import ConfigError, is_api_path

log = logging.getLogger(__name__)

_SWITCHES = {"": False, "off": False, "fail": True}
_MAX_LATENCY_MS = 600_000.0


def _number(environ: Mapping[str, str], name: str, maximum: float = math.inf) -> float:
    """Parse a non-negative number knob; unset or empty means 0 (off)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= maximum):
        upper = "" if maximum == math.inf else f" and at most {maximum:g}"
        raise ConfigError(f"{name}={raw!r} is out of range: it must be at least 0{upper}")
    return value


def _switch(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip()
    try:
        return _SWITCHES[raw.lower()]
    except KeyError:
        raise ConfigError(f"{name}={raw!r} is not valid: use 'fail' or 'off'") from None


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    health_fail: bool = False
    websocket_fail: bool = False
    crash_after_s: float = 0.0  # 0 = never

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Faults":
        return cls(
            error_rate=_number(environ, "LEANVIBE_FAULT_ERROR_RATE", maximum=1.0),
            latency_ms=_number(environ, "LEANVIBE_FAULT_LATENCY_MS", maximum=_MAX_LATENCY_MS),
            health_fail=_switch(environ, "LEANVIBE_FAULT_HEALTH"),
            websocket_fail=_switch(environ, "LEANVIBE_FAULT_WEBSOCKET"),
            crash_after_s=_number(environ, "LEANVIBE_FAULT_CRASH_AFTER_S"),
        )

    def active(self) -> List[str]:
        """Names of the knobs that are on, for the start-up log."""
        return [name for name, value in vars(self).items() if value]


class FaultMiddleware:
    """Applies the latency and error-rate knobs; plain ASGI so WebSockets pass through untouched."""

    def __init__(self, app: ASGIApp, faults: Faults, rng: Callable[[], float] = random.random) -> None:
        self.app = app
        self.faults = faults
        self.rng = rng

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.faults.latency_ms:
                await asyncio.sleep(self.faults.latency_ms / 1000)
            # random() is in [0, 1): a rate of 0 never fires and a rate of 1 always does.
            if is_api_path(scope["path"]) and self.rng() < self.faults.error_rate:
                await JSONResponse({"detail": "fault injected"}, status_code=500)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def start_crash_timer(after_s: float, exit_func: Callable[[int], None] = os._exit) -> threading.Timer:
    """Kill the whole process after after_s seconds, like a release that dies on its own."""

    def crash() -> None:
        log.critical("fault injected: exiting after %g s (LEANVIBE_FAULT_CRASH_AFTER_S)", after_s)
        exit_func(1)  # os._exit: no clean-up and no graceful drain, as in a real crash

    timer = threading.Timer(after_s, crash)
    timer.name = "leanvibe-fault-crash"
    timer.daemon = True
    timer.start()
    return timer
