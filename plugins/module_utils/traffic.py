# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary analysis from the LB's JSON access log (format ``leanvibe_json`` of the nginx_lb role).

What Flagger's request-success-rate / request-duration checks and an Argo Rollouts analysis run do, for plain
nginx: the requests of a time window are split by the color group nginx chose (``upstream`` =
``leanvibe_<app>_<color>``) into stable and canary, summarised (requests, 5xx, percentiles of ``request_time``)
and the canary is judged against the stable side and absolute limits.

The log is read backwards from its end in blocks, and reading stops at the first entry that is clearly older than
the window (``msec``, the request's end time, more than ``disorder_s`` seconds before the window start): the cost
follows the size of the window, not of the file. Entries are attributed to the window by ``msec``.

A request that nginx had to retry on another server (``upstream_addr`` lists several attempts), or that a server of
the other color answered (the side's own servers were marked down and the other color's ``backup`` servers took it),
is a *failover* of its side: no client saw an error (``proxy_next_upstream``), but the side failed it. A canary
that crashes and is restarted within a step shows up here and nowhere else.

Only ``analyse`` raises for bad arguments (``ValidationError``, one sentence); an unreadable file raises ``OSError``.
Lines that are not JSON or miss fields are counted, never fatal.
"""

from __future__ import annotations

import json
import math
import os
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    ValidationError,
    validate_app_name,
    validate_color,
    validate_server,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.nginx import upstream_name
from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso_from_epoch, parse_iso

BLOCK_SIZE = 64 * 1024
# Seconds of disorder allowed between log lines: workers write lines at the request's end, a little out of order.
DISORDER_S = 5.0
# The value of X-Canary that pins a request to the canary (the LB's Lua `pick`): probes, not user traffic.
SYNTHETIC_HEADER = "always"
POLICIES = ("inconclusive", "fail", "pass")
VERDICTS = ("pass", "fail", "inconclusive")
PERCENTILES = (50, 95, 99)
DEFAULT_LIMITS = {
    "max_error_rate": 0.01,
    "error_rate_factor": 2.0,
    "p95_factor": 1.5,
    "p95_slack_ms": 50.0,
    "max_p95_ms": None,
    "min_requests": 20,
    "insufficient_data": "inconclusive",
}
_GZIP_MAGIC = b"\x1f\x8b"


# --- times and arguments ------------------------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_time(value, what="since"):
    """Epoch seconds (a number or a numeric string) or an ISO 8601 time -> epoch seconds as a float.

    An ISO time without an offset is read as UTC.
    """
    if _is_number(value):
        result = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            result = float(text)
        except ValueError:
            try:
                result = parse_iso(text).timestamp()
            except ValueError:
                raise ValidationError("%s %r is neither epoch seconds nor an ISO 8601 time." % (what, value))
    else:
        raise ValidationError("%s %r is neither epoch seconds nor an ISO 8601 time." % (what, value))
    if not math.isfinite(result) or result < 0:
        raise ValidationError("%s %r is not a time after 1970." % (what, value))
    return result


def resolve_window(since=None, window_s=None, until=None, now=None):
    """(since, until, until_open) in epoch seconds from either `since` or `window_s`, with an optional `until`.

    `window_s` counts back from `until`, or from now. `until` defaults to now; `until_open` tells that the window
    runs up to the live end of the log.
    """
    if since is not None and window_s is not None:
        raise ValidationError("give either since or window_s, not both.")
    if since is None and window_s is None:
        raise ValidationError("give since (the window's start) or window_s (the last N seconds).")
    until_open = until is None
    end = (time.time() if now is None else float(now)) if until_open else parse_time(until, "until")
    if window_s is not None:
        if not _is_number(window_s) or not math.isfinite(window_s) or window_s <= 0:
            raise ValidationError("window_s must be a positive number of seconds, not %r." % (window_s,))
        start = end - float(window_s)
    else:
        start = parse_time(since, "since")
    if start > end:
        raise ValidationError("since %s is after until %s." % (iso_from_epoch(start), iso_from_epoch(end)))
    return start, end, until_open


def validate_limits(limits=None):
    """The judging limits with defaults filled in; each bad one is refused with one sentence."""
    merged = dict(DEFAULT_LIMITS)
    for key, value in (limits or {}).items():
        if key not in DEFAULT_LIMITS:
            raise ValidationError("unknown limit %r." % (key,))
        if value is not None:
            merged[key] = value
    rate = merged["max_error_rate"]
    if not _is_number(rate) or not 0 <= rate <= 1:  # also refuses NaN
        raise ValidationError("max_error_rate must be a rate between 0 and 1, not %r." % (rate,))
    for key in ("error_rate_factor", "p95_factor", "p95_slack_ms", "max_p95_ms", "min_requests"):
        value = merged[key]
        if value is None and key == "max_p95_ms":
            continue
        if not _is_number(value) or not value >= 0 or not math.isfinite(value):
            raise ValidationError("%s must be a number not below 0, not %r." % (key, value))
    if isinstance(merged["min_requests"], float):
        if merged["min_requests"] != int(merged["min_requests"]):
            raise ValidationError("min_requests must be a whole number, not %r." % (merged["min_requests"],))
        merged["min_requests"] = int(merged["min_requests"])
    if merged["insufficient_data"] not in POLICIES:
        raise ValidationError("insufficient_data must be one of %s, not %r." % (", ".join(POLICIES), merged["insufficient_data"]))
    return merged


# --- reading the log ----------------------------------------------------------------------


def open_binary(path):
    """Opens a log file for reading (a seam for tests that count the bytes read)."""
    return open(path, "rb")


class ReverseLines:
    """The lines of an open binary file from the last to the first, read in blocks from `size` backwards.

    Yields ``(line, complete)``: `complete` is False only for text after the file's last newline (a line nginx may
    still be writing). `bytes_read` counts what was read. When the file shrinks under the reader (truncated or
    copied away by a log rotation), reading ends quietly with `truncated` set.
    """

    def __init__(self, handle, size, block_size=BLOCK_SIZE):
        self.handle = handle
        self.size = size
        self.block_size = max(1, int(block_size))
        self.bytes_read = 0
        self.truncated = False

    def __iter__(self):
        pos = self.size
        tail = b""
        last = True  # the piece after the last newline is not yet yielded
        while pos > 0:
            start = max(0, pos - self.block_size)
            self.handle.seek(start)
            data = self.handle.read(pos - start)
            self.bytes_read += len(data)
            if len(data) < pos - start:
                self.truncated = True
                return
            pos = start
            parts = (data + tail).split(b"\n")
            tail = parts[0]
            for index in range(len(parts) - 1, 0, -1):
                if last:
                    last = False
                    if parts[index]:
                        yield parts[index], False
                    continue
                yield parts[index], True
        if tail:
            yield tail, not last


REQUIRED_FIELDS = ("msec", "app", "upstream", "status", "request_time")


def parse_entry(line):
    """One log line -> (msec, app, upstream, status, request_time_ms, canary_header), or None when unreadable."""
    parsed = parse_line(line)
    return parsed[0] if parsed else None


def split_attempts(value):
    """The servers nginx tried for a request, in order, from ``$upstream_addr``: attempts are separated by ", "
    (an internal redirect starts a new group after " : "; the last group is the one that answered)."""
    if not isinstance(value, str):
        return []
    return [part.strip() for part in value.split(" : ")[-1].split(",") if part.strip()]


def is_failover(servers, own=None, others=None):
    """Whether a request of one side needed another server: nginx tried more than one, or one of the other color's
    servers (a `backup` of this side's group) answered it. `own` and `others` are sets of host:port, or None."""
    if len(servers) > 1:
        return True
    return bool(servers) and others is not None and servers[-1] in others and servers[-1] not in (own or ())


def parse_line(line):
    """One log line -> (entry as parse_entry gives it, servers tried in order), or None when unreadable."""
    try:
        doc = json.loads(line)
    except UnicodeDecodeError:
        try:
            doc = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            return None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    msec, app, upstream, status, request_time = (doc.get(key) for key in REQUIRED_FIELDS)
    if not (_is_number(msec) and _is_number(status) and _is_number(request_time)):
        return None
    if not (isinstance(app, str) and isinstance(upstream, str)):
        return None
    if not (math.isfinite(msec) and math.isfinite(request_time)):
        return None
    header = doc.get("canary_header")
    entry = (float(msec), app, upstream, int(status), round(float(request_time) * 1000.0, 3), header if isinstance(header, str) else "")
    return entry, split_attempts(doc.get("upstream_addr"))


def nearest_rank(sorted_values, percent):
    """Nearest-rank percentile of ascending values: the smallest value with at least `percent` % of them at or below."""
    if not sorted_values:
        return None
    rank = max(1, int(math.ceil(percent / 100.0 * len(sorted_values))))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class SideStats:
    """Requests of one color in the window: counts and request times in ms."""

    def __init__(self, color):
        self.color = color
        self.times_ms = []
        self.errors = 0
        self.failovers = 0

    def add(self, status, request_time_ms, failover=False):
        self.times_ms.append(request_time_ms)
        if status >= 500:
            self.errors += 1
        if failover:
            self.failovers += 1

    def summary(self):
        """requests, errors (status >= 500), error_rate, failovers (requests another server had to take), p50_ms, p95_ms,
        p99_ms (nearest rank), avg_ms; None when empty."""
        requests = len(self.times_ms)
        ordered = sorted(self.times_ms)
        result = {
            "color": self.color,
            "requests": requests,
            "errors": self.errors,
            "error_rate": round(self.errors / float(requests), 6) if requests else None,
            "failovers": self.failovers,
        }
        for percent in PERCENTILES:
            result["p%d_ms" % percent] = nearest_rank(ordered, percent)
        result["avg_ms"] = round(sum(ordered) / requests, 3) if requests else None
        return result


class Scan:
    """What one backwards pass over the log found."""

    def __init__(self, stable_color, canary_color):
        self.stable = SideStats(stable_color)
        self.canary = SideStats(canary_color)
        self.unreadable_lines = 0
        self.synthetic_excluded = 0
        self.other_requests = 0
        self.lines_read = 0
        self.bytes_read = 0
        self.files = []
        self.truncated = False
        self.stopped_early = False

    def report(self):
        return {
            "files": list(self.files),
            "bytes_read": self.bytes_read,
            "lines_read": self.lines_read,
            "stopped_early": self.stopped_early,
            "truncated": self.truncated,
            "synthetic_excluded": self.synthetic_excluded,
            "other_requests": self.other_requests,
        }


def _rotated_generation(path):
    """`<path>.1` when it is a plain (not compressed) file: the generation before a logrotate."""
    older = path + ".1"
    if not os.path.isfile(older):
        return None
    try:
        with open_binary(older) as handle:
            if handle.read(2) == _GZIP_MAGIC:
                return None
    except OSError:
        return None
    return older


def scan_log(path, app, stable_color, canary_color, since, until, until_open=False, exclude_synthetic=True,
             disorder_s=DISORDER_S, block_size=BLOCK_SIZE, follow_rotated=True, members=None):
    """Reads the entries of `app` with `since <= msec <= until` backwards from the end of `path` -> Scan.

    Stops at the first readable entry with `msec < since - disorder_s`. When the start of the file comes first and
    `follow_rotated` is set, goes on into `<path>.1` (see _rotated_generation). Unreadable lines count when they sit
    next to an entry of the window (or at the live end of the log when `until_open`). `members` ({color: [host:port]})
    lets a request that the other color's servers answered count as a failover (see is_failover).
    """
    scan = Scan(stable_color, canary_color)
    sides = {upstream_name(app, stable_color): scan.stable, upstream_name(app, canary_color): scan.canary}
    servers_of = dict((color, set(members[color])) for color in (stable_color, canary_color) if members and color in members)
    known = {}
    if len(servers_of) == 2:
        known = {upstream_name(app, stable_color): (servers_of[stable_color], servers_of[canary_color]),
                 upstream_name(app, canary_color): (servers_of[canary_color], servers_of[stable_color])}
    stop_before = since - disorder_s
    newer_in_window = until_open  # whether the nearest newer readable entry is in the window
    pending = 0  # unreadable lines since that entry
    current = path
    while current is not None:
        with open_binary(current) as handle:
            scan.files.append(current)
            reader = ReverseLines(handle, os.fstat(handle.fileno()).st_size, block_size)
            for line, complete in reader:
                scan.lines_read += 1
                parsed = parse_line(line)
                if parsed is None:
                    if complete and line.strip():
                        pending += 1
                    continue
                entry, servers = parsed
                msec = entry[0]
                in_window = since <= msec <= until
                if pending:
                    if in_window or newer_in_window:
                        scan.unreadable_lines += pending
                    pending = 0
                newer_in_window = in_window
                if msec < stop_before:
                    scan.stopped_early = True
                    break
                if not in_window or entry[1] != app:
                    continue
                side = sides.get(entry[2])
                if side is None:
                    scan.other_requests += 1
                elif exclude_synthetic and entry[5] == SYNTHETIC_HEADER:
                    scan.synthetic_excluded += 1
                else:
                    side.add(entry[3], entry[4], is_failover(servers, *known.get(entry[2], (None, None))))
            scan.bytes_read += reader.bytes_read
            scan.truncated = scan.truncated or reader.truncated
        if scan.stopped_early or not follow_rotated or current != path:
            break
        current = _rotated_generation(path)
    if pending and newer_in_window:
        scan.unreadable_lines += pending
    return scan


# --- judging ------------------------------------------------------------------------------


def _ms(value):
    return "%d" % value if float(value).is_integer() else "%.1f" % value


def _pct(rate, other=None):
    """A rate as a percentage; with more digits when `other` would print the same."""
    for digits in (1, 2, 3, 4):
        text = "%.*f %%" % (digits, rate * 100)
        if other is None or rate == other or text != "%.*f %%" % (digits, other * 100):
            return text
    return text


def judge(stable, canary, limits):
    """(verdict, reasons) for the canary from two SideStats summaries and validated limits."""
    minimum = max(int(limits["min_requests"]), 1)
    if canary["requests"] < minimum:
        policy = limits["insufficient_data"]
        return policy, ["canary %s has %d requests in the window, fewer than min_requests %d: verdict %s (insufficient_data=%s)"
                        % (canary["color"], canary["requests"], minimum, policy, policy)]
    notes, failures, held = [], [], []
    stable_ok = stable["requests"] >= minimum
    max_p95 = limits["max_p95_ms"]
    if not stable_ok:
        notes.append("stable %s has %d requests in the window, fewer than min_requests %d: the relative limits fall back to "
                     "the absolute ones (max_error_rate%s)"
                     % (stable["color"], stable["requests"], minimum,
                        ", max_p95_ms" if max_p95 is not None else "; no latency limit without max_p95_ms"))

    rate = canary["errors"] / float(canary["requests"])
    if stable_ok:
        relative = limits["error_rate_factor"] * stable["errors"] / float(stable["requests"])
        limit = max(limits["max_error_rate"], relative)
        basis = "max of max_error_rate %s and %g × stable 5xx rate %s" % (
            _pct(limits["max_error_rate"]), limits["error_rate_factor"], _pct(stable["errors"] / float(stable["requests"])))
    else:
        limit = limits["max_error_rate"]
        basis = "max_error_rate"
    if rate > limit:
        failures.append("canary 5xx rate %s over %d requests > limit %s (%s)" % (_pct(rate, limit), canary["requests"], _pct(limit, rate), basis))
    else:
        held.append("5xx rate %s ≤ limit %s (%s)" % (_pct(rate, limit), _pct(limit, rate), basis))

    # Failovers are judged like 5xx answers, and only spoken of when there were some.
    canary_failovers, stable_failovers = canary.get("failovers") or 0, (stable.get("failovers") or 0) if stable_ok else 0
    if canary_failovers or stable_failovers:
        rate = canary_failovers / float(canary["requests"])
        if stable_ok:
            stable_rate = stable_failovers / float(stable["requests"])
            limit = max(limits["max_error_rate"], limits["error_rate_factor"] * stable_rate)
            basis = "max of max_error_rate %s and %g × stable failover rate %s" % (
                _pct(limits["max_error_rate"]), limits["error_rate_factor"], _pct(stable_rate))
        else:
            limit, basis = limits["max_error_rate"], "max_error_rate"
        if rate > limit:
            failures.append("canary failover rate %s over %d requests > limit %s (%s): nginx had to retry %d of them on another "
                            "server because the canary refused, reset or timed out, or was marked down"
                            % (_pct(rate, limit), canary["requests"], _pct(limit, rate), basis, canary_failovers))
        else:
            held.append("failover rate %s ≤ limit %s (%s)" % (_pct(rate, limit), _pct(limit, rate), basis))

    p95 = canary["p95_ms"]
    if stable_ok:
        limit = round(limits["p95_factor"] * stable["p95_ms"] + limits["p95_slack_ms"], 3)
        basis = "%g × stable p95 %s ms + %s ms" % (limits["p95_factor"], _ms(stable["p95_ms"]), _ms(limits["p95_slack_ms"]))
        if p95 > limit:
            failures.append("canary p95 %s ms > limit %s ms (%s)" % (_ms(p95), _ms(limit), basis))
        else:
            held.append("p95 %s ms ≤ limit %s ms (%s)" % (_ms(p95), _ms(limit), basis))
    if max_p95 is not None:
        if p95 > max_p95:
            failures.append("canary p95 %s ms > max_p95_ms %s ms" % (_ms(p95), _ms(max_p95)))
        else:
            held.append("p95 %s ms ≤ max_p95_ms %s ms" % (_ms(p95), _ms(max_p95)))
    if failures:
        return "fail", failures + notes
    return "pass", ["canary %s held over %d requests: %s" % (canary["color"], canary["requests"], ", ".join(held))] + notes


# --- the whole analysis -------------------------------------------------------------------


def validate_log_path(path):
    if not path:
        raise ValidationError("log_path must be given.")
    if not os.path.exists(path):
        raise ValidationError("log_path %s does not exist." % path)
    if not os.path.isfile(path):
        raise ValidationError("log_path %s is not a file." % path)
    return path


def validate_members(members):
    """{color: [host:port, ...]} for the colors given, or None."""
    if members is None:
        return None
    if not isinstance(members, dict):
        raise ValidationError("members must map blue and green to lists of host:port servers.")
    clean = {}
    for color, servers in members.items():
        validate_color(color, "members color")
        if isinstance(servers, str):
            servers = [servers]
        if not isinstance(servers, (list, tuple)):
            raise ValidationError("members of %s must be a list of host:port servers." % color)
        clean[color] = [validate_server(server) for server in servers]
    return clean


def analyse(log_path, app, stable_color, canary_color, since=None, window_s=None, until=None, limits=None,
            exclude_synthetic=True, now=None, disorder_s=DISORDER_S, block_size=BLOCK_SIZE, members=None):
    """Judges the canary color of `app` on the LB log `log_path` over a window -> the module's result (without `changed`).

    The window is `since` (epoch seconds or ISO 8601) or the `window_s` seconds up to `until` (default: now).
    `limits` overrides DEFAULT_LIMITS. `members` ({color: [host:port]}, the upstream servers of each color) lets a request
    that the other color answered count as a failover. Raises ValidationError (one sentence) for bad arguments, OSError when the log
    cannot be read.
    """
    app = validate_app_name(app)
    validate_color(stable_color, "stable_color")
    validate_color(canary_color, "canary_color")
    if stable_color == canary_color:
        raise ValidationError("stable_color and canary_color are both %s: they must differ." % stable_color)
    limits = validate_limits(limits)
    members = validate_members(members)
    start, end, until_open = resolve_window(since, window_s, until, now)
    validate_log_path(log_path)

    scan = scan_log(log_path, app, stable_color, canary_color, start, end, until_open=until_open,
                    exclude_synthetic=exclude_synthetic, disorder_s=disorder_s, block_size=block_size, members=members)
    stable, canary = scan.stable.summary(), scan.canary.summary()
    verdict, reasons = judge(stable, canary, limits)
    msg = "canary %s of %s vs stable %s from %s to %s: %s. %s." % (
        canary_color, app, stable_color, iso_from_epoch(start), iso_from_epoch(end), verdict, "; ".join(reasons))
    return {
        "verdict": verdict,
        "passed": verdict == "pass",
        "reasons": reasons,
        "stable": stable,
        "canary": canary,
        "unreadable_lines": scan.unreadable_lines,
        "window": {"since": round(start, 3), "until": round(end, 3), "since_iso": iso_from_epoch(start), "until_iso": iso_from_epoch(end)},
        "limits": limits,
        "scan": scan.report(),
        "msg": msg,
    }
