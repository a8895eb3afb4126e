"""Canary analysis of module_utils/traffic.py on crafted access logs in tmp_path."""

import gzip
import json
import os
import time

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import traffic
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.traffic import (
    ReverseLines,
    SideStats,
    analyse,
    judge,
    nearest_rank,
    parse_entry,
    parse_time,
    resolve_window,
    scan_log,
    validate_limits,
)

NOW = 1700000000.0  # 2023-11-14T22:13:20Z


def entry(msec, color="blue", status=200, ms=10.0, app="demo", header="", uri="/api/v1/tasks"):
    """One line as the LB's leanvibe_json log format writes it."""
    return json.dumps({
        "time": "2023-11-14T22:13:20+00:00", "msec": round(msec, 3), "app": app, "remote_addr": "127.0.0.1",
        "method": "GET", "uri": uri, "status": status, "bytes_sent": 42, "request_time": round(ms / 1000.0, 3),
        "upstream": "leanvibe_%s_%s" % (app, color) if color else "", "upstream_addr": "127.0.0.1:9001",
        "upstream_status": str(status), "upstream_response_time": "%.3f" % (ms / 1000.0), "canary_header": header,
    }, separators=(",", ":"))


def side(color, count, errors=0, times=None, start=NOW - 50, step=0.1, header=""):
    """`count` lines of one color from `start`, the first `errors` of them 500s; `times` (ms) cycles."""
    times = times or [10.0]
    return [(start + index * step, entry(start + index * step, color, 500 if index < errors else 200, times[index % len(times)],
                                         header=header)) for index in range(count)]


def write_log(path, *groups, extra=()):
    """Writes the lines of `groups` ((msec, line) pairs) sorted by msec, then `extra` raw lines."""
    pairs = sorted(pair for group in groups for pair in group)
    with open(str(path), "w", encoding="utf-8") as handle:
        for _msec, line in pairs:
            handle.write(line + "\n")
        for line in extra:
            handle.write(line + "\n")
    return str(path)


def run(path, **kwargs):
    args = dict(app="demo", stable_color="blue", canary_color="green", window_s=120, now=NOW)
    limits = {key: kwargs.pop(key) for key in list(kwargs) if key in traffic.DEFAULT_LIMITS}
    args.update(kwargs)
    if "since" in args:
        args.pop("window_s")
    return analyse(path, limits=limits, **args)


@pytest.fixture
def log(tmp_path):
    return tmp_path / "demo.access.log"


# --- percentiles and summaries ------------------------------------------------------------


@pytest.mark.parametrize("values, percent, expected", [
    (list(range(1, 101)), 50, 50),
    (list(range(1, 101)), 95, 95),
    (list(range(1, 101)), 99, 99),
    (list(range(1, 11)), 50, 5),
    (list(range(1, 11)), 95, 10),
    (list(range(1, 11)), 99, 10),
    ([15, 20, 35, 40, 50], 30, 20),  # rank ceil(1.5) = 2
    ([15, 20, 35, 40, 50], 40, 20),  # rank 2 exactly
    ([15, 20, 35, 40, 50], 100, 50),
    ([7], 99, 7),
    ([], 95, None),
])
def test_nearest_rank_percentiles(values, percent, expected):
    assert nearest_rank(values, percent) == expected


def test_side_summary_on_known_data():
    stats = SideStats("green")
    for index, ms in enumerate([5.0, 1.0, 3.0, 2.0, 4.0, 100.0, 6.0, 7.0, 8.0, 9.0]):
        stats.add(503 if index == 0 else (404 if index == 1 else 200), ms)
    assert stats.summary() == {"color": "green", "requests": 10, "errors": 1, "error_rate": 0.1, "failovers": 0,
                               "p50_ms": 5.0, "p95_ms": 100.0, "p99_ms": 100.0, "avg_ms": 14.5}
    assert SideStats("blue").summary() == {"color": "blue", "requests": 0, "errors": 0, "error_rate": None, "failovers": 0,
                                           "p50_ms": None, "p95_ms": None, "p99_ms": None, "avg_ms": None}


def test_percentiles_from_the_log(log):
    path = write_log(log, side("green", 100, times=[float(ms) for ms in range(1, 101)]), side("blue", 40))
    canary = run(path)["canary"]
    assert (canary["p50_ms"], canary["p95_ms"], canary["p99_ms"], canary["avg_ms"]) == (50.0, 95.0, 99.0, 50.5)


# --- thresholds ---------------------------------------------------------------------------


def test_absolute_error_rate_exceeded_fails(log):
    result = run(write_log(log, side("blue", 200), side("green", 140, errors=40)))
    assert result["verdict"] == "fail" and result["passed"] is False
    assert result["canary"]["requests"] == 140 and result["canary"]["errors"] == 40
    assert result["reasons"] == ["canary 5xx rate 28.6 % over 140 requests > limit 1.0 % "
                                 "(max of max_error_rate 1.0 % and 2 × stable 5xx rate 0.0 %)"]


def test_error_rate_at_the_limit_passes_and_says_what_held(log):
    result = run(write_log(log, side("blue", 200, times=[120.0]), side("green", 100, errors=1, times=[80.0])))
    assert result["verdict"] == "pass" and result["passed"] is True
    assert result["reasons"] == ["canary green held over 100 requests: 5xx rate 1.0 % ≤ limit 1.0 % "
                                 "(max of max_error_rate 1.0 % and 2 × stable 5xx rate 0.0 %), "
                                 "p95 80 ms ≤ limit 230 ms (1.5 × stable p95 120 ms + 50 ms)"]


def test_close_rates_are_printed_with_enough_digits(log):
    result = run(write_log(log, side("blue", 200), side("green", 990, errors=10, step=0.01)), max_error_rate=0.01)
    assert result["verdict"] == "fail"
    assert result["reasons"][0].startswith("canary 5xx rate 1.01 % over 990 requests > limit 1.00 %")


def test_client_errors_are_not_errors(log):
    lines = [(NOW - 10 + index * 0.01, entry(NOW - 10 + index * 0.01, "green", status)) for index, status in
             enumerate([404, 499, 401, 200] * 25)]
    result = run(write_log(log, side("blue", 100), lines))
    assert result["canary"]["errors"] == 0 and result["verdict"] == "pass"


def test_error_rate_relative_to_stable(log):
    # stable 5 %: the canary may reach max(1 %, 2 × 5 %) = 10 %
    held = run(write_log(log, side("blue", 200, errors=10), side("green", 100, errors=8)))
    assert held["verdict"] == "pass", held["reasons"]
    assert "5xx rate 8.0 % ≤ limit 10.0 % (max of max_error_rate 1.0 % and 2 × stable 5xx rate 5.0 %)" in held["reasons"][0]
    failed = run(write_log(log, side("blue", 200, errors=10), side("green", 100, errors=12)))
    assert failed["reasons"] == ["canary 5xx rate 12.0 % over 100 requests > limit 10.0 % "
                                 "(max of max_error_rate 1.0 % and 2 × stable 5xx rate 5.0 %)"]
    stricter = run(write_log(log, side("blue", 200, errors=10), side("green", 100, errors=8)), error_rate_factor=1.0)
    assert stricter["verdict"] == "fail"
    assert "> limit 5.0 % (max of max_error_rate 1.0 % and 1 × stable 5xx rate 5.0 %)" in stricter["reasons"][0]


def test_latency_relative_to_stable(log):
    stable = side("blue", 100, times=[50.0] * 9 + [120.0])  # p95 = 120 ms
    failed = run(write_log(log, stable, side("green", 140, times=[50.0] * 9 + [412.0])))
    assert failed["stable"]["p95_ms"] == 120.0 and failed["canary"]["p95_ms"] == 412.0
    assert failed["verdict"] == "fail"
    assert failed["reasons"] == ["canary p95 412 ms > limit 230 ms (1.5 × stable p95 120 ms + 50 ms)"]
    at_limit = run(write_log(log, stable, side("green", 140, times=[50.0] * 9 + [230.0])))
    assert at_limit["verdict"] == "pass", at_limit["reasons"]
    tuned = run(write_log(log, stable, side("green", 140, times=[50.0] * 9 + [230.0])), p95_factor=1.0, p95_slack_ms=10)
    assert tuned["reasons"] == ["canary p95 230 ms > limit 130 ms (1 × stable p95 120 ms + 10 ms)"]


def test_absolute_latency_limit(log):
    path = write_log(log, side("blue", 100, times=[200.0]), side("green", 100, times=[210.0]))
    assert run(path)["verdict"] == "pass"
    result = run(path, max_p95_ms=150)
    assert result["verdict"] == "fail"
    assert result["reasons"] == ["canary p95 210 ms > max_p95_ms 150 ms"]
    assert "p95 210 ms ≤ max_p95_ms 300 ms" in run(path, max_p95_ms=300)["reasons"][0]


def test_errors_and_latency_both_reported(log):
    result = run(write_log(log, side("blue", 100, times=[100.0]), side("green", 100, errors=50, times=[900.0])))
    assert [reason.split(" >")[0] for reason in result["reasons"]] == ["canary 5xx rate 50.0 % over 100 requests", "canary p95 900 ms"]


# --- too little data ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["inconclusive", "fail", "pass"])
def test_too_few_canary_requests_follow_the_policy(log, policy):
    result = run(write_log(log, side("blue", 200), side("green", 7, errors=7)), insufficient_data=policy)
    assert result["verdict"] == policy and result["passed"] is (policy == "pass")
    assert result["reasons"] == ["canary green has 7 requests in the window, fewer than min_requests 20: "
                                 "verdict %s (insufficient_data=%s)" % (policy, policy)]


def test_default_policy_is_inconclusive_and_min_requests_is_configurable(log):
    path = write_log(log, side("blue", 200), side("green", 7))
    assert run(path)["verdict"] == "inconclusive"
    assert run(path, min_requests=5)["verdict"] == "pass"


def test_no_canary_requests_is_insufficient_even_with_min_requests_zero(log):
    result = run(write_log(log, side("blue", 200)), min_requests=0)
    assert result["verdict"] == "inconclusive"
    assert result["canary"]["requests"] == 0 and result["canary"]["p95_ms"] is None
    assert "fewer than min_requests 1" in result["reasons"][0]


def test_too_few_stable_requests_fall_back_to_absolute_limits(log):
    # stable has 5 requests with 60 % errors and slow times: relative limits would let anything through.
    stable = side("blue", 5, errors=3, times=[5000.0])
    result = run(write_log(log, stable, side("green", 100, errors=5, times=[900.0])))
    assert result["verdict"] == "fail"
    assert result["reasons"] == [
        "canary 5xx rate 5.0 % over 100 requests > limit 1.0 % (max_error_rate)",
        "stable blue has 5 requests in the window, fewer than min_requests 20: the relative limits fall back to "
        "the absolute ones (max_error_rate; no latency limit without max_p95_ms)",
    ]
    slow = run(write_log(log, stable, side("green", 100, times=[900.0])))
    assert slow["verdict"] == "pass"
    assert slow["reasons"][0] == "canary green held over 100 requests: 5xx rate 0.0 % ≤ limit 1.0 % (max_error_rate)"
    assert "fall back" in slow["reasons"][1]
    capped = run(write_log(log, stable, side("green", 100, times=[900.0])), max_p95_ms=500)
    assert capped["reasons"][0] == "canary p95 900 ms > max_p95_ms 500 ms"
    assert capped["reasons"][1].endswith("(max_error_rate, max_p95_ms)")


# --- what counts --------------------------------------------------------------------------


def test_synthetic_requests_are_excluded_by_default(log):
    probes = side("green", 50, errors=50, header="always", start=NOW - 30)
    path = write_log(log, side("blue", 100), side("green", 100), probes)
    result = run(path)
    assert result["verdict"] == "pass" and result["canary"]["requests"] == 100
    assert result["scan"]["synthetic_excluded"] == 50
    included = run(path, exclude_synthetic=False)
    assert included["verdict"] == "fail" and included["canary"]["requests"] == 150 and included["canary"]["errors"] == 50
    # Only the exact value the LB's Lua pins on is synthetic.
    other_header = write_log(log, side("blue", 100), side("green", 100, errors=3, header="yes"))
    assert run(other_header)["canary"]["requests"] == 100


def test_other_apps_and_unrouted_requests_are_not_counted(log):
    other_app = [(NOW - 20 + index * 0.1, entry(NOW - 20 + index * 0.1, "green", 500, app="shop")) for index in range(30)]
    unrouted = [(NOW - 20 + index * 0.1, entry(NOW - 20 + index * 0.1, None, 500)) for index in range(4)]
    result = run(write_log(log, side("blue", 100), side("green", 100), other_app, unrouted))
    assert result["canary"]["requests"] == 100 and result["stable"]["requests"] == 100
    assert result["scan"]["other_requests"] == 4
    assert result["verdict"] == "pass"


def test_swapped_colors(log):
    result = analyse(write_log(log, side("blue", 100, errors=40), side("green", 100)), "demo", "green", "blue", window_s=120, now=NOW)
    assert result["canary"]["color"] == "blue" and result["verdict"] == "fail"


def test_unreadable_lines_are_counted_never_fatal(log):
    bad = ["not json at all", "[1, 2, 3]", '"a string"', '{"msec": %s, "app": "demo"}' % (NOW - 5),
           '{"msec": %s, "app": "demo", "upstream": "leanvibe_demo_green", "status": "-", "request_time": 0.1}' % (NOW - 5),
           '{"msec": "soon", "app": "demo", "upstream": "leanvibe_demo_green", "status": 200, "request_time": 0.1}',
           '{"msec": %s, "app": "demo", "upstream": "leanvibe_demo_green", "status": 200, "request_time": 0.1' % (NOW - 5),
           "\x00\xff garbage"]
    # Garbage between entries of the disorder margin, or older than where reading stops, is not the window's.
    old_garbage = [(NOW - 1000, entry(NOW - 1000, "blue")), (NOW - 999, "old garbage, before the window"),
                   (NOW - 998, entry(NOW - 998, "blue")), (NOW - 123, entry(NOW - 123, "blue")),
                   (NOW - 122.5, "garbage in the margin"), (NOW - 122, entry(NOW - 122, "blue"))]
    pairs = side("blue", 100) + side("green", 100) + [(NOW - 40 + index, line) for index, line in enumerate(bad)]
    path = write_log(log, old_garbage, pairs, extra=[""])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n\n")
        handle.write('{"msec": %s, "app": "demo", "upstr' % NOW)  # a line nginx is still writing
    result = run(path)
    assert result["unreadable_lines"] == len(bad)
    assert result["canary"]["requests"] == 100 and result["verdict"] == "pass"


def test_invalid_utf8_in_a_field_is_still_read(log):
    line = entry(NOW - 5, "green").replace("/api/v1/tasks", "/api/\udcff").encode("utf-8", "surrogateescape")
    path = str(log)
    with open(path, "wb") as handle:
        for _msec, text in side("blue", 30) + side("green", 30):
            handle.write(text.encode() + b"\n")
        handle.write(line + b"\n")
    result = run(path)
    assert result["canary"]["requests"] == 31 and result["unreadable_lines"] == 0


@pytest.mark.parametrize("line, expected", [
    (entry(NOW, "green", 502, 12.0, header="always").encode(), (NOW, "demo", "leanvibe_demo_green", 502, 12.0, "always")),
    (b'{"msec":1.5,"app":"a","upstream":"u","status":200,"request_time":0.001}', (1.5, "a", "u", 200, 1.0, "")),
    (b'{"msec":true,"app":"a","upstream":"u","status":200,"request_time":0.001}', None),
    (b'{"msec":1.5,"app":"a","upstream":null,"status":200,"request_time":0.001}', None),
    (b'{"msec":1.5,"app":"a","upstream":"u","status":200,"request_time":NaN}', None),
    (b"", None),
])
def test_parse_entry(line, expected):
    assert parse_entry(line) == expected


# --- window -------------------------------------------------------------------------------


def test_window_boundaries_are_inclusive(log):
    since, until = NOW - 100, NOW - 40
    times = [since - 0.001, since, since + 10, until - 10, until, until + 0.001]
    path = write_log(log, [(msec, entry(msec, "green")) for msec in times])
    result = run(path, since=since, until=until, min_requests=1)
    assert result["canary"]["requests"] == 4
    assert result["window"]["since"] == since and result["window"]["until"] == until
    assert result["window"]["since_iso"] == "2023-11-14T22:11:40.000Z"


def test_window_s_counts_back_from_now_or_until(log):
    path = write_log(log, [(NOW - offset, entry(NOW - offset, "green")) for offset in range(0, 200)])
    assert run(path, window_s=60, min_requests=1)["canary"]["requests"] == 61
    result = run(path, window_s=30, until=NOW - 100, min_requests=1)
    assert result["canary"]["requests"] == 31
    assert result["window"] == {"since": NOW - 130, "until": NOW - 100, "since_iso": "2023-11-14T22:11:10.000Z",
                                "until_iso": "2023-11-14T22:11:40.000Z"}


def test_since_as_iso_and_string_epoch(log):
    path = write_log(log, [(NOW - offset, entry(NOW - offset, "green")) for offset in range(0, 200)])
    iso = run(path, since="2023-11-14T22:12:20Z", min_requests=1)  # NOW - 60
    offset = run(path, since="2023-11-14T23:12:20+01:00", min_requests=1)
    naive = run(path, since="2023-11-14T22:12:20", min_requests=1)
    number = run(path, since="%r" % (NOW - 60), min_requests=1)
    assert [result["canary"]["requests"] for result in (iso, offset, naive, number)] == [61] * 4


def test_lines_a_few_seconds_out_of_order_are_counted(log):
    since = NOW - 60
    order = [since - 30, since - 20, since - 3, since + 1, since - 4.5, since + 0.5, since - 2, since + 2]
    order += [since + 10 + index for index in range(20)]
    with open(str(log), "w", encoding="utf-8") as handle:
        for msec in order:
            handle.write(entry(msec, "green") + "\n")
    result = run(str(log), since=since, min_requests=1)
    assert result["canary"]["requests"] == 23  # since + 1, + 0.5, + 2 and the 20 later ones
    assert result["scan"]["stopped_early"] is True
    strict = scan_log(str(log), "demo", "blue", "green", since, NOW, disorder_s=0.0)
    assert len(strict.canary.times_ms) == 21  # without the margin the scan stops at since - 4.5 and misses two


def test_empty_log_is_insufficient_data(log):
    log.write_text("")
    result = run(str(log))
    assert result["verdict"] == "inconclusive" and result["unreadable_lines"] == 0
    assert result["scan"]["bytes_read"] == 0


# --- reading backwards --------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 65536])
@pytest.mark.parametrize("content, expected", [
    (b"a\nbb\nccc\n", [(b"ccc", True), (b"bb", True), (b"a", True)]),
    (b"a\nbb\nccc", [(b"ccc", False), (b"bb", True), (b"a", True)]),
    (b"\n\nx\n", [(b"x", True), (b"", True)]),
    (b"only", [(b"only", False)]),
    (b"", []),
    (b"\n", []),
])
def test_reverse_lines(tmp_path, block_size, content, expected):
    path = tmp_path / "f"
    path.write_bytes(content)
    with open(str(path), "rb") as handle:
        reader = ReverseLines(handle, len(content), block_size)
        assert list(reader) == expected
        assert reader.bytes_read == len(content) and reader.truncated is False


class CountingFile:
    """A binary file that counts the bytes read from it."""

    total = 0

    def __init__(self, path):
        self.handle = open(path, "rb")

    def read(self, size=-1):
        data = self.handle.read(size)
        CountingFile.total += len(data)
        return data

    def seek(self, offset):
        return self.handle.seek(offset)

    def fileno(self):
        return self.handle.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """200,000 lines, 10 a second, ending at NOW: a 60 s window holds 600 of them."""
    path = tmp_path_factory.mktemp("big") / "demo.access.log"
    start = NOW - 20000
    with open(str(path), "w", encoding="utf-8") as handle:
        for index in range(200000):
            msec = start + (index + 1) * 0.1
            handle.write(entry(msec, "green" if index % 10 == 0 else "blue", 200, 5.0 + index % 7) + "\n")
    return str(path)


def test_backwards_reader_stops_early_on_a_big_log(big_log, monkeypatch):
    monkeypatch.setattr(traffic, "open_binary", CountingFile)
    size = os.path.getsize(big_log)
    CountingFile.total = 0
    result = analyse(big_log, "demo", "blue", "green", window_s=60, now=NOW)
    window_bytes = CountingFile.total
    assert result["stable"]["requests"] + result["canary"]["requests"] == 601  # both ends are inclusive
    assert result["scan"]["stopped_early"] is True and result["scan"]["bytes_read"] == window_bytes
    assert window_bytes < size / 100, (window_bytes, size)  # 600 + 50 margin lines of 200,000, in 64 KiB blocks

    CountingFile.total = 0
    full = analyse(big_log, "demo", "blue", "green", since=0, now=NOW)
    assert CountingFile.total == size and full["stable"]["requests"] + full["canary"]["requests"] == 200000


def test_windowed_analysis_is_much_faster_than_a_full_scan(big_log):
    def best_of(count, **window):
        timings = []
        for _attempt in range(count):
            started = time.perf_counter()
            analyse(big_log, "demo", "blue", "green", now=NOW, **window)
            timings.append(time.perf_counter() - started)
        return min(timings)

    windowed = best_of(5, window_s=60)
    full = best_of(2, since=0)
    assert windowed * 20 < full, (windowed, full)


def test_rotated_log_continues_into_the_previous_generation(tmp_path):
    current = tmp_path / "demo.access.log"
    write_log(tmp_path / "demo.access.log.1", [(NOW - 300 + index, entry(NOW - 300 + index, "green")) for index in range(260)])
    write_log(current, [(NOW - 40 + index, entry(NOW - 40 + index, "green")) for index in range(41)])
    result = run(str(current), window_s=60, min_requests=1)
    assert result["canary"]["requests"] == 61
    assert result["scan"]["files"] == [str(current), str(current) + ".1"]
    assert result["scan"]["stopped_early"] is True


def test_compressed_previous_generation_is_skipped(tmp_path):
    current = tmp_path / "demo.access.log"
    with gzip.open(str(tmp_path / "demo.access.log.1"), "wt") as handle:
        handle.write(entry(NOW - 50, "green") + "\n")
    write_log(current, [(NOW - 40 + index, entry(NOW - 40 + index, "green")) for index in range(41)])
    result = run(str(current), window_s=60, min_requests=1)
    assert result["canary"]["requests"] == 41 and result["scan"]["files"] == [str(current)]
    assert result["unreadable_lines"] == 0


def test_fresh_log_after_rotation_without_previous_generation(tmp_path):
    current = tmp_path / "demo.access.log"
    write_log(current, side("green", 5))
    result = run(str(current))
    assert result["verdict"] == "inconclusive" and result["scan"]["stopped_early"] is False


def test_log_truncated_while_reading_ends_quietly(log, monkeypatch):
    path = write_log(log, side("blue", 3000, step=0.01), side("green", 3000, step=0.01))

    class Shrinking(CountingFile):
        calls = 0

        def read(self, size=-1):
            Shrinking.calls += 1
            return super().read(size)[: 0 if Shrinking.calls > 1 else None]  # emptied after the first block

    monkeypatch.setattr(traffic, "open_binary", Shrinking)
    result = run(path, block_size=4096)
    assert result["scan"]["truncated"] is True
    assert 0 < result["stable"]["requests"] + result["canary"]["requests"] < 100


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (1700000000, 1700000000.0),
    (1700000000.25, 1700000000.25),
    (" 1700000000.5 ", 1700000000.5),
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T22:13:20.500+00:00", NOW + 0.5),
    ("2023-11-14T23:13:20+01:00", NOW),
    ("2023-11-14T22:13:20", NOW),
])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "", "  ", "2023-13-45", True, None, [1], "nan", "inf", -5])
def test_parse_time_refuses(value):
    with pytest.raises(ValidationError, match="^since "):
        parse_time(value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(since=NOW - 10, window_s=10), "give either since or window_s, not both."),
    (dict(), "give since (the window's start) or window_s (the last N seconds)."),
    (dict(window_s=0), "window_s must be a positive number of seconds, not 0."),
    (dict(window_s=-5.0), "window_s must be a positive number of seconds, not -5.0."),
    (dict(since=NOW, until=NOW - 1), "since 2023-11-14T22:13:20.000Z is after until 2023-11-14T22:13:19.000Z."),
    (dict(window_s=5, until="later"), "until 'later' is neither epoch seconds nor an ISO 8601 time."),
])
def test_resolve_window_refuses(kwargs, message):
    with pytest.raises(ValidationError) as exc:
        resolve_window(now=NOW, **kwargs)
    assert str(exc.value) == message


def test_resolve_window():
    assert resolve_window(window_s=60, now=NOW) == (NOW - 60, NOW, True)
    assert resolve_window(since=NOW - 5, until=NOW - 1, now=NOW) == (NOW - 5, NOW - 1, False)
    start, end, until_open = resolve_window(window_s=1)
    assert abs(end - time.time()) < 5 and end - start == pytest.approx(1) and until_open


@pytest.mark.parametrize("limits, message", [
    ({"max_error_rate": 1.5}, "max_error_rate must be a rate between 0 and 1, not 1.5."),
    ({"max_error_rate": -0.1}, "max_error_rate must be a rate between 0 and 1, not -0.1."),
    ({"max_error_rate": float("nan")}, "max_error_rate must be a rate between 0 and 1, not nan."),
    ({"error_rate_factor": -1.0}, "error_rate_factor must be a number not below 0, not -1.0."),
    ({"p95_factor": -0.5}, "p95_factor must be a number not below 0, not -0.5."),
    ({"p95_slack_ms": -1}, "p95_slack_ms must be a number not below 0, not -1."),
    ({"max_p95_ms": -1}, "max_p95_ms must be a number not below 0, not -1."),
    ({"min_requests": -1}, "min_requests must be a number not below 0, not -1."),
    ({"min_requests": 2.5}, "min_requests must be a whole number, not 2.5."),
    ({"p95_factor": float("inf")}, "p95_factor must be a number not below 0, not inf."),
    ({"insufficient_data": "maybe"}, "insufficient_data must be one of inconclusive, fail, pass, not 'maybe'."),
    ({"p99_factor": 1}, "unknown limit 'p99_factor'."),
])
def test_validate_limits_refuses(limits, message):
    with pytest.raises(ValidationError) as exc:
        validate_limits(limits)
    assert str(exc.value) == message


def test_validate_limits_defaults():
    assert validate_limits() == traffic.DEFAULT_LIMITS
    assert validate_limits({"max_p95_ms": None, "min_requests": 0})["min_requests"] == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(stable_color="green"), "stable_color and canary_color are both green: they must differ."),
    (dict(canary_color="red"), "canary_color 'red' is unknown: it must be one of blue, green."),
    (dict(app="Demo"), "app 'Demo' is not valid"),
])
def test_analyse_refuses_bad_arguments(log, kwargs, message):
    path = write_log(log, side("blue", 10))
    args = dict(app="demo", stable_color="blue", canary_color="green", window_s=60, now=NOW)
    args.update(kwargs)
    with pytest.raises(ValidationError) as exc:
        analyse(path, **args)
    assert str(exc.value).startswith(message)


def test_analyse_refuses_missing_or_folder_log_path(tmp_path):
    with pytest.raises(ValidationError, match="^log_path .*/nope.log does not exist.$"):
        analyse(str(tmp_path / "nope.log"), "demo", "blue", "green", window_s=60)
    with pytest.raises(ValidationError, match="^log_path .* is not a file.$"):
        analyse(str(tmp_path), "demo", "blue", "green", window_s=60)


def test_judge_on_summaries():
    stable = {"color": "blue", "requests": 100, "errors": 0, "p95_ms": 100.0}
    canary = {"color": "green", "requests": 100, "errors": 0, "p95_ms": 200.0}
    assert judge(stable, canary, validate_limits())[0] == "pass"
    assert judge(stable, dict(canary, p95_ms=200.5), validate_limits())[1] == [
        "canary p95 200.5 ms > limit 200 ms (1.5 × stable p95 100 ms + 50 ms)"]


# --- failovers: requests nginx retried on another server (proxy_next_upstream) -------------


MEMBERS = {"blue": ["127.0.0.1:9001"], "green": ["127.0.0.1:9002"]}


def served(msec, color, servers, statuses="", status=200):
    """A line of `color`'s upstream group that `servers` (", "-separated attempts) answered."""
    doc = json.loads(entry(msec, color, status))
    doc["upstream_addr"], doc["upstream_status"] = servers, statuses or str(status)
    return msec, json.dumps(doc)


def failover_log(log, retried=0, backup=0, canary=100):
    """100 stable requests and `canary` canary ones, of which `retried` went on to blue after green refused them and
    `backup` were answered by blue alone (green marked down)."""
    lines = [served(NOW - 50 + index * 0.1, "blue", "127.0.0.1:9001") for index in range(100)]
    for index in range(canary):
        msec = NOW - 49.95 + index * 0.1
        if index < retried:
            lines.append(served(msec, "green", "127.0.0.1:9002, 127.0.0.1:9001", "502, 200"))
        elif index < retried + backup:
            lines.append(served(msec, "green", "127.0.0.1:9001"))
        else:
            lines.append(served(msec, "green", "127.0.0.1:9002"))
    return write_log(log, lines)


def test_a_canary_that_failed_requests_over_to_stable_fails_though_no_client_saw_an_error(log):
    result = run(failover_log(log, retried=2, backup=38), members=MEMBERS)
    assert result["canary"]["errors"] == 0 and result["canary"]["failovers"] == 40
    assert result["verdict"] == "fail"
    assert result["reasons"] == ["canary failover rate 40.0 % over 100 requests > limit 1.0 % (max of max_error_rate 1.0 % and "
                                 "2 × stable failover rate 0.0 %): nginx had to retry 40 of them on another server because the "
                                 "canary refused, reset or timed out, or was marked down"]


def test_retried_requests_count_without_members_and_backup_answers_only_with_them(log):
    path = failover_log(log, retried=2, backup=38)
    assert run(path)["canary"]["failovers"] == 2
    assert run(path, members=MEMBERS)["canary"]["failovers"] == 40
    # A server of neither color (a name nginx resolved, say) is never taken for the other color.
    assert run(path, members={"blue": ["app1:9001"], "green": ["app1:9002"]})["canary"]["failovers"] == 2


def test_failovers_of_stable_do_not_blame_the_canary(log):
    lines = [served(NOW - 50 + index * 0.1, "blue", "127.0.0.1:9002") for index in range(30)]  # blue down, green's backup
    lines += [served(NOW - 47 + index * 0.1, "blue", "127.0.0.1:9001") for index in range(70)]
    lines += [served(NOW - 49.95 + index * 0.1, "green", "127.0.0.1:9002") for index in range(100)]
    result = run(write_log(log, lines), members=MEMBERS)
    assert (result["stable"]["failovers"], result["canary"]["failovers"]) == (30, 0)
    assert result["verdict"] == "pass"
    assert "failover rate 0.0 % ≤ limit 60.0 % (max of max_error_rate 1.0 % and 2 × stable failover rate 30.0 %)" in result["reasons"][0]


def test_a_few_failovers_within_the_limit_pass_and_say_so(log):
    result = run(failover_log(log, retried=1, canary=200), members=MEMBERS)
    assert result["verdict"] == "pass"
    assert "failover rate 0.5 % ≤ limit 1.0 %" in result["reasons"][0]


def test_no_failovers_are_not_mentioned(log):
    result = run(failover_log(log), members=MEMBERS)
    assert result["verdict"] == "pass" and "failover" not in result["reasons"][0]


@pytest.mark.parametrize("value, expected", [
    ("127.0.0.1:9002", ["127.0.0.1:9002"]),
    ("127.0.0.1:9002, 127.0.0.1:9001", ["127.0.0.1:9002", "127.0.0.1:9001"]),
    ("10.0.0.1:80 : 127.0.0.1:9002, 127.0.0.1:9001", ["127.0.0.1:9002", "127.0.0.1:9001"]),
    ("", []),
    (None, []),
])
def test_split_attempts(value, expected):
    assert traffic.split_attempts(value) == expected


@pytest.mark.parametrize("members, message", [
    ("x", "members must map blue and green"),
    ({"purple": ["a:1"]}, "members color 'purple' is unknown"),
    ({"blue": ["nope"]}, "upstream server 'nope' is not of the form host:port"),
    ({"blue": 5}, "members of blue must be a list"),
])
def test_analyse_refuses_bad_members(log, members, message):
    with pytest.raises(ValidationError, match=message):
        run(failover_log(log), members=members)
