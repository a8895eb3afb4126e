"""The monitoring dashboard in a real browser: headless Chromium against the real services, no mocks.

Processes: the demo service (a 2.2.0 release built by demo_service/build_release.py, run as
`python -m leanvibe_demo` on 127.0.0.1:PORT_BASE+21) and the monitoring service (`leanvibe-monitor --config monitor.yml`
on 127.0.0.1:PORT_BASE+20, a temp SQLite database) watching two environments: `staging` (the demo service) and
`offline` (a closed port: every round fails). The test posts deployment events
to /api/events and runs probe rounds through /api/run-probes, then reads what Chromium rendered: the DOM after
the page's scripts ran (`--dump-dom`) and a PNG (`--screenshot`), which is kept under the pytest temp dir.
Chromium is Debian's `chromium` package; the session installs it with apt-get when it is missing.
"""

import os
import re
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from conftest import PORT_BASE
from monitor_support import Png, ServiceProcess, dump_dom, ensure_chromium, http_json, parse_dom, port_is_free, screenshot

# Real processes on loopback (pytest.ini's markers).
pytestmark = [pytest.mark.live, pytest.mark.browser]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
MONITOR_PORT = PORT_BASE + 20
DEMO_PORT = PORT_BASE + 21
CLOSED_PORT = PORT_BASE + 22  # nothing listens here: the `offline` environment
MONITOR_URL = "http://127.0.0.1:%d" % MONITOR_PORT
TOKEN = "dashboard-browser-token"
API_KEY = "dashboard-browser-key"
APP = "leanvibe-demo"
SERVED_VERSION = "2.2.0"
ROUNDS = 4  # POST /api/run-probes this many times (the scheduler adds its own rounds every 5 s)
ROLLBACK_REASON = "error rate 12.5 % above the 5 % gate <b>not markup</b> & friends"


def _ago(minutes):
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


def deployment_events():
    """A canary that was rolled back, then a release that was promoted (oldest first)."""
    return [
        {"event": "deploy", "version": "2.1.0", "from_version": "2.0.0", "at": _ago(40), "text": "canary 2.1.0 started"},
        {"event": "step", "version": "2.1.0", "weights": {"2.0.0": 90, "2.1.0": 10}, "at": _ago(38), "text": "canary at 10 %"},
        {"event": "rollback", "version": "2.1.0", "to_version": "2.0.0", "reasons": [ROLLBACK_REASON], "at": _ago(30),
         "rollback_ms": 840, "text": "2.1.0 rolled back to 2.0.0"},
        {"event": "deploy", "version": SERVED_VERSION, "from_version": "2.0.0", "at": _ago(15), "text": "blue-green 2.2.0 started"},
        {"event": "promote", "version": SERVED_VERSION, "from_version": "2.0.0", "weights": {SERVED_VERSION: 100}, "at": _ago(10),
         "text": "2.2.0 now serves staging"},
    ]


@pytest.fixture(scope="session")
def chromium():
    return ensure_chromium()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """The demo and monitoring services as real processes, with events posted and rounds run."""
    base = tmp_path_factory.mktemp("dashboard")
    monitor_bin = os.path.join(BIN, "leanvibe-monitor")
    if not os.path.exists(monitor_bin):
        pytest.fail("%s is missing: install the runner package (`make setup`) to get the monitoring service." % monitor_bin, pytrace=False)
    busy = [port for port in (MONITOR_PORT, DEMO_PORT, CLOSED_PORT) if not port_is_free(port)]
    if busy:
        pytest.fail("ports %s on 127.0.0.1 are in use: the dashboard test needs %d-%d." % (busy, MONITOR_PORT, CLOSED_PORT), pytrace=False)

    # The release that the events below end with, so the probes and the events agree on what serves.
    build = subprocess.run([sys.executable, os.path.join(REPO, "demo_service", "build_release.py"), "--version", SERVED_VERSION,
                            "--output-dir", str(base)], capture_output=True, text=True, timeout=60, check=True)
    release = base / "release"
    release.mkdir()
    with tarfile.open(build.stdout.strip()) as archive:
        archive.extractall(str(release), filter="data")
    env = dict(os.environ, LEANVIBE_API_KEY=API_KEY, LEANVIBE_DATA_DIR=str(base / "demo-data"))
    for key in ("PYTHONPATH", "DATABASE_URL", "REDIS_URL", "LEANVIBE_FAULT_ERROR_RATE", "LEANVIBE_FAULT_LATENCY_MS", "LEANVIBE_FAULT_HEALTH",
                "LEANVIBE_FAULT_WEBSOCKET", "LEANVIBE_FAULT_CRASH_AFTER_S"):
        env.pop(key, None)
    config = {
        "listen": "127.0.0.1:%d" % MONITOR_PORT,
        "database": "sqlite:///" + str(base / "monitor.db"),
        "retention_days": 30,
        "token": TOKEN,
        "collections_path": os.path.join(REPO, ".collections"),
        "environments": [
            {"name": "staging", "url": "http://127.0.0.1:%d" % DEMO_PORT, "interval_s": 5, "mode": "quick", "api_key": API_KEY,
             "timeout_s": 5},
            {"name": "offline", "url": "http://127.0.0.1:%d" % CLOSED_PORT, "interval_s": 5, "mode": "quick", "api_key": API_KEY,
             "timeout_s": 2},
        ],
    }
    config_path = base / "monitor.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    monitor_env = dict(os.environ)
    monitor_env.pop("LEANVIBE_COLLECTIONS_PATH", None)

    processes = []
    try:
        demo = ServiceProcess("demo service", [sys.executable, "-m", "leanvibe_demo", "--host", "127.0.0.1", "--port", str(DEMO_PORT),
                                               "--log-level", "warning"], base / "demo.log", cwd=str(release), env=env)
        processes.append(demo)
        demo.wait_http("http://127.0.0.1:%d/health" % DEMO_PORT)
        monitor = ServiceProcess("leanvibe-monitor", [monitor_bin, "--config", str(config_path)], base / "monitor.log", cwd=str(base),
                                 env=monitor_env)
        processes.append(monitor)
        monitor.wait_http(MONITOR_URL + "/healthz")

        for event in deployment_events():
            status, body = http_json("POST", MONITOR_URL + "/api/events", dict(event, app=APP, environment="staging"), token=TOKEN)
            assert status == 201, "POST /api/events %s answered %s: %s" % (event["event"], status, body)
        for _round in range(ROUNDS):
            status, body = http_json("POST", MONITOR_URL + "/api/run-probes", {}, token=TOKEN)
            assert status == 200, "POST /api/run-probes answered %s: %s" % (status, body)
            assert body["results"]["staging"]["passed"], "the demo service failed a probe round: %s" % body["results"]["staging"]
            assert not body["results"]["offline"]["passed"], "a round against a closed port passed: %s" % body["results"]["offline"]
        yield {"base": base, "monitor": monitor, "demo": demo}
    finally:
        for process in reversed(processes):
            process.stop()


def check_dashboard(html, min_points):
    """Every assertion on the rendered page; returns the parsed document. Raises AssertionError on the first gap."""
    doc = parse_dom(html)
    body = doc.find("body")
    assert body is not None, "no <body> in the dumped DOM"
    assert body.attrs.get("data-ready") == "true", "the page never finished its first render (data-error=%r, banner=%r)" % (
        body.attrs.get("data-error"), (doc.find(id="error") or body).text().strip()[:300])
    assert doc.find("canvas", id="latency-chart") is not None, "no <canvas id=latency-chart>"
    # Works offline: scripts and styles come from the service itself (Chart.js is vendored), no CDN, no web fonts.
    assets = [node.attrs.get("src") or node.attrs.get("href") or "" for node in doc.find_all("script") + doc.find_all("link")]
    assert assets and not [url for url in assets if re.match(r"^(https?:)?//", url)], "assets from elsewhere: %s" % assets

    container = doc.find(id="chart-container")
    assert container is not None, "no chart container"
    assert int(container.attrs.get("data-points", "0")) >= min_points, "data-points=%s, expected at least %d" % (
        container.attrs.get("data-points"), min_points)
    markers = doc.find_all(cls="chart-marker")
    assert int(container.attrs.get("data-markers", "-1")) == len(markers), "data-markers=%s but %d .chart-marker elements" % (
        container.attrs.get("data-markers"), len(markers))
    rollback = doc.find(cls="chart-marker", data_event="rollback", data_version="2.1.0")
    promote = doc.find(cls="chart-marker", data_event="promote", data_version=SERVED_VERSION)
    assert rollback is not None, "no rollback marker for 2.1.0 among %s" % markers
    assert promote is not None, "no promote marker for %s among %s" % (SERVED_VERSION, markers)
    assert ROLLBACK_REASON in rollback.attrs.get("title", ""), "the rollback marker's title lacks the reason: %r" % rollback.attrs.get("title")
    for marker in (rollback, promote):
        assert "hidden" not in marker.attrs, "marker %r is outside the chart's x range" % marker
        assert re.match(r"^-?[0-9.]+px$", marker.style().get("left", "")), "marker %r was never positioned" % marker
    # The rollback came 20 minutes before the promotion: its marker is further left on the time axis.
    assert float(rollback.style()["left"][:-2]) < float(promote.style()["left"][:-2]), "markers are not placed on the time axis"

    card = doc.find(cls="env-card", data_environment="staging")
    assert card is not None, "no env card for staging"
    version = card.find(cls="env-version")
    assert version is not None and version.text().strip() == SERVED_VERSION, "staging card shows version %r" % (version.text() if version else None)
    windows = {row.attrs.get("data-window"): row for row in card.find_all("tr") if row.attrs.get("data-window")}
    assert sorted(windows) == ["24h", "30d", "7d"], "staging card windows: %s" % sorted(windows)
    uptime_24h = windows["24h"].find(cls="uptime").text().strip()
    assert re.match(r"^\d+\.\d\d %$", uptime_24h), "staging 24h uptime shows %r" % uptime_24h
    offline = doc.find(cls="env-card", data_environment="offline")
    assert offline is not None and offline.find(cls="badge").text().strip() == "down", "the offline environment is not shown as down"

    table = doc.find("table", id="deployments")
    assert table is not None, "no <table id=deployments>"
    rows = table.find("tbody").find_all("tr")
    assert rows and rows[0].attrs.get("data-event") == "promote", "newest deployment row is %r, not the promotion" % (rows[0] if rows else None)
    rollback_rows = [row for row in rows if row.attrs.get("data-event") == "rollback"]
    assert rollback_rows, "no rollback row in the deployments table"
    assert ROLLBACK_REASON in rollback_rows[0].text(), "the rollback row lacks its reason: %r" % rollback_rows[0].text()
    assert "2.1.0 → 2.0.0" in rollback_rows[0].text(), "the rollback row lacks version → to_version: %r" % rollback_rows[0].text()
    # Reasons come from webhooks: markup in them must stay text.
    assert not rollback_rows[0].find("b"), "markup in an event reason became an element"
    summary = doc.find(id="chart-summary").text()
    failed = re.search(r"offline: (\d+) rounds, (\d+) failed", summary)
    assert failed and int(failed.group(2)) >= ROUNDS, "failed rounds of offline not reported in the chart summary: %r" % summary
    return doc


@pytest.fixture(scope="module")
def dashboard_html(services, chromium):
    """The page's DOM as Chromium rendered it (default window: 24 h); also saved next to the screenshot."""
    html = dump_dom(chromium, MONITOR_URL + "/", services["base"] / "profile-dom")
    (services["base"] / "dashboard.html").write_text(html, encoding="utf-8")
    return html


def test_dashboard_in_chromium(services, chromium, dashboard_html, tmp_path, capsys):
    status, healthz = http_json("GET", MONITOR_URL + "/healthz")
    assert status == 200 and healthz["status"] == "ok", healthz
    check_dashboard(dashboard_html, min_points=2 * ROUNDS)

    # The last hour: the rounds and the events of this test spread over the axis.
    started = time.monotonic()
    shot = screenshot(chromium, MONITOR_URL + "/?window=1h", tmp_path / "profile-shot", str(tmp_path / "dashboard.png"))
    size = os.path.getsize(shot)
    assert size > 20 * 1024, "the screenshot is only %d bytes" % size
    png = Png(shot)
    assert (png.width, png.height) == (1366, 900), "screenshot is %dx%d" % (png.width, png.height)
    colours = png.colours()
    assert len(colours) > 200, "the screenshot has only %d colours: a blank or unstyled page" % len(colours)
    # The page header is dark, the page body light: the stylesheet was applied.
    assert sum(png.pixel(5, 5)) < 200 and sum(png.pixel(5, 300)) > 600, "unexpected colours %s / %s" % (png.pixel(5, 5), png.pixel(5, 300))
    with capsys.disabled():
        print("\ndashboard screenshot: %s (%d bytes, %d colours, %.1f s; DOM in %s)" % (
            shot, size, len(colours), time.monotonic() - started, services["base"] / "dashboard.html"))


def test_dashboard_check_can_fail(dashboard_html):
    """The assertions above can fail: the same page with its markers, or its rollback, taken out is rejected."""
    check_dashboard(dashboard_html, min_points=2 * ROUNDS)
    without_markers = dashboard_html.replace('class="chart-marker ', 'class="gone ')
    with pytest.raises(AssertionError, match="data-markers|rollback marker"):
        check_dashboard(without_markers, min_points=2 * ROUNDS)
    without_rollback = dashboard_html.replace('data-event="rollback"', 'data-event="deploy"')
    with pytest.raises(AssertionError, match="rollback"):
        check_dashboard(without_rollback, min_points=2 * ROUNDS)
    with pytest.raises(AssertionError, match="data-points"):
        check_dashboard(dashboard_html, min_points=10 ** 6)
    with pytest.raises(AssertionError, match="first render"):
        check_dashboard(dashboard_html.replace('data-ready="true"', ""), min_points=2 * ROUNDS)
