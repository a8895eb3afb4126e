"""The monitoring service's config file (JSON or YAML): loaded, checked, and turned into probe targets.

Every problem is a ConfigError whose message is one sentence naming the key at fault, for example
``environments[1].interval_s must be a number from 5 to 3600, not 2.``
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Optional

import yaml

from .store import StoreError, describe_database, parse_database_url

ENGINE_MODULE = "ansible_collections.leanvibe.deploy.plugins.module_utils.probes"
COLLECTIONS_PATH_ENV = "LEANVIBE_COLLECTIONS_PATH"
MAX_CONFIG_BYTES = 1 << 20
MAX_ENVIRONMENTS = 100
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_DATABASE = "sqlite:///monitor.db"  # beside the config file
DEFAULT_RETENTION_DAYS = 30
DEFAULT_INTERVAL_S = 30
DEFAULT_MODE = "quick"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_SUCCESS_THRESHOLD = 0.85
INTERVAL_RANGE = (5, 3600)
TIMEOUT_RANGE = (0.1, 600)
RETENTION_RANGE = (1, 3650)

TOP_KEYS = ("listen", "database", "retention_days", "token", "collections_path", "environments")
ENVIRONMENT_KEYS = ("name", "url", "interval_s", "mode", "probes", "api_key", "timeout_s", "success_threshold", "headers",
                    "verify_tls")


class ConfigError(Exception):
    """A bad config file; the message is one sentence."""


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment to probe: its LB URL, schedule and probe settings, and the ProbeTarget built from them."""

    name: str
    url: str
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD
    mode: Optional[str] = DEFAULT_MODE
    probe_names: tuple = ()
    verify_tls: bool = True
    api_key: Optional[str] = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry credentials
    target: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class MonitorConfig:
    """The whole config file, checked; ``engine`` is the imported probe engine module."""

    host: str
    port: int
    database: str
    environments: tuple
    token: str = field(repr=False)
    retention_days: int = DEFAULT_RETENTION_DAYS
    collections_path: Optional[str] = None
    source: Optional[str] = None
    engine: Optional[ModuleType] = field(default=None, repr=False, compare=False)

    @property
    def listen(self) -> str:
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)

    @property
    def database_description(self) -> str:
        """The database without its password, fit for logs."""
        return describe_database(self.database)

    def environment(self, name: str) -> Optional[EnvironmentConfig]:
        for env in self.environments:
            if env.name == name:
                return env
        return None

    @property
    def environment_names(self) -> list:
        return [env.name for env in self.environments]


# --- the probe engine ------------------------------------------------------------------------------


def import_probe_engine(collections_path: Optional[str] = None) -> ModuleType:
    """The collection's probe engine, after putting collections_path (and $LEANVIBE_COLLECTIONS_PATH) on sys.path."""
    candidates = [collections_path] + os.environ.get(COLLECTIONS_PATH_ENV, "").split(os.pathsep)
    for path in reversed([path for path in candidates if path]):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        return importlib.import_module(ENGINE_MODULE)
    except ImportError as exc:
        where = collections_path or os.environ.get(COLLECTIONS_PATH_ENV) or "sys.path"
        raise ConfigError("cannot import the probe engine %s from %s (%s): set collections_path to the folder that holds "
                          "ansible_collections/leanvibe/deploy." % (ENGINE_MODULE, where, exc)) from None


# --- reading ---------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike, engine: Optional[ModuleType] = None) -> MonitorConfig:
    """Read and check a config file (.json as JSON, anything else as YAML, which JSON also is)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("cannot read config file %s: %s." % (path, exc.strerror or exc)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("config file %s is over 1 MiB." % path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("config file %s is not UTF-8 text." % path) from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("config file %s is not valid JSON: %s." % (path, exc)) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = " at line %d" % (mark.line + 1) if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError("config file %s is not valid YAML%s: %s." % (path, where, problem)) from None
    return parse_config(data, base_dir=path.resolve().parent, source=str(path), engine=engine)


def parse_config(data: Any, base_dir: str | os.PathLike | None = None, source: Optional[str] = None,
                 engine: Optional[ModuleType] = None) -> MonitorConfig:
    """Check a config mapping; relative SQLite paths are taken from base_dir (default: the working directory)."""
    if not isinstance(data, Mapping):
        raise ConfigError("the config must be a mapping with listen, token and environments.")
    _no_unknown_keys(data, TOP_KEYS, "config")
    host, port = _listen(data.get("listen"))
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    database_value = data.get("database", DEFAULT_DATABASE)
    if not isinstance(database_value, str) or not database_value.strip():
        raise ConfigError("database must be a sqlite:///PATH or postgresql:// URL.")
    try:
        database = parse_database_url(database_value.strip(), base_dir=base).url
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    retention_days = _whole(data.get("retention_days", DEFAULT_RETENTION_DAYS), "retention_days", RETENTION_RANGE)
    token = data.get("token")
    if not isinstance(token, str) or not token.strip():
        raise ConfigError("token must be a non-empty string: the POST endpoints need it.")
    if token != token.strip() or any(ord(char) < 33 or ord(char) == 127 for char in token):
        raise ConfigError("token must not contain spaces or control characters.")
    collections_path = data.get("collections_path")
    if collections_path is not None and (not isinstance(collections_path, str) or not collections_path.strip()):
        raise ConfigError("collections_path must be a folder path.")
    if engine is None:
        engine = import_probe_engine(collections_path)
    environments = data.get("environments")
    if not isinstance(environments, list) or not environments:
        raise ConfigError("environments must be a non-empty list of {name, url} mappings.")
    if len(environments) > MAX_ENVIRONMENTS:
        raise ConfigError("environments lists %d entries, at most %d are allowed." % (len(environments), MAX_ENVIRONMENTS))
    parsed = []
    for index, item in enumerate(environments):
        env = _environment(item, "environments[%d]" % index, engine)
        if any(other.name == env.name for other in parsed):
            raise ConfigError("environments[%d].name %r is used twice." % (index, env.name))
        parsed.append(env)
    return MonitorConfig(host=host, port=port, database=database, environments=tuple(parsed), token=token,
                         retention_days=retention_days, collections_path=collections_path, source=source, engine=engine)


# --- pieces ----------------------------------------------------------------------------------------


def _no_unknown_keys(data: Mapping, known: tuple, where: str) -> None:
    for key in data:
        if key not in known:
            # A typo must not silently fall back to a default: say which keys exist.
            raise ConfigError("%s key %r is unknown: use %s." % (where, key, ", ".join(known)))


def _listen(value: Any) -> tuple:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("listen must be host:port, for example 127.0.0.1:5000.")
    value = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]+):(\d{1,5})", value)
    if not match:
        raise ConfigError("listen %r must be host:port, for example 127.0.0.1:5000 or [::1]:5000." % value)
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ConfigError("listen %r has port %d: use 1 to 65535." % (value, port))
    return host, port


def _number(value: Any, what: str, bounds: tuple) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError("%s must be a number from %g to %g, not %r." % (what, low, high, value))
    return float(value)


def _whole(value: Any, what: str, bounds: tuple) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError("%s must be a whole number from %d to %d, not %r." % (what, low, high, value))
    return value


def _environment(item: Any, where: str, engine: ModuleType) -> EnvironmentConfig:
    if not isinstance(item, Mapping):
        raise ConfigError("%s must be a mapping with name and url." % where)
    _no_unknown_keys(item, ENVIRONMENT_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError("%s.name must be 1 to 64 letters, digits, '_', '.' or '-' starting with a letter or digit, not %r."
                          % (where, name))
    where = "environment %s" % name
    interval_s = _number(item.get("interval_s", DEFAULT_INTERVAL_S), where + ": interval_s", INTERVAL_RANGE)
    timeout_s = _number(item.get("timeout_s", DEFAULT_TIMEOUT_S), where + ": timeout_s", TIMEOUT_RANGE)
    threshold = _number(item.get("success_threshold", DEFAULT_SUCCESS_THRESHOLD), where + ": success_threshold", (0, 1))
    verify_tls = item.get("verify_tls", True)
    if not isinstance(verify_tls, bool):
        raise ConfigError("%s: verify_tls must be true or false, not %r." % (where, verify_tls))
    headers = item.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(value, (str, int, float)) and not isinstance(value, bool)
                                                   for value in headers.values()):
        raise ConfigError("%s: headers must be a mapping of header name to text." % where)
    headers = {str(key): str(value) for key, value in headers.items()}
    api_key = item.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError("%s: api_key must be a string." % where)
    mode = item.get("mode", DEFAULT_MODE)
    probes = item.get("probes")
    try:
        names = tuple(engine.select_probes(mode, probes))
        target = engine.ProbeTarget(item.get("url"), headers=headers, api_key=api_key, timeout=timeout_s, verify_tls=verify_tls)
        engine.check_requirements(target, names)
    except engine.ValidationError as exc:
        raise ConfigError("%s: %s" % (where, _sentence(str(exc)))) from None
    return EnvironmentConfig(name=name, url=target.base_url, interval_s=interval_s, timeout_s=timeout_s,
                             success_threshold=threshold, mode=None if probes is not None else mode, probe_names=names,
                             verify_tls=verify_tls, api_key=api_key or None, headers=headers, target=target)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(".") else text + "."
