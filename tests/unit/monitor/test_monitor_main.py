"""leanvibe-monitor --config FILE as a real process: exit codes, one-sentence errors, serving, and a clean SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from monitor_test_helpers import COLLECTIONS_PATH, config_dict, env_dict, free_port, poll

from leanvibe_monitor.store import open_store

SCRIPT = Path(sys.executable).parent / "leanvibe-monitor"


def command():
    """The installed console script when there is one (it is what systemd runs), else python -m."""
    return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "leanvibe_monitor"]


def write_config(tmp_path, data, name="monitor.yml"):
    path = tmp_path / name
    path.write_text(json.dumps(data))  # JSON is YAML too
    return path


def run(tmp_path, *args, env=None):
    environ = {key: value for key, value in os.environ.items() if key != "LEANVIBE_COLLECTIONS_PATH"}
    environ.update(env or {})
    return subprocess.run(command() + list(args), capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environ, check=False)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:  # nosec - loopback test server
        return json.load(response)


def test_check_validates_and_summarises(tmp_path, lb):
    path = write_config(tmp_path, config_dict([env_dict("local", lb.url)], database="sqlite:///data/monitor.db", listen="127.0.0.1:5999"))
    result = run(tmp_path, "--config", str(path), "--check")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "leanvibe-monitor: %s is valid: listen 127.0.0.1:5999, SQLite database %s, local every 5s.\n" % (
        path, tmp_path / "data" / "monitor.db")
    assert not (tmp_path / "data").exists()  # --check touches no database


@pytest.mark.parametrize("data, message", [
    ({"listen": "nowhere"}, "listen 'nowhere' must be host:port, for example 127.0.0.1:5000 or [::1]:5000."),
    (None, "cannot read config file {path}: No such file or directory."),
])
def test_a_bad_config_is_one_sentence_and_exit_2(tmp_path, data, message):
    path = tmp_path / "monitor.yml"
    if data is not None:
        base = config_dict([env_dict("local", "http://127.0.0.1:8000")])
        base.update(data)
        write_config(tmp_path, base)
    result = run(tmp_path, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == "leanvibe-monitor: %s\n" % message.format(path=path)


def test_the_probe_engine_must_be_importable(tmp_path):
    data = config_dict([env_dict("local", "http://127.0.0.1:8000")])
    data["collections_path"] = str(tmp_path / "empty")
    result = run(tmp_path, "--config", str(write_config(tmp_path, data)), "--check")
    assert result.returncode == 2
    engine = "ansible_collections.leanvibe.deploy.plugins.module_utils.probes"
    assert result.stderr.startswith("leanvibe-monitor: cannot import the probe engine %s from %s (" % (engine, tmp_path / "empty"))
    assert result.stderr.count("\n") == 1
    del data["collections_path"]  # the environment variable works too
    result = run(tmp_path, "--config", str(write_config(tmp_path, data)), "--check", env={"LEANVIBE_COLLECTIONS_PATH": COLLECTIONS_PATH})
    assert result.returncode == 0, result.stderr


def test_an_unwritable_database_is_one_sentence_and_exit_1(tmp_path, lb):
    (tmp_path / "monitor.db").mkdir()
    path = write_config(tmp_path, config_dict([env_dict("local", lb.url)], database="sqlite:///monitor.db"))
    result = run(tmp_path, "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "leanvibe-monitor: cannot write to the SQLite database %s: it is a directory." % (
        tmp_path / "monitor.db")


def test_an_address_in_use_is_exit_1_before_any_round(tmp_path, lb):
    """The port is bound before the scheduler starts: a taken one stores no round (supervisord's retries neither)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = write_config(tmp_path, config_dict([env_dict("local", lb.url)], listen="127.0.0.1:%d" % port, database="sqlite:///m.db"))
        result = run(tmp_path, "--config", str(path))
    assert result.returncode == 1
    assert result.stderr == "leanvibe-monitor: cannot listen on 127.0.0.1:%d: Address already in use.\n" % port
    assert not lb.requests  # nothing was probed
    store = open_store("sqlite:///%s" % (tmp_path / "m.db"))
    try:
        assert store.count("probe_rounds") == 0 and store.count("health_checks") == 0
    finally:
        store.close()


def test_serves_probes_and_stops_cleanly_on_sigterm(tmp_path, lb):
    lb.version = "5.0.0"
    port = free_port()
    path = write_config(tmp_path, config_dict([env_dict("local", lb.url)], listen="127.0.0.1:%d" % port, database="sqlite:///m.db"))
    environ = {key: value for key, value in os.environ.items() if key != "LEANVIBE_COLLECTIONS_PATH"}
    with subprocess.Popen(command() + ["--config", str(path)], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            base = "http://127.0.0.1:%d" % port

            def first_round():
                try:
                    return get_json(base + "/healthz")["scheduler"]["rounds"] >= 1
                except OSError:
                    return False

            poll(first_round, timeout=30, step=0.1)
            overview = get_json(base + "/api/overview")
            assert overview["environments"][0]["current"]["version"] == "5.0.0"
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr
    assert stdout == ""
    lines = stderr.splitlines()
    rounds = [line for line in lines if " INFO leanvibe_monitor: local (up, " in line]
    assert len(rounds) >= 1
    assert all(line.endswith(", version 5.0.0): Suite passed: all 2 probes passed against %s." % lb.url) for line in rounds)
    assert any(line.endswith("INFO leanvibe_monitor: scheduler stopped") for line in lines)
    assert not any(" ERROR " in line or "Traceback" in line for line in lines), stderr
