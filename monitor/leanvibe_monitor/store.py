"""Storage of probe rounds, probe checks and deployment events: SQLite by default, PostgreSQL with a URL.

Both dialects share one schema and one set of queries (written with ``?`` placeholders; PostgreSQL gets ``%s``).
Times are stored twice: ``ts`` (epoch seconds, for queries and retention) and ``timestamp`` (ISO 8601 UTC text).

Thread-safe: SQLite opens a connection per operation (WAL lets the dashboard read while the scheduler writes, and a
database that was unwritable recovers by itself); PostgreSQL keeps one connection behind a lock and reconnects after
an error. Every failure is a StoreError whose message is one sentence naming the database and the cause.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import unquote, urlsplit

SQLITE_BUSY_TIMEOUT_S = 5.0
PG_CONNECT_TIMEOUT_S = 5
PG_STATEMENT_TIMEOUT_MS = 15000
PG_SCHEMES = ("postgresql", "postgres")
# Any constant works: it only serialises CREATE TABLE between two services starting at once.
PG_SCHEMA_LOCK_KEY = 0x1EA7D1
TABLES = ("health_checks", "probe_rounds", "deployment_events")
EVENT_KINDS = ("deploy", "step", "promote", "rollback", "failure")
DAY_S = 86400.0
MAX_EVENTS_SCANNED = 200  # how far back the current serving weights are looked for

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS health_checks ("
    " id {serial},"
    " timestamp TEXT NOT NULL,"
    " ts {real} NOT NULL,"
    " environment TEXT NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " status_code INTEGER,"
    " response_time_ms {real},"
    " success BOOLEAN NOT NULL,"
    " detail TEXT,"
    " round_id TEXT)",
    "CREATE INDEX IF NOT EXISTS health_checks_env_ts ON health_checks (environment, ts)",
    "CREATE INDEX IF NOT EXISTS health_checks_ts ON health_checks (ts)",
    "CREATE TABLE IF NOT EXISTS probe_rounds ("
    " id TEXT PRIMARY KEY,"
    " timestamp TEXT NOT NULL,"
    " ts {real} NOT NULL,"
    " environment TEXT NOT NULL,"
    " url TEXT NOT NULL,"
    " passed BOOLEAN NOT NULL,"
    " up BOOLEAN NOT NULL,"
    " success_rate {real} NOT NULL,"
    " duration_ms {real} NOT NULL,"
    " health_ms {real},"
    " version TEXT,"
    " msg TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS probe_rounds_env_ts ON probe_rounds (environment, ts)",
    "CREATE INDEX IF NOT EXISTS probe_rounds_ts ON probe_rounds (ts)",
    "CREATE TABLE IF NOT EXISTS deployment_events ("
    " id {serial},"
    " timestamp TEXT NOT NULL,"
    " ts {real} NOT NULL,"
    " at TEXT NOT NULL,"
    " at_ts {real} NOT NULL,"
    " environment TEXT NOT NULL,"
    " app TEXT NOT NULL,"
    " event TEXT NOT NULL,"
    " version TEXT NOT NULL,"
    " from_version TEXT,"
    " to_version TEXT,"
    " weights TEXT,"
    " reasons TEXT NOT NULL,"
    " text TEXT,"
    " rollback_ms {real},"
    " payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS deployment_events_env_at ON deployment_events (environment, at_ts)",
    "CREATE INDEX IF NOT EXISTS deployment_events_ts ON deployment_events (ts)",
)

_ROUND_COLUMNS = ("id", "timestamp", "ts", "environment", "url", "passed", "up", "success_rate", "duration_ms", "health_ms",
                  "version", "msg")
_CHECK_COLUMNS = ("timestamp", "ts", "environment", "endpoint", "status_code", "response_time_ms", "success", "detail",
                  "round_id")
_EVENT_COLUMNS = ("timestamp", "ts", "at", "at_ts", "environment", "app", "event", "version", "from_version", "to_version",
                  "weights", "reasons", "text", "rollback_ms", "payload")


class StoreError(Exception):
    """A storage failure; the message is one sentence naming the database and the cause."""


def iso(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC text with milliseconds."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _insert(table: str, columns: Sequence[str]) -> str:
    return "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" for column in columns))


def _cause(exc: BaseException) -> str:
    """The first line of a driver error, without a trailing period (the caller ends the sentence)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.rstrip(".")


# --- URLs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database setting: kind 'sqlite' with an absolute path, or 'postgresql' with the URL."""

    kind: str
    url: str
    path: Optional[str] = None

    @property
    def description(self) -> str:
        return describe_database(self.url)


def parse_database_url(value: str, base_dir: str | os.PathLike | None = None) -> DatabaseUrl:
    """sqlite:////abs/path, sqlite:///relative (to base_dir), a bare file path, or postgresql://user:pw@host/db."""
    if not isinstance(value, str) or not value.strip():
        raise StoreError("database must be a sqlite:///PATH or postgresql:// URL.")
    value = value.strip()
    scheme = value.split(":", 1)[0].lower() if "://" in value else ""
    if scheme in PG_SCHEMES:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018  # pylint: disable=pointless-statement  # raises ValueError for a bad port
        except ValueError:
            raise StoreError("database URL %s has an invalid port." % describe_database(value)) from None
        if not parts.hostname and "host=" not in parts.query:
            raise StoreError("database URL %s has no host." % describe_database(value))
        return DatabaseUrl("postgresql", value)
    if scheme == "sqlite":
        if not value.lower().startswith("sqlite:///"):
            raise StoreError("database %r must be sqlite:///relative/path or sqlite:////absolute/path." % value)
        raw = unquote(value[len("sqlite:///"):])
    elif scheme:
        raise StoreError("database scheme %r is not supported: use sqlite:/// or postgresql://." % scheme)
    else:
        raw = value
    if not raw or raw == ":memory:" or raw.endswith("/"):
        raise StoreError("database %r must name a SQLite file." % value)
    path = Path(raw)
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    path = Path(os.path.normpath(str(path)))
    return DatabaseUrl("sqlite", "sqlite:///" + str(path), str(path))


def describe_database(url: str) -> str:
    """The database for messages and logs: never the password."""
    if not url.lower().startswith(tuple(scheme + "://" for scheme in PG_SCHEMES)):
        if url.lower().startswith("sqlite:///"):
            return "SQLite database " + unquote(url[len("sqlite:///"):])
        return "SQLite database " + url
    parts = urlsplit(url)
    user = parts.username
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = (unquote(user) + "@" if user else "") + (parts.hostname or "") + (":%d" % port if port else "")
    return "PostgreSQL database postgresql://%s%s" % (netloc, parts.path)


# --- dialects ----------------------------------------------------------------------------------------


class _SQLiteDialect:
    """One connection per operation: nothing stale after the file was unwritable, restored or replaced."""

    kind = "sqlite"
    placeholder = "?"
    types = {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = "SQLite database " + path
        self.errors: tuple = (sqlite3.Error,)
        self.lock = None  # SQLite does its own locking across threads and processes

    def schema(self) -> list:
        return [statement.format(**self.types) for statement in _SCHEMA]

    def sql(self, statement: str) -> str:
        return statement

    def prepare_folder(self) -> None:
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the folder %s of the %s: %s." % (folder, self.description, exc.strerror or exc)) from None

    def connect(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            # sqlite3 would only say "unable to open database file".
            raise sqlite3.OperationalError("it is a directory")
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S)
        conn.execute("PRAGMA synchronous=NORMAL")  # durable enough under WAL, far fewer fsyncs
        return conn

    def init_connection(self, conn: sqlite3.Connection) -> None:
        # WAL is stored in the file: readers (the dashboard) never wait for the scheduler's writes.
        conn.execute("PRAGMA journal_mode=WAL")

    def release(self, conn: sqlite3.Connection, failed: bool) -> None:
        conn.close()

    def close(self) -> None:
        pass

    def hint(self, exc: BaseException) -> str:
        """The driver's words, plus why when SQLite does not say (a missing or unwritable folder)."""
        cause = _cause(exc)
        folder = os.path.dirname(self.path)
        if "unable to open" in cause and not os.path.isdir(folder):
            return "%s (the folder %s does not exist)" % (cause, folder)
        if ("unable to open" in cause or "readonly" in cause) and not os.access(folder, os.W_OK):
            return "%s (the folder %s is not writable)" % (cause, folder)
        return cause


class _PostgresDialect:
    """One connection reused behind a lock, dropped after any error and opened again on the next call."""

    kind = "postgresql"
    placeholder = "%s"
    types = {"serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "real": "DOUBLE PRECISION"}

    def __init__(self, url: str) -> None:
        self.url = url
        self.description = describe_database(url)
        self.lock = threading.RLock()
        self._conn: Any = None
        self._psycopg: Any = None
        self.errors: tuple = ()

    def load_driver(self) -> None:
        if self._psycopg is not None:
            return
        try:
            import psycopg  # pylint: disable=import-outside-toplevel  # SQLite deployments need not install it
        except ImportError:
            raise StoreError("the %s needs psycopg: pip install 'psycopg[binary]'." % self.description) from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)

    def schema(self) -> list:
        return ["SELECT pg_advisory_xact_lock(%d)" % PG_SCHEMA_LOCK_KEY] + [statement.format(**self.types) for statement in _SCHEMA]

    def sql(self, statement: str) -> str:
        # Our statements hold no literal '%' or '?': every value is a parameter.
        return statement.replace("?", "%s")

    def prepare_folder(self) -> None:
        self.load_driver()

    def connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            # Keepalives and a statement timeout: a server that hangs fails a call instead of holding a thread for good.
            conn = self._psycopg.connect(self.url, connect_timeout=PG_CONNECT_TIMEOUT_S, application_name="leanvibe-monitor",
                                         keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
            conn.execute("SET statement_timeout = %d" % PG_STATEMENT_TIMEOUT_MS)
            conn.commit()
            self._conn = conn
        return self._conn

    def init_connection(self, conn: Any) -> None:
        pass

    def release(self, conn: Any, failed: bool) -> None:
        if failed:
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-exception-caught  # a broken connection may fail to close
                pass
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def hint(self, exc: BaseException) -> str:
        return _cause(exc).replace(self.url, self.description)


# --- the store ---------------------------------------------------------------------------------------


class Store:
    """Rounds, checks and events in one database; see the module docstring for the threading model."""

    def __init__(self, url: str | DatabaseUrl) -> None:
        parsed = url if isinstance(url, DatabaseUrl) else parse_database_url(url)
        self.url = parsed
        self._dialect: Any = _SQLiteDialect(parsed.path) if parsed.kind == "sqlite" else _PostgresDialect(parsed.url)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self._dialect.kind

    @property
    def description(self) -> str:
        return self._dialect.description

    def sql(self, statement: str) -> str:
        """A statement in this database's parameter style."""
        return self._dialect.sql(statement)

    def schema_statements(self) -> list:
        return self._dialect.schema()

    def close(self) -> None:
        lock = self._dialect.lock
        if lock is None:
            self._dialect.close()
            return
        with lock:
            self._dialect.close()

    # -- plumbing --

    def _run(self, operations: Sequence[tuple], action: str) -> list:
        """Run operations in one transaction and return each one's rows.

        An operation is (sql, params), (sql, list of params, "many"), (sql, params, "id") for an INSERT whose new
        id comes back as [(id,)], or (sql, params, "rowcount") for a DELETE whose count comes back as [(n,)].
        """
        lock = self._dialect.lock
        if lock is None:
            return self._run_unlocked(operations, action)
        with lock:
            return self._run_unlocked(operations, action)

    def _run_unlocked(self, operations: Sequence[tuple], action: str) -> list:
        dialect = self._dialect
        dialect.prepare_folder()
        conn = None
        failed = True
        try:
            conn = dialect.connect()
            if not self._schema_ready:
                self._create_schema(conn)
            cur = conn.cursor()
            results = []
            for operation in operations:
                statement, params = operation[0], operation[1]
                mode = operation[2] if len(operation) > 2 else "one"
                if mode == "many":
                    if params:
                        cur.executemany(dialect.sql(statement), params)
                    results.append([])
                elif mode == "id" and dialect.kind == "postgresql":
                    cur.execute(dialect.sql(statement + " RETURNING id"), params)
                    results.append(cur.fetchall())
                elif mode == "id":
                    cur.execute(dialect.sql(statement), params)  # lastrowid: SQLite before 3.35 has no RETURNING
                    results.append([(cur.lastrowid,)])
                elif mode == "rowcount":
                    cur.execute(dialect.sql(statement), params)
                    results.append([(max(cur.rowcount, 0),)])
                else:
                    cur.execute(dialect.sql(statement), params)
                    results.append(cur.fetchall() if cur.description is not None else [])
            conn.commit()
            failed = False
            return results
        except dialect.errors as exc:
            self._schema_ready = False  # the file may have been replaced or restored: check the schema next time
            if conn is not None:
                try:
                    conn.rollback()
                except dialect.errors:
                    pass
            raise StoreError("cannot %s the %s: %s." % (action, dialect.description, dialect.hint(exc))) from None
        finally:
            if conn is not None:
                dialect.release(conn, failed)

    def _create_schema(self, conn: Any) -> None:
        with self._schema_lock:
            self._dialect.init_connection(conn)
            cur = conn.cursor()
            for statement in self._dialect.schema():
                cur.execute(statement)
            conn.commit()
            self._schema_ready = True

    def _query(self, statement: str, params: tuple = ()) -> list:
        return self._run([(statement, params)], "read")[0]

    def ensure_schema(self) -> None:
        """Create the tables when missing and check that the database takes writes; StoreError otherwise."""
        self._schema_ready = False
        # CREATE TABLE IF NOT EXISTS writes nothing once the tables exist; a DELETE (of no rows) needs write access.
        self._run([("DELETE FROM probe_rounds WHERE ts < ?", (-1.0,))], "write to")

    # -- writes --

    def record_round(self, round_row: dict, checks: Sequence[dict]) -> None:
        """One probe round (probe_rounds columns) and its checks (health_checks columns), in one transaction."""
        self._run([
            (_insert("probe_rounds", _ROUND_COLUMNS), tuple(round_row.get(column) for column in _ROUND_COLUMNS)),
            (_insert("health_checks", _CHECK_COLUMNS), [tuple(check.get(column) for column in _CHECK_COLUMNS) for check in checks],
             "many"),
        ], "write to")

    def record_event(self, event: dict) -> int:
        """A deployment event (deployment_events columns; weights, reasons and payload as Python values); its id."""
        row = dict(event)
        for column in ("weights", "reasons", "payload"):
            if row.get(column) is not None:
                row[column] = json.dumps(row[column], sort_keys=True)
        results = self._run([(_insert("deployment_events", _EVENT_COLUMNS), tuple(row.get(column) for column in _EVENT_COLUMNS),
                              "id")], "write to")
        return int(results[0][0][0])

    def prune(self, retention_days: float, now: Optional[float] = None) -> dict:
        """Delete rows older than retention_days; {table: rows deleted}."""
        cutoff = (time.time() if now is None else now) - retention_days * DAY_S
        # One transaction per table: a long prune never holds every table at once.
        return {table: int(self._run([("DELETE FROM %s WHERE ts < ?" % table, (cutoff,), "rowcount")], "prune")[0][0][0])
                for table in TABLES}

    # -- reads --

    def count(self, table: str, environment: Optional[str] = None) -> int:
        if table not in TABLES:
            raise ValueError("unknown table %r" % table)
        if environment is None:
            return int(self._query("SELECT COUNT(*) FROM %s" % table)[0][0])
        return int(self._query("SELECT COUNT(*) FROM %s WHERE environment = ?" % table, (environment,))[0][0])

    def metrics(self, since_ts: float, environment: Optional[str] = None) -> list:
        """The seed's /api/metrics rows: one per (environment, endpoint) since since_ts."""
        where, params = "ts >= ?", [since_ts]
        if environment is not None:
            where += " AND environment = ?"
            params.append(environment)
        # GROUP BY endpoint first: grouped by environment first, SQLite walks all of (environment, ts) for its order,
        # every row the retention keeps, instead of searching the window in the ts index (27 ms instead of 5 at 30 days).
        rows = self._query("SELECT environment, endpoint, AVG(response_time_ms), SUM(CASE WHEN success THEN 1 ELSE 0 END), COUNT(*)"
                           " FROM health_checks WHERE %s GROUP BY endpoint, environment ORDER BY environment, endpoint" % where,
                           tuple(params))
        return [{"environment": env, "endpoint": endpoint,
                 "avg_response_time": round(float(avg), 2) if avg is not None else None,
                 "success_rate": round(100.0 * int(passed or 0) / int(total), 2) if total else None,
                 "total_checks": int(total)}
                for env, endpoint, avg, passed, total in rows]

    def window(self, environment: str, label: str, seconds: float, now: Optional[float] = None) -> dict:
        """Uptime and success of one environment over the last `seconds`: the contract's W object."""
        end = time.time() if now is None else now
        start = end - seconds
        rounds_row, checks_row = self._run([
            ("SELECT COUNT(*), SUM(CASE WHEN up THEN 1 ELSE 0 END) FROM probe_rounds WHERE environment = ? AND ts >= ? AND ts <= ?",
             (environment, start, end)),
            ("SELECT COUNT(*), SUM(CASE WHEN success THEN 1 ELSE 0 END) FROM health_checks"
             " WHERE environment = ? AND ts >= ? AND ts <= ?", (environment, start, end)),
        ], "read")
        rounds, up = int(rounds_row[0][0]), int(rounds_row[0][1] or 0)
        checks, passed = int(checks_row[0][0]), int(checks_row[0][1] or 0)
        return {"window": label, "start": iso(start), "end": iso(end),
                "uptime_pct": round(100.0 * up / rounds, 2) if rounds else None,
                "success_rate_pct": round(100.0 * passed / checks, 2) if checks else None,
                "rounds": rounds, "checks": checks}

    def last_round(self, environment: str) -> Optional[dict]:
        rows = self._query("SELECT id, ts, url, passed, up, success_rate, duration_ms, health_ms, version, msg FROM probe_rounds"
                           " WHERE environment = ? ORDER BY ts DESC LIMIT 1", (environment,))
        if not rows:
            return None
        round_id, ts, url, passed, up, rate, duration, health_ms, version, msg = rows[0]
        return {"id": round_id, "at": iso(ts), "ts": float(ts), "url": url, "passed": bool(passed), "up": bool(up),
                "success_rate": float(rate), "duration_ms": float(duration),
                "health_ms": None if health_ms is None else float(health_ms), "version": version, "msg": msg}

    def last_round_times(self, environments: Sequence[str]) -> dict:
        """{environment: epoch seconds of its latest round} of these environments, those without rounds left out."""
        # One MAX per environment, in one transaction: each an index seek on (environment, ts). A GROUP BY over all
        # environments walked the whole index, every round the retention keeps: 9 ms at 30 days, now 0.5 ms a call.
        names = list(dict.fromkeys(environments))
        results = self._run([("SELECT MAX(ts) FROM probe_rounds WHERE environment = ?", (name,)) for name in names], "read")
        return {name: float(rows[0][0]) for name, rows in zip(names, results) if rows and rows[0][0] is not None}

    def rounds_between(self, environment: str, start: float, end: float) -> list:
        """(ts, health_ms, duration_ms, up, passed) of every round in [start, end], oldest first."""
        rows = self._query("SELECT ts, health_ms, duration_ms, up, passed FROM probe_rounds"
                           " WHERE environment = ? AND ts >= ? AND ts <= ? ORDER BY ts", (environment, start, end))
        return [(float(ts), None if health is None else float(health), float(duration), bool(up), bool(passed))
                for ts, health, duration, up, passed in rows]

    def events(self, environment: Optional[str] = None, limit: int = 50, start: Optional[float] = None,
               end: Optional[float] = None, oldest_first: bool = False) -> list:
        """Deployment events by event time (newest first unless oldest_first), optionally of one environment/window."""
        clauses, params = [], []
        if environment is not None:
            clauses.append("environment = ?")
            params.append(environment)
        if start is not None:
            clauses.append("at_ts >= ?")
            params.append(start)
        if end is not None:
            clauses.append("at_ts <= ?")
            params.append(end)
        order = "ASC" if oldest_first else "DESC"
        statement = "SELECT id, %s FROM deployment_events%s ORDER BY at_ts %s, id %s LIMIT ?" % (
            ", ".join(_EVENT_COLUMNS), " WHERE " + " AND ".join(clauses) if clauses else "", order, order)
        params.append(int(limit))
        return [_event_row(row) for row in self._query(statement, tuple(params))]

    def current_serving(self, environment: str) -> dict:
        """What serves now: from the latest event that says so, else from the probes' /health version."""
        for event in self.events(environment, limit=MAX_EVENTS_SCANNED):
            weights = serving_weights(event)
            if weights:
                return {"version": main_version(weights, event), "weights": weights, "since": event["at"], "source": "event"}
        rows = self._query("SELECT version, ts FROM probe_rounds WHERE environment = ? AND version IS NOT NULL"
                           " ORDER BY ts DESC LIMIT 1", (environment,))
        if not rows:
            return {"version": None, "weights": {}, "since": None, "source": None}
        version = rows[0][0]
        # Since: the first round of the current streak of this version.
        streak = self._query("SELECT MAX(ts) FROM probe_rounds WHERE environment = ? AND version IS NOT NULL AND version <> ?",
                             (environment, version))[0][0]
        since = self._query("SELECT MIN(ts) FROM probe_rounds WHERE environment = ? AND version = ? AND ts > ?",
                            (environment, version, -1.0 if streak is None else float(streak)))[0][0]
        return {"version": version, "weights": {version: 100.0}, "since": iso(float(since)), "source": "probe"}


def _event_row(row: Sequence) -> dict:
    data = dict(zip(("id",) + _EVENT_COLUMNS, row))
    for column in ("weights", "reasons", "payload"):
        if data[column] is not None:
            data[column] = json.loads(data[column])
    data["id"] = int(data["id"])
    data["ts"] = float(data["ts"])
    data["at_ts"] = float(data["at_ts"])
    if data["rollback_ms"] is not None:
        data["rollback_ms"] = float(data["rollback_ms"])
    return data


def serving_weights(event: dict) -> dict:
    """{version: percent} an event says serves, {} when it says nothing about traffic (a deploy without weights)."""
    weights = event.get("weights")
    if weights:
        return {version: float(weight) for version, weight in weights.items() if weight > 0}
    if event.get("event") == "promote" and event.get("version"):
        return {event["version"]: 100.0}
    if event.get("event") == "rollback" and event.get("to_version"):
        return {event["to_version"]: 100.0}
    return {}


def main_version(weights: dict, event: Optional[dict] = None) -> Optional[str]:
    """The version with most traffic; on a tie the stable one (the event's from_version) stays current."""
    if not weights:
        return None
    top = max(weights.values())
    leaders = sorted(version for version, weight in weights.items() if weight == top)
    stable = (event or {}).get("from_version")
    return stable if stable in leaders else leaders[0]


def open_store(url: str | DatabaseUrl) -> Store:
    """A Store whose schema exists and which takes writes; StoreError (one sentence) otherwise."""
    store = Store(url)
    store.ensure_schema()
    return store
