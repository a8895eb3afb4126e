"""leanvibe-monitor --config FILE: the monitoring service (dashboard, API, /metrics, probe scheduler) under uvicorn.

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C), 1 when the database or the listen address fails,
2 for a bad config file or bad arguments. Every failure is one sentence on stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
from types import FrameType
from typing import Optional, Sequence

from .config import ConfigError, load_config
from .store import StoreError, open_store

PROG = "leanvibe-monitor"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The LeanVibe monitoring service: probes every environment on a "
                                     "schedule, stores the rounds and serves the dashboard, its API and /metrics.")
    parser.add_argument("--config", required=True, metavar="FILE", help="the config file (YAML or JSON)")
    parser.add_argument("--check", action="store_true", help="check the config file, print a summary and exit")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="log level (default: info: one line per probe round)")
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request (off by default: scrapes are noisy)")
    return parser


def _fail(message: str, status: int) -> int:
    print("%s: %s" % (PROG, message), file=sys.stderr)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if args.check:
        schedule = ", ".join("%s every %gs" % (env.name, env.interval_s) for env in config.environments)
        print("%s: %s is valid: listen %s, %s, %s." % (PROG, args.config, config.listen, config.database_description, schedule))
        return 0
    try:
        # pylint: disable-next=import-outside-toplevel  # --check must work without the web stack
        import uvicorn

        from .app import create_app  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        return _fail("the web stack is missing (%s): pip install fastapi uvicorn prometheus-client." % exc, 1)
    try:
        # Bound before anything starts: with the address taken, no probe round runs and nothing is stored.
        listeners = bind_listeners(config.host, config.port)
    except OSError as exc:
        return _fail("cannot listen on %s: %s." % (config.listen, (exc.strerror or str(exc)).rstrip(".")), 1)
    try:
        store = open_store(config.database)
    except StoreError as exc:
        _close(listeners)
        return _fail(str(exc), 1)
    app = create_app(config, store=store)
    logging.getLogger("leanvibe_monitor").info("listening on http://%s, %s", config.listen, config.database_description)
    # log_config=None: uvicorn logs through the root handler above, one format for every line.
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_config=None, log_level=args.log_level,
                                           access_log=args.access_log, lifespan="on", server_header=False))
    _quiet_after_shutdown()
    try:
        server.run(sockets=listeners)  # on SIGTERM or SIGINT: stops accepting, finishes requests, runs the lifespan's shutdown
    except SystemExit:  # uvicorn's own exit when the startup failed
        server.started = False
    finally:
        _close(listeners)
        store.close()
    if not server.started:
        return _fail("could not serve on %s (see the log above)." % config.listen, 1)
    return 0


def bind_listeners(host: str, port: int) -> list:
    """Sockets bound to host:port, for uvicorn to listen on; OSError when the address is taken or not of this host.

    As uvicorn binds them itself (asyncio's create_server): one socket per address of the host, SO_REUSEADDR, and
    IPv6 sockets IPv6 only.
    """
    listeners: list = []
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        for family, kind, proto, address in dict.fromkeys((info[0], info[1], info[2], info[4]) for info in infos):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        _close(listeners)
        raise
    return listeners


def _close(listeners: list) -> None:
    for sock in listeners:
        sock.close()


def _quiet_after_shutdown() -> None:
    """No-op handlers for SIGTERM/SIGINT, which uvicorn re-raises after its graceful shutdown: exit 0, not death by signal."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_signal)


def _ignore_signal(signum: int, frame: Optional[FrameType]) -> None:  # pylint: disable=unused-argument
    """The shutdown already happened when uvicorn re-raises the signal."""


if __name__ == "__main__":
    sys.exit(main())
