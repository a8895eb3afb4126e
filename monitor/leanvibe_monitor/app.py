"""The monitoring service's HTTP API, dashboard and Prometheus endpoint (FastAPI).

``create_app(config)`` builds the app; its lifespan starts the scheduler and stops it cleanly. Reads are open;
POST endpoints need the config's token. Bad input is a 4xx whose ``detail`` is one sentence, and nothing is
stored; a failing database is a 503 with the store's sentence.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import MonitorConfig, parse_config
from .metrics import WINDOWS, MonitorMetrics
from .scheduler import Scheduler
from .store import EVENT_KINDS, Store, StoreError, iso, open_store

log = logging.getLogger("leanvibe_monitor")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024
MAX_WINDOW_S = 30 * 86400
MAX_MARKERS = 10000
MAX_TEXT = 4000
MAX_VERSION = 128
MAX_REASONS = 50
MAX_WEIGHTS = 20
RUN_RESULT_KEYS = ("passed", "success_rate", "msg", "probes", "up", "version", "duration_ms", "at", "round_id", "stored", "error")
EVENT_OUTCOMES = {"deploy": "started", "step": "step", "promote": "promoted", "rollback": "rolled back", "failure": "failed"}
_WINDOW_RE = re.compile(r"([1-9][0-9]{0,4})([hd])")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}

PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LeanVibe monitoring</title></head>
<body><h1>LeanVibe monitoring</h1>
<p>The dashboard page is not installed. The API is up: <a href="/api/overview">/api/overview</a>,
<a href="/metrics">/metrics</a>.</p></body></html>
"""


class BadInput(HTTPException):
    """A 4xx whose detail is one sentence."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)


# --- parsing of query parameters and bodies ---------------------------------------------------------


def parse_window(value: Optional[str], default: str = "24h") -> tuple:
    """'24h' / '7d' / any '<n>h' or '<n>d' from 1h to 30d -> (label, seconds); BadInput(422) otherwise."""
    label = default if value is None else value.strip()
    match = _WINDOW_RE.fullmatch(label)
    seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else 86400) if match else 0
    if not match or not 3600 <= seconds <= MAX_WINDOW_S:
        raise BadInput(422, "window must be <n>h or <n>d from 1h to 30d, for example 24h or 7d, not %r." % label)
    return label, float(seconds)


def parse_int(value: Optional[str], name: str, default: Optional[int], low: int, high: int) -> Optional[int]:
    if value is None:
        return default
    text = value.strip()
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise BadInput(422, "%s must be a whole number from %d to %d, not %r." % (name, low, high, value))
    return int(text)


def shown(value: Any) -> str:
    """A bad value for a message: as JSON, cut at 60 characters."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


async def read_json_body(request: Request) -> Any:
    """The body as JSON (None when empty); 413 over 64 KiB, 422 when it is not JSON."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BadInput(413, "the body is over %d KiB." % (MAX_BODY_BYTES // 1024))
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_BODY_BYTES:
            raise BadInput(413, "the body is over %d KiB." % (MAX_BODY_BYTES // 1024))
    if not raw.strip():
        return None
    try:
        return json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise BadInput(422, "the body is not valid JSON.") from None


def _version_text(value: Any, name: str, required: bool) -> Optional[str]:
    if value is None or value == "":
        if required:
            raise BadInput(422, "%s is required: the released version as a string." % name)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadInput(422, "%s must be a version string, not %s." % (name, shown(value)))
    text = str(value).strip()
    if not text or len(text) > MAX_VERSION or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise BadInput(422, "%s must be 1 to %d printable characters, not %s." % (name, MAX_VERSION, shown(value)))
    return text


def _optional_text(value: Any, name: str, limit: int) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadInput(422, "%s must be a string of at most %d characters." % (name, limit))
    return value


def _weights(value: Any) -> Optional[dict]:
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) > MAX_WEIGHTS:
        raise BadInput(422, "weights must be an object of at most %d version: percent pairs." % MAX_WEIGHTS)
    weights = {}
    for version, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0 <= weight <= 100:
            raise BadInput(422, "weights[%s] must be a number from 0 to 100, not %s." % (shown(version), shown(weight)))
        key = str(version).strip()
        if key in ("", "None", "null"):
            continue  # the "from" side of a first deployment: no version served before
        weights[_version_text(key, "a weights key", True)] = weight
    return weights


def _reasons(value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_REASONS or not all(isinstance(item, str) and len(item) <= MAX_TEXT for item in value):
        raise BadInput(422, "reasons must be a list of at most %d strings." % MAX_REASONS)
    return [item for item in value if item.strip()]


def _event_time(value: Any, now: float) -> float:
    if value is None or value == "":
        return now
    if not isinstance(value, str):
        raise BadInput(422, "at must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not %s." % shown(value))
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadInput(422, "at must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not %s." % shown(value)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # Ansible's now(utc=true).isoformat() has no offset
    return moment.timestamp()


def _rollback_ms(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0:
        raise BadInput(422, "rollback_ms must be a number of milliseconds, not %s." % shown(value))
    return float(number)


def parse_event(body: Any, config: MonitorConfig, now: float) -> dict:
    """A deployment webhook body -> a deployment_events row; BadInput (422, or 404 for an unknown environment)."""
    if not isinstance(body, Mapping):
        raise BadInput(422, "the event must be a JSON object with event, app, environment and version.")
    environment = body.get("environment")
    if not isinstance(environment, str) or not environment:
        raise BadInput(422, "environment is required: the name of a monitored environment.")
    if config.environment(environment) is None:
        raise BadInput(404, "environment %r is not monitored: use %s." % (environment, ", ".join(config.environment_names)))
    kind = body.get("event")
    if kind not in EVENT_KINDS:
        raise BadInput(422, "event must be one of %s, not %s." % (", ".join(EVENT_KINDS), shown(kind)))
    app = body.get("app")
    if not isinstance(app, str) or not app.strip() or len(app) > 200:
        raise BadInput(422, "app must be the application's name, a string of 1 to 200 characters.")
    at_ts = _event_time(body.get("at"), now)
    return {
        "timestamp": iso(now), "ts": now, "at": iso(at_ts), "at_ts": at_ts, "environment": environment, "app": app.strip(),
        "event": kind, "version": _version_text(body.get("version"), "version", True),
        "from_version": _version_text(body.get("from_version"), "from_version", False),
        "to_version": _version_text(body.get("to_version"), "to_version", False),
        "weights": _weights(body.get("weights")), "reasons": _reasons(body.get("reasons")),
        "text": _optional_text(body.get("text"), "text", MAX_TEXT), "rollback_ms": _rollback_ms(body.get("rollback_ms")),
        "payload": dict(body),
    }


def event_view(row: dict) -> dict:
    """A stored event as the API shows it."""
    view = {key: row[key] for key in ("id", "timestamp", "at", "environment", "app", "event", "version", "from_version",
                                      "to_version", "weights", "reasons", "text", "rollback_ms")}
    view["outcome"] = EVENT_OUTCOMES.get(row["event"], row["event"])
    return view


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# --- the app --------------------------------------------------------------------------------------------


def _token_of(request: Request) -> Optional[str]:
    header = request.headers.get("authorization")
    if header:
        scheme, _sep, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    token = request.headers.get("x-leanvibe-token")
    return token.strip() if token and token.strip() else None


def authorize(request: Request, config: MonitorConfig) -> None:
    """401 without a token, 403 with a wrong one."""
    token = _token_of(request)
    if token is None:
        raise HTTPException(401, "this endpoint needs the token: send Authorization: Bearer <token> or X-LeanVibe-Token.",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode("utf-8"), config.token.encode("utf-8")):
        raise HTTPException(403, "the token is wrong.")


def create_app(config: MonitorConfig | Mapping, store: Optional[Store] = None, start_scheduler: bool = True) -> FastAPI:
    """The FastAPI app; opens the config's database unless a store is given (StoreError when it cannot)."""
    if not isinstance(config, MonitorConfig):
        config = parse_config(config)
    owns_store = store is None
    if store is None:
        store = open_store(config.database)
    metrics = MonitorMetrics(store, config.environment_names)
    scheduler = Scheduler(config, store, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # pylint: disable=unused-argument  # FastAPI passes the app
        if start_scheduler:
            scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(scheduler.stop)
            if owns_store:
                store.close()

    app = FastAPI(title="LeanVibe monitoring", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.store = store
    app.state.metrics = metrics
    app.state.scheduler = scheduler

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:  # pylint: disable=unused-argument
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:  # pylint: disable=unused-argument
        errors = exc.errors()
        where = ".".join(str(part) for part in errors[0].get("loc", ())) if errors else "the request"
        return JSONResponse({"detail": "%s is not valid: %s." % (where, errors[0].get("msg", "bad value") if errors else "bad value")},
                            status_code=422)

    def environment_or_404(name: Optional[str], required: bool = True) -> Optional[str]:
        if name is None:
            if required:
                raise BadInput(422, "environment is required: use %s." % ", ".join(config.environment_names))
            return None
        if config.environment(name) is None:
            raise BadInput(404, "environment %r is not monitored: use %s." % (name, ", ".join(config.environment_names)))
        return name

    # -- the page --

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})
        return HTMLResponse(PLACEHOLDER_PAGE, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR), check_dir=False), name="static")

    # -- reads --

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "scheduler": scheduler.status()}

    @app.get("/api/metrics")
    def api_metrics(request: Request) -> list:
        hours = parse_int(request.query_params.get("hours"), "hours", 24, 1, MAX_WINDOW_S // 3600)
        environment = environment_or_404(request.query_params.get("environment"), required=False)
        return store.metrics(time.time() - hours * 3600.0, environment)

    @app.get("/api/overview")
    def api_overview() -> dict:
        now = time.time()
        environments = []
        for env in config.environments:
            last = store.last_round(env.name)
            environments.append({
                "name": env.name, "url": env.url, "interval_s": _number(env.interval_s), "mode": env.mode,
                "probes": list(env.probe_names), "current": store.current_serving(env.name),
                "last_round": None if last is None else {key: last[key] for key in (
                    "at", "passed", "up", "success_rate", "duration_ms", "msg", "version", "health_ms")},
                "last_error": scheduler.states[env.name].last_error,
                "windows": {label: store.window(env.name, label, seconds, now) for label, seconds in WINDOWS},
            })
        return {"generated_at": iso(now), "environments": environments}

    @app.get("/api/uptime")
    def api_uptime(request: Request) -> dict:
        environment = environment_or_404(request.query_params.get("environment"))
        label, seconds = parse_window(request.query_params.get("window"))
        return {"environment": environment, **store.window(environment, label, seconds)}

    @app.get("/api/latency")
    def api_latency(request: Request) -> dict:
        environment = environment_or_404(request.query_params.get("environment"))
        label, seconds = parse_window(request.query_params.get("window"))
        max_points = parse_int(request.query_params.get("max_points"), "max_points", None, 10, 1000000)
        end = time.time()
        start = end - seconds
        rounds = store.rounds_between(environment, start, end)
        markers = [{"t": round(event["at_ts"] * 1000.0, 3), "at": event["at"], "id": event["id"], "event": event["event"],
                    "version": event["version"], "from_version": event["from_version"], "to_version": event["to_version"],
                    "weights": event["weights"], "reasons": event["reasons"], "text": event["text"],
                    "rollback_ms": event["rollback_ms"]}
                   for event in store.events(environment, limit=MAX_MARKERS, start=start, end=end, oldest_first=True)]
        return {"environment": environment, "window": label, "start": iso(start), "end": iso(end),
                "points": latency_points(rounds, max_points), "markers": markers}

    @app.get("/api/deployments")
    def api_deployments(request: Request) -> dict:
        environment = environment_or_404(request.query_params.get("environment"), required=False)
        limit = parse_int(request.query_params.get("limit"), "limit", 50, 1, 1000)
        return {"deployments": [event_view(row) for row in store.events(environment, limit=limit)]}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- writes --

    @app.post("/api/run-probes")
    async def api_run_probes(request: Request) -> dict:
        authorize(request, config)
        body = await read_json_body(request)
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise BadInput(422, "the body must be a JSON object: {} or {\"environment\": \"<name>\"}.")
        unknown = sorted(set(body) - {"environment"})
        if unknown:
            raise BadInput(422, "key %r is unknown: the body takes only environment." % unknown[0])
        if "environment" in body and not isinstance(body["environment"], str):
            raise BadInput(422, "environment must be the name of a monitored environment.")
        chosen = [environment_or_404(body["environment"])] if "environment" in body else config.environment_names
        results = await run_in_threadpool(run_rounds, scheduler, chosen)
        return {"results": results}

    @app.post("/api/events", status_code=201)
    async def api_events(request: Request) -> JSONResponse:
        authorize(request, config)
        body = await read_json_body(request)
        row = parse_event(body, config, time.time())
        event_id = await run_in_threadpool(store.record_event, row)
        metrics.observe_event(row["environment"], row["event"])
        log.info("%s: %s event for %s %s stored (id %d)", row["environment"], row["event"], row["app"], row["version"], event_id)
        return JSONResponse({"id": event_id}, status_code=201)

    return app


def run_rounds(scheduler: Scheduler, names: list) -> dict:
    """One round per environment, concurrently: the call takes as long as the slowest environment."""
    with ThreadPoolExecutor(max_workers=max(len(names), 1), thread_name_prefix="leanvibe-monitor-run") as pool:
        rounds = dict(zip(names, pool.map(scheduler.run_round, names)))
    return {name: {key: result[key] for key in RUN_RESULT_KEYS} for name, result in rounds.items()}


def latency_points(rounds: list, max_points: Optional[int] = None) -> list:
    """One point per round ({t, ms, up, passed}); with max_points, the slowest round of each time bucket (spikes stay).

    A bucket is up (passed) only when every round in it was, so an outage shorter than a bucket stays visible. Rounds
    come oldest first (rounds_between); any order gives the same buckets, only slower.
    """
    if max_points is None or len(rounds) <= max_points:
        return [{"t": round(ts * 1000.0, 3), "ms": health if health is not None else duration, "up": up, "passed": passed}
                for ts, health, duration, up, passed in rounds]
    first, last = round(rounds[0][0] * 1000.0, 3), round(rounds[-1][0] * 1000.0, 3)
    width = (last - first) / max_points or 1.0
    top = max_points - 1
    # A round's bucket is that of its time in ms rounded to 3 decimals, the point's t. round(x, 3) costs more than all
    # the rest of a round's work, so the bucket comes from the unrounded time, unless that lies within `margin` of a
    # bucket's edge, where rounding (at most 0.0005 ms, plus float error) could move it across.
    margin = (0.001 + 1e-12 * max(abs(first), abs(last))) / width + 1e-9
    inner = 1.0 - margin
    buckets: dict = {}  # bucket index -> [ts, ms, up, passed]: its slowest round (the first of equals), up and passed of all
    key = bucket = None
    for ts, health, duration, up, passed in rounds:
        ms = health if health is not None else duration
        position = (ts * 1000.0 - first) / width
        index = int(position)
        if not margin < position - index < inner:
            index = int((round(ts * 1000.0, 3) - first) / width)
        if index > top:
            index = top
        if index != key:  # a new bucket: a dict lookup only then
            key = index
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = bucket = [ts, ms, up, passed]
                continue
        if ms > bucket[1]:
            bucket[0], bucket[1] = ts, ms
        bucket[2], bucket[3] = bucket[2] and up, bucket[3] and passed
    # Dicts only for the points kept.
    return [{"t": round(ts * 1000.0, 3), "ms": ms, "up": up, "passed": passed}
            for ts, ms, up, passed in (buckets[index] for index in sorted(buckets))]
