"""Dependency checks for /health/complete. Blocking: run them off the event loop."""

import socket
import ssl
import time
from typing import List
from urllib.parse import unquote, urlsplit

from .db import Database, DatabaseError

REDIS_TIMEOUT_S = 1.0


class RedisError(Exception):
    """Redis did not answer PING with PONG."""


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _resp(*args: str) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_ping(url: str, timeout: float = REDIS_TIMEOUT_S) -> float:
    """PING Redis over a raw socket (no client library); return the round trip in ms."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise RedisError(f"REDIS_URL scheme {parts.scheme!r} is not supported: use redis:// or rediss://")
    host = parts.hostname or "localhost"
    commands: List[bytes] = []
    if parts.password is not None:
        credentials = [unquote(parts.username)] if parts.username else []
        commands.append(_resp("AUTH", *credentials, unquote(parts.password)))
    commands.append(_resp("PING"))

    started = time.perf_counter()
    deadline = started + timeout  # one budget for connect, send and every read
    with socket.create_connection((host, parts.port or 6379), timeout=timeout) as raw:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if parts.scheme == "rediss" else raw
        sock.sendall(b"".join(commands))
        buffer = b""
        for _ in commands:
            while b"\r\n" not in buffer:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise RedisError("timed out")
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    raise RedisError("connection closed by server")
                buffer += chunk
            line, buffer = buffer.split(b"\r\n", 1)
            if line.startswith(b"-"):
                raise RedisError(line[1:].decode("utf-8", "replace"))
    if line != b"+PONG":
        raise RedisError(f"unexpected reply {line[:64]!r}")
    return _elapsed_ms(started)


def check_database(db: Database) -> dict:
    started = time.perf_counter()
    try:
        return {"status": "healthy", "response_time_ms": db.ping()}
    except DatabaseError as exc:
        return {"status": "unhealthy", "response_time_ms": _elapsed_ms(started), "error": str(exc)}


def check_redis(url: str) -> dict:
    started = time.perf_counter()
    try:
        return {"status": "healthy", "response_time_ms": redis_ping(url)}
    except (OSError, ValueError, RedisError) as exc:  # ValueError: a malformed REDIS_URL (bad port)
        return {"status": "unhealthy", "response_time_ms": _elapsed_ms(started), "error": str(exc) or type(exc).__name__}
