"""The FastAPI application: health checks, the tasks API and the /ws ping endpoint."""

import asyncio
import hmac
import json
import logging
import os
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, List, Mapping, Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .checks import check_database, check_redis
from .db import Database, DatabaseError
from .faults import FaultMiddleware, Faults, start_crash_timer
from .settings import API_PREFIX, RELEASE_ROOT, Settings, is_api_path, read_version

log = logging.getLogger("leanvibe_demo")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class TaskCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: Optional[str] = Field(default=None, max_length=2000)


class Task(BaseModel):
    id: int
    title: str
    description: Optional[str]
    created_at: str


# --- health -------------------------------------------------------------------------------

health = APIRouter(tags=["health"])


def _health_body(request: Request, status: str) -> dict:
    return {"status": status, "timestamp": utc_now(), "version": request.app.state.version}


def _fault_injected(request: Request, **extra: object) -> JSONResponse:
    return JSONResponse({**_health_body(request, "unhealthy"), "reason": "fault injected", **extra}, status_code=503)


@health.get("/health")
async def health_basic(request: Request) -> Response:
    if request.app.state.faults.health_fail:
        return _fault_injected(request)
    return JSONResponse(_health_body(request, "healthy"))


@health.get("/health/complete")
async def health_complete(request: Request) -> Response:
    state = request.app.state
    if state.faults.health_fail:
        return _fault_injected(request)
    pending = {"database": run_in_threadpool(check_database, state.db)}
    if state.settings.redis_url:
        pending["redis"] = run_in_threadpool(check_redis, state.settings.redis_url)
    checks = dict(zip(pending, await asyncio.gather(*pending.values())))
    healthy = all(check["status"] == "healthy" for check in checks.values())
    body = {**_health_body(request, "healthy" if healthy else "unhealthy"), "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@health.get("/health/database")
async def health_database(request: Request) -> Response:
    if request.app.state.faults.health_fail:
        return _fault_injected(request, database_connected=False, error="fault injected")
    check = await run_in_threadpool(check_database, request.app.state.db)
    if check["status"] == "healthy":
        return JSONResponse({"database_connected": True, "response_time_ms": check["response_time_ms"], "status": "healthy"})
    body = {"database_connected": False, "error": check["error"], "response_time_ms": check["response_time_ms"], "status": "unhealthy"}
    return JSONResponse(body, status_code=503)


# --- tasks API ----------------------------------------------------------------------------


class ApiKeyMiddleware:
    """Bearer key check for every /api/v1 request, before routing and body parsing.

    Checking ahead of FastAPI means a caller without the key gets 401 for anything under the
    prefix (even a malformed body or an unknown path) and so learns nothing about the API.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = api_key.encode()

    def authorized(self, scope: Scope) -> bool:
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        # An unset key locks the API: there is never a default key.
        return bool(self.expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]) and not self.authorized(scope):
            response = JSONResponse({"detail": "missing or invalid API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def get_db(request: Request) -> Database:
    return request.app.state.db


tasks = APIRouter(prefix=f"{API_PREFIX}/tasks", tags=["tasks"])

# Plain `def` endpoints: FastAPI runs them in its thread pool, so blocking DB calls never stall the event loop.


@tasks.post("", status_code=201, response_model=Task)
def create_task(body: TaskCreate, db: Database = Depends(get_db)) -> dict:
    return db.create_task(body.title, body.description)


@tasks.get("", response_model=List[Task])
def list_tasks(limit: int = Query(default=100, ge=1, le=1000), db: Database = Depends(get_db)) -> List[dict]:
    return db.list_tasks(limit)


@tasks.get("/{task_id}", response_model=Task)
def get_task(task_id: int, db: Database = Depends(get_db)) -> dict:
    task = db.get_task(task_id)
    if task is None:
        raise HTTPException(status_code=404, detail="task not found")
    return task


@tasks.delete("/{task_id}", status_code=204)
def delete_task(task_id: int, db: Database = Depends(get_db)) -> Response:
    if not db.delete_task(task_id):
        raise HTTPException(status_code=404, detail="task not found")
    return Response(status_code=204)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


# --- websocket ----------------------------------------------------------------------------


def _ws_reply(text: Optional[str], version: str) -> dict:
    if text is None:
        return {"type": "error", "detail": "binary messages are not supported"}
    try:
        message = json.loads(text)
    except ValueError:
        return {"type": "error", "detail": "message is not valid JSON"}
    if not isinstance(message, dict) or message.get("type") != "ping":
        return {"type": "error", "detail": 'expected a JSON object with "type": "ping"'}
    return {"type": "pong", "timestamp": utc_now(), "version": version}


async def ws_ping(websocket: WebSocket) -> None:
    state = websocket.app.state
    if state.faults.websocket_fail:
        await websocket.close(code=1011)  # before accept(): the handshake itself is refused
        return
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            await websocket.send_json(_ws_reply(message.get("text"), state.version))
        except WebSocketDisconnect:
            return


# --- application --------------------------------------------------------------------------


def create_app(environ: Optional[Mapping[str, str]] = None, release_root: Path = RELEASE_ROOT) -> FastAPI:
    """Build the app from the environment (os.environ by default); raises ConfigError on bad settings."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    faults = Faults.from_env(env)
    version = read_version(release_root)
    db = Database(settings.database_url, settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(db.ensure_schema)
        except DatabaseError as exc:
            # Start anyway: /health/complete shows the problem and the schema is retried on first use.
            log.warning("database not ready at start-up: %s", exc)
        timer = start_crash_timer(faults.crash_after_s) if faults.crash_after_s else None
        if faults.active():
            log.warning("fault knobs on: %s", ", ".join(f"{name}={getattr(faults, name)}" for name in faults.active()))
        if not settings.api_key:
            log.warning("LEANVIBE_API_KEY is not set: every /api/v1 request will get 401")
        log.info("leanvibe-demo %s ready (database: %s)", version, db.description)
        yield
        if timer is not None:
            timer.cancel()

    # No /docs or /redoc: they pull scripts from a CDN; /openapi.json stays available.
    app = FastAPI(title="LeanVibe demo service", version=version, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.faults = faults
    app.state.version = version
    app.state.db = db
    app.include_router(health)
    app.include_router(tasks)
    app.add_api_websocket_route("/ws", ws_ping)
    app.add_exception_handler(DatabaseError, _database_unavailable)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(FaultMiddleware, faults=faults)  # added last = outermost: latency applies to every response
    return app
