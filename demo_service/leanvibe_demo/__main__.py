"""Run the demo service: python -m leanvibe_demo --host 127.0.0.1 --port 9001"""

import argparse
import logging
import signal
import sys
import time
from typing import List, Optional

import uvicorn

from .app import create_app
from .settings import ConfigError

GRACEFUL_SHUTDOWN_S = 10
UPSTREAM_KEEPALIVE_S = 75
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

ENVIRONMENT_HELP = """\
environment:
  LEANVIBE_API_KEY              bearer key for /api/v1/* (unset or empty: every API request gets 401)
  LEANVIBE_DATA_DIR             directory of the SQLite file leanvibe.db (default: ./data)
  DATABASE_URL                  postgresql://... to use PostgreSQL instead of SQLite (needs psycopg)
  REDIS_URL                     redis://... also checked by /health/complete when set
  LEANVIBE_FAULT_ERROR_RATE     0..1: share of /api/v1/* requests answered 500
  LEANVIBE_FAULT_LATENCY_MS     delay added to every HTTP response
  LEANVIBE_FAULT_HEALTH         'fail': every /health* endpoint answers 503
  LEANVIBE_FAULT_WEBSOCKET      'fail': /ws refuses every connection
  LEANVIBE_FAULT_CRASH_AFTER_S  exit with status 1 this many seconds after start-up (0: never)
invalid values make the service refuse to start (exit status 2)."""


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m leanvibe_demo",
        description="LeanVibe demo service: FastAPI on uvicorn, one process per blue/green slot.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port to listen on (default: %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: nginx logs requests)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="(default: %(default)s)")
    return parser.parse_args(argv)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    _configure_logging(args.log_level)
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"leanvibe_demo: configuration error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        ws_max_size=64 * 1024,  # pings are tiny; do not buffer up to the 16 MiB default
        lifespan="on",
        log_config=None,  # keep the root handler above: one timestamped format for every logger
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # SIGTERM drains in-flight requests for up to this long
        # Longer than nginx's upstream keepalive_timeout (60 s): the LB closes an idle connection first, so it never
        # sends a request on a connection the app is closing (a reset, and a 502 for a POST).
        timeout_keep_alive=UPSTREAM_KEEPALIVE_S,
    )
    # uvicorn re-raises the stop signal after draining; turn that into a clean exit status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
