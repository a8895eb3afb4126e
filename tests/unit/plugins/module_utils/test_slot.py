"""Slot spec validation, release unpacking, health checks and SlotManager (module_utils/slot.py).

supervisord is replaced by plugin_test_helpers.FakeSupervisor; a slot's process is a loopback http.server that the
fake starts on the slot's port, serving the version found after `--version` in the argv of the rendered exec spec.
"""

import hashlib
import io
import json
import os
import socket
import stat
import tarfile
import urllib.error

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import slot as slot_mod
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError
from ansible_collections.leanvibe.deploy.plugins.module_utils.slot import (
    RELEASE_MARKER,
    SlotError,
    SlotManager,
    SlotSpec,
    check_health,
    env_digest,
    point_slot,
    port_is_free,
    probe_host,
    public_view,
    read_slot_state,
    render_command,
    sha256_file,
    tail,
    unpack_release,
    url_host,
)
from ansible_collections.leanvibe.deploy.plugins.module_utils.supervisor import SupervisorError

from plugin_test_helpers import FakeSupervisor, free_port, tree

# --- small helpers ------------------------------------------------------------------------


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read block
    path.write_bytes(data)
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_env_digest_ignores_order_and_none_is_empty():
    assert env_digest({"A": "1", "B": "2"}) == env_digest({"B": "2", "A": "1"})
    assert env_digest(None) == env_digest({})
    assert env_digest({"A": "1"}) != env_digest({"A": "2"})


def test_render_command_replaces_every_placeholder():
    values = dict(port=9002, bind="0.0.0.0", release_dir="/opt/demo/releases/2.0.0", version="2.0.0", slot="green", app="demo")
    command = ["{release_dir}/bin/serve", "--listen={bind}:{port}", "--tag", "{app}-{slot}-{version}", "{port}{port}", 7, "{other}"]
    assert render_command(command, values) == [
        "/opt/demo/releases/2.0.0/bin/serve", "--listen=0.0.0.0:9002", "--tag", "demo-green-2.0.0", "90029002", "7", "{other}"]


@pytest.mark.parametrize("bind,host", [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "::1"), ("10.0.0.5", "10.0.0.5"),
                                       ("::1", "::1")])
def test_probe_host(bind, host):
    assert probe_host(bind) == host


def test_url_host_brackets_ipv6():
    assert url_host("::1") == "[::1]"
    assert url_host("127.0.0.1") == "127.0.0.1"


def test_port_is_free(listening_socket):
    port = listening_socket()
    assert port_is_free("127.0.0.1", port) is False
    assert port_is_free("0.0.0.0", port) is False  # a wildcard bind collides with the loopback listener
    assert port_is_free("127.0.0.1", free_port()) is True


def test_port_is_free_ipv6():
    try:
        holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        holder.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        holder.listen(1)
        assert port_is_free("::1", holder.getsockname()[1]) is False
    finally:
        holder.close()


def test_port_is_free_raises_on_unusable_address():
    with pytest.raises(OSError):
        port_is_free("192.0.2.123", free_port())  # TEST-NET address this host does not have: not 'in use'


def test_tail(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join("line %d\n" % i for i in range(30)))
    assert tail(str(path), 3) == "line 27\nline 28\nline 29"
    assert tail(str(tmp_path / "missing")) == ""


# --- check_health -------------------------------------------------------------------------


def test_check_health_ok_with_matching_version(health_server):
    health_server.serve(version="2.0.0")
    health_server.start()
    assert check_health(health_server.url(), "2.0.0") == (True, "HTTP 200")
    assert health_server.paths == ["/health"]


def test_check_health_version_mismatch(health_server):
    health_server.serve(version="1.0.0")
    health_server.start()
    assert check_health(health_server.url(), "2.0.0") == (False, "serves version 1.0.0, not 2.0.0")


def test_check_health_without_version_ignores_body(health_server):
    health_server.serve(body="OK")
    health_server.start()
    assert check_health(health_server.url(), None) == (True, "HTTP 200")


@pytest.mark.parametrize("status", [503, 500, 404])
def test_check_health_error_status(health_server, status):
    health_server.serve(status=status, body="down")
    health_server.start()
    assert check_health(health_server.url(), "1.0.0") == (False, "HTTP %d" % status)


@pytest.mark.parametrize("body", ["OK", "<html></html>", "[1, 2]", '"1.0.0"'])
def test_check_health_body_not_json_object(health_server, body):
    health_server.serve(body=body)
    health_server.start()
    assert check_health(health_server.url(), "1.0.0") == (False, "health body is not JSON with a version")


def test_check_health_missing_version_key(health_server):
    health_server.serve(body='{"status": "healthy"}')
    health_server.start()
    assert check_health(health_server.url(), "1.0.0") == (False, "serves version None, not 1.0.0")


def test_check_health_connection_refused():
    healthy, detail = check_health("http://127.0.0.1:%d/health" % free_port(), "1.0.0", timeout=1)
    assert healthy is False
    assert "refused" in detail.lower()


def test_check_health_ignores_proxy_variables(health_server, monkeypatch):
    """A proxy set in the environment must not carry loopback health checks (here it is dead: nothing listens)."""
    health_server.serve(version="1.0.0")
    health_server.start()
    dead_proxy = "http://127.0.0.1:%d" % free_port()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    # Control: the dead proxy does break a request that honours the proxy variables.
    with pytest.raises(urllib.error.URLError):
        slot_mod.open_url(health_server.url(), timeout=2, use_proxy=True)
    assert check_health(health_server.url(), "1.0.0") == (True, "HTTP 200")
    assert health_server.paths == ["/health"]


def test_check_health_bad_url():
    healthy, detail = check_health("not a url", None)
    assert healthy is False
    assert detail


# --- SlotSpec -----------------------------------------------------------------------------


def test_slot_spec_defaults_and_paths(slot_env):
    params = slot_env.params(bind=None, health_path=None, env={"A": None, "B": 5})
    for name in ("health_timeout", "drain_timeout", "start_retries", "start_seconds"):
        params.pop(name)
    params.pop("health_check_version")
    spec = SlotSpec(params)
    assert spec.bind == "127.0.0.1"
    assert spec.health_path == "/health"
    assert spec.env == {"A": "", "B": "5"}
    assert (spec.health_timeout, spec.drain_timeout, spec.start_retries, spec.start_seconds) == (30, 15, 3, 1)
    assert spec.expect_version is True
    assert spec.program == "demo_green"
    assert spec.state_file == os.path.join(slot_env.base_dir, "slots", "green.json")
    assert spec.log_file == os.path.join(slot_env.base_dir, "logs", "green.log")
    assert spec.release_dir("1.0.0") == os.path.join(slot_env.base_dir, "releases", "1.0.0")
    assert spec.health_url() == "http://127.0.0.1:%d/health" % slot_env.port


@pytest.mark.parametrize("bind,url_host_part", [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("10.1.2.3", "10.1.2.3")])
def test_slot_spec_health_url(slot_env, bind, url_host_part):
    spec = SlotSpec(slot_env.params(bind=bind, port=9002, health_path="/healthz"))
    assert spec.health_url() == "http://%s:9002/healthz" % url_host_part


def test_slot_spec_base_dir_is_normalised(slot_env):
    spec = SlotSpec(slot_env.params(base_dir=slot_env.base_dir + "//./"))
    assert spec.base_dir == slot_env.base_dir


@pytest.mark.parametrize("overrides,fragment", [
    ({"app": "Demo"}, "app 'Demo' is not valid"),
    ({"slot": "red"}, "slot 'red' is unknown"),
    ({"base_dir": "relative/app"}, "base_dir must be an absolute path"),
    ({"base_dir": "/opt/../etc"}, "base_dir must not contain '..'"),
    ({"version": "../x"}, "must not contain path separators"),
    ({"version": ""}, "version must not be empty"),
    ({"version": None}, "version must not be empty"),
    ({"version": "a b"}, "must not contain path separators"),
    ({"version": "a/b"}, "must not contain path separators"),
    ({"version": "v" * 65}, "at most 64 characters"),
    ({"artifact": None}, "artifact must be an absolute path"),
    ({"artifact": "release.tar.gz"}, "artifact must be an absolute path"),
    ({"port": 0}, "port 0 is outside 1 to 65535"),
    ({"port": None}, "port None is not a number"),
    ({"command": []}, "command must name the program"),
    ({"command": None}, "command must name the program"),
    ({"env": {"1ABC": "x"}}, "environment variable name '1ABC' is not valid"),
    ({"env": {"A-B": "x"}}, "environment variable name 'A-B' is not valid"),
    ({"env": {"A B": "x"}}, "environment variable name 'A B' is not valid"),
    ({"env": {"": "x"}}, "environment variable name '' is not valid"),
    ({"env": {"A=B": "x"}}, "environment variable name 'A=B' is not valid"),
    ({"env": {"KEY\n": "x"}}, "environment variable name 'KEY\\n' is not valid"),
    ({"env": {"\nKEY": "x"}}, "environment variable name '\\nKEY' is not valid"),
    ({"env": {"KÉY": "x"}}, "environment variable name 'KÉY' is not valid"),
    ({"env": {"KEY": "nul\0"}}, "environment variable KEY must not contain a NUL character."),
    ({"env": {"OK": "fine", "KEY": "\0"}}, "environment variable KEY must not contain a NUL character."),
    ({"base_dir": "/tmp/a b"}, "base_dir '/tmp/a b' may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/x#y"}, "base_dir '/tmp/x#y' may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/x;y"}, "base_dir '/tmp/x;y' may only contain"),
    ({"base_dir": "/tmp/100%"}, "base_dir '/tmp/100%' may only contain"),
    ({"base_dir": "/tmp/it's"}, "may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/x\ny"}, "may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/x\n"}, "may only contain letters, digits and . _ / + @ -."),
    ({"base_dir": "/tmp/dé"}, "base_dir '/tmp/dé' may only contain"),
    ({"base_dir": "/tmp/a\tb"}, "may only contain"),
    ({"health_path": "health"}, "health_path must start with '/', not 'health'"),
    ({"health_timeout": -1}, "health_timeout must not be negative"),
    ({"drain_timeout": -5}, "drain_timeout must not be negative"),
    ({"start_retries": -1}, "start_retries must not be negative"),
    ({"start_seconds": -1}, "start_seconds must not be negative"),
])
def test_slot_spec_rejects(slot_env, overrides, fragment):
    with pytest.raises(ValidationError) as exc:
        SlotSpec(slot_env.params(**overrides))
    assert fragment in str(exc.value)


def test_slot_spec_accepts_multi_line_and_unusual_env_values(slot_env):
    env = {"MULTI": "line1\nline2\n", "CR": "a\rb", "CRLF": "x\r\ny", "QUOTES": 'say "hi" \'x\'', "HASH": "pass #1 ;x",
           "PCT": "%(here)s 50%", "UNI": "ünï ✓", "_lower9": "v"}
    assert SlotSpec(slot_env.params(env=env)).env == env


@pytest.mark.parametrize("base_dir", ["/opt/leanvibe/demo", "/srv/app+1@host/x-y_z.2", "/"])
def test_slot_spec_accepts_plain_base_dir(slot_env, base_dir):
    assert SlotSpec(slot_env.params(base_dir=base_dir)).base_dir == base_dir


@pytest.mark.parametrize("state", ["stopped", "absent"])
def test_slot_spec_stop_also_needs_a_plain_base_dir(state):
    with pytest.raises(ValidationError, match="base_dir '/tmp/a b' may only contain"):
        SlotSpec({"app": "demo", "slot": "blue", "base_dir": "/tmp/a b", "state": state})


def test_slot_spec_missing_artifact(slot_env, tmp_path):
    missing = str(tmp_path / "nope.tar.gz")
    with pytest.raises(ValidationError, match="artifact %s does not exist on the host" % missing):
        SlotSpec(slot_env.params(artifact=missing))


def test_slot_spec_artifact_is_a_folder(slot_env, tmp_path):
    with pytest.raises(ValidationError, match="does not exist on the host"):
        SlotSpec(slot_env.params(artifact=str(tmp_path)))


def test_slot_spec_non_tar_artifact(slot_env, tmp_path):
    path = tmp_path / "release.tar.gz"
    path.write_text("this is not a tar archive\n")
    with pytest.raises(ValidationError, match="artifact %s is not a tar archive" % path):
        SlotSpec(slot_env.params(artifact=str(path)))


@pytest.mark.parametrize("state", ["stopped", "absent"])
def test_slot_spec_stop_needs_no_release_arguments(slot_env, state):
    spec = SlotSpec({"app": "demo", "slot": "blue", "base_dir": slot_env.base_dir, "state": state, "version": "../bad"})
    assert spec.state == state
    assert spec.program == "demo_blue"
    assert not hasattr(spec, "version")


def test_slot_spec_stop_still_validates_identity(slot_env):
    with pytest.raises(ValidationError, match="app"):
        SlotSpec({"app": "../x", "slot": "blue", "base_dir": slot_env.base_dir, "state": "stopped"})


# --- state files --------------------------------------------------------------------------


def test_read_slot_state(slot_env):
    spec = SlotSpec(slot_env.params())
    assert read_slot_state(spec) is None
    os.makedirs(os.path.dirname(spec.state_file))
    with open(spec.state_file, "w") as handle:
        handle.write('{"version": "1.0.0"}')
    assert read_slot_state(spec) == {"version": "1.0.0"}
    with open(spec.state_file, "w") as handle:
        handle.write("{broken")
    with pytest.raises(ValidationError, match="slot state file %s is corrupt" % spec.state_file):
        read_slot_state(spec)


def test_public_view_hides_env_values():
    state = {"version": "1.0.0", "port": 9001, "bind": "127.0.0.1", "release_dir": "/r/1.0.0", "env_keys": ["API_KEY"],
             "env_sha256": "abc", "command": ["x"]}
    assert public_view(state, True) == {"version": "1.0.0", "port": 9001, "bind": "127.0.0.1", "release_dir": "/r/1.0.0",
                                        "env_keys": ["API_KEY"], "running": True}
    assert public_view(None, True) == {"running": False}


# --- unpack_release -----------------------------------------------------------------------


def _tar(path, members):
    """Write a tar.gz with (TarInfo-like name, data or None, kwargs) members, bypassing the filesystem."""
    with tarfile.open(str(path), "w:gz") as archive:
        for name, data, extra in members:
            info = tarfile.TarInfo(name)
            for key, value in extra.items():
                setattr(info, key, value)
            if data is None:
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return str(path)


def test_unpack_release_safe_tar(slot_env):
    spec = SlotSpec(slot_env.params())
    sha = sha256_file(spec.artifact)
    assert unpack_release(spec, sha) is True
    target = spec.release_dir("1.0.0")
    assert sorted(os.listdir(target)) == sorted(["app.py", "VERSION", RELEASE_MARKER])
    with open(os.path.join(target, "app.py")) as handle:
        assert handle.read() == "v1\n"
    with open(os.path.join(target, RELEASE_MARKER)) as handle:
        assert handle.read() == sha + "\n"
    assert os.listdir(spec.path("releases")) == ["1.0.0"]  # no staging folder left


def test_unpack_release_marker_makes_it_idempotent(slot_env):
    spec = SlotSpec(slot_env.params())
    sha = sha256_file(spec.artifact)
    unpack_release(spec, sha)
    app_py = os.path.join(spec.release_dir("1.0.0"), "app.py")
    inode = os.stat(app_py).st_ino
    assert unpack_release(spec, sha) is False
    assert os.stat(app_py).st_ino == inode


def test_unpack_release_other_artifact_same_version_replaces(slot_env, make_artifact):
    spec = SlotSpec(slot_env.params())
    unpack_release(spec, sha256_file(spec.artifact))
    rebuilt = make_artifact("rebuilt.tar.gz", {"main.py": "rebuilt\n"})
    spec2 = SlotSpec(slot_env.params(artifact=rebuilt))
    sha2 = sha256_file(rebuilt)
    assert unpack_release(spec2, sha2) is True
    assert sorted(os.listdir(spec.release_dir("1.0.0"))) == sorted(["main.py", RELEASE_MARKER])
    assert os.listdir(spec.path("releases")) == ["1.0.0"]  # the old copy and the staging folder are gone


@pytest.mark.parametrize("members", [
    [("ok.txt", b"fine\n", {}), ("../evil", b"owned\n", {})],
    [("ok.txt", b"fine\n", {}), ("sub/../../evil", b"owned\n", {})],
    [("link", None, {"type": tarfile.SYMTYPE, "linkname": "../../evil"})],
    [("abslink", None, {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})],
    [("dev", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
], ids=["dotdot", "nested-dotdot", "link-out", "abs-link", "device"])
def test_unpack_release_refuses_unsafe_tar_and_leaves_nothing(slot_env, tmp_path, members):
    evil = _tar(tmp_path / "evil.tar.gz", members)
    spec = SlotSpec(slot_env.params(artifact=evil))
    before = tree(tmp_path)
    with pytest.raises(SlotError, match="could not unpack %s" % evil):
        unpack_release(spec, sha256_file(evil))
    assert not os.path.exists(spec.release_dir("1.0.0"))
    assert os.listdir(spec.path("releases")) == []
    assert [path for path in tree(tmp_path) if path not in before] == ["app", "app/releases"]
    assert not any(os.path.basename(path) == "evil" for path in tree(tmp_path))


def test_unpack_release_refusal_keeps_existing_release(slot_env, tmp_path):
    spec = SlotSpec(slot_env.params())
    unpack_release(spec, sha256_file(spec.artifact))
    evil = _tar(tmp_path / "evil.tar.gz", [("../evil", b"x", {})])
    with pytest.raises(SlotError):
        unpack_release(SlotSpec(slot_env.params(artifact=evil)), sha256_file(evil))
    assert sorted(os.listdir(spec.release_dir("1.0.0"))) == sorted(["app.py", "VERSION", RELEASE_MARKER])


def test_point_slot_replaces_link(slot_env):
    spec = SlotSpec(slot_env.params())
    os.makedirs(spec.path("slots"))
    point_slot(spec, "/releases/a")
    point_slot(spec, "/releases/b")
    assert os.readlink(spec.path("slots", "green")) == "/releases/b"
    assert os.listdir(spec.path("slots")) == ["green"]


# --- SlotManager.deploy -------------------------------------------------------------------


def make_manager(slot_env, **overrides):
    return SlotManager(SlotSpec(slot_env.params(**overrides)), slot_env.supervisor)


def state_of(manager):
    return manager.desired_state(sha256_file(manager.spec.artifact))


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def test_deploy_first_time(slot_env):
    manager = make_manager(slot_env)
    spec = manager.spec
    result = manager.deploy()
    assert result["changed"] is True
    assert result["version"] == "1.0.0"
    assert result["previous_version"] is None
    assert result["before"] == {"running": False}
    assert result["after"]["version"] == "1.0.0"
    assert result["after"]["env_keys"] == ["LEANVIBE_API_KEY"]
    assert "s3cret-value" not in json.dumps(result)
    (replace,) = slot_env.supervisor.calls_named("replace_program")
    assert replace[1] == "demo_green"
    section, exec_text = replace[2]
    assert (section, exec_text) == slot_env.supervisor.render("demo_green", manager.program_spec(state_of(manager)))
    assert json.loads(exec_text) == {
        "argv": ["/opt/venv/bin/python", "-m", "demo", "--port", str(slot_env.port), "--version", "1.0.0"],
        "env": {"LEANVIBE_API_KEY": "s3cret-value"},
    }
    assert "s3cret-value" not in section  # secrets stay out of supervisord's config (and its getProcessInfo/ps output)
    assert FakeSupervisor.setting(section, "directory") == spec.release_dir("1.0.0")
    assert FakeSupervisor.setting(section, "stdout_logfile") == spec.log_file
    assert slot_env.supervisor.read_program("demo_green") == (section, exec_text)
    for path in slot_env.supervisor.program_files("demo_green"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert slot_env.supervisor.started == [("demo_green", json.loads(exec_text)["argv"], {"LEANVIBE_API_KEY": "s3cret-value"})]
    assert result["pid"] == slot_env.supervisor.processes["demo_green"]["pid"]
    assert result["health"]["url"] == spec.health_url()
    assert result["health"]["elapsed_ms"] >= 0
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")
    state = read_json(spec.state_file)
    assert state == manager.desired_state(sha256_file(slot_env.artifact_v1))
    assert state["command"][-3:] == [str(slot_env.port), "--version", "1.0.0"]
    assert "s3cret-value" not in json.dumps(state)
    with open(spec.path("slots", "green.pid")) as handle:
        assert handle.read() == "%d\n" % result["pid"]
    assert ("ensure_running",) in slot_env.supervisor.calls


def test_deploy_unchanged_when_state_matches_running_and_healthy(slot_env):
    make_manager(slot_env).deploy()
    state_before = read_json(make_manager(slot_env).spec.state_file)
    result = make_manager(slot_env).deploy()
    assert result["changed"] is False
    assert result["pid"] == slot_env.supervisor.processes["demo_green"]["pid"]
    assert len(slot_env.supervisor.calls_named("replace_program")) == 1
    assert read_json(make_manager(slot_env).spec.state_file) == state_before
    assert result["before"] == result["after"]


def test_deploy_redeploys_when_healthy_check_fails_on_same_config(slot_env):
    make_manager(slot_env).deploy()
    slot_env.health.serve(status=503, body="sick")
    result = make_manager(slot_env).deploy()
    assert result["changed"] is True
    assert len(slot_env.supervisor.calls_named("replace_program")) == 2


def test_deploy_redeploys_when_process_died(slot_env):
    make_manager(slot_env).deploy()
    slot_env.supervisor.kill("demo_green")
    result = make_manager(slot_env).deploy()
    assert result["changed"] is True
    assert result["before"]["running"] is False
    assert slot_env.supervisor.processes["demo_green"]["statename"] == "RUNNING"


@pytest.mark.parametrize("overrides", [{"env": {"LEANVIBE_API_KEY": "rotated"}}, {"command": ["/bin/other", "--version", "{version}"]},
                                       {"drain_timeout": 30}, {"start_retries": 9}])
def test_deploy_config_change_restarts(slot_env, overrides):
    make_manager(slot_env).deploy()
    result = make_manager(slot_env, **overrides).deploy()
    assert result["changed"] is True
    assert len(slot_env.supervisor.calls_named("replace_program")) == 2


def test_deploy_new_version(slot_env):
    make_manager(slot_env).deploy()
    result = make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2).deploy()
    spec = make_manager(slot_env).spec
    assert (result["changed"], result["previous_version"], result["version"]) == (True, "1.0.0", "2.0.0")
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("2.0.0")
    assert read_json(spec.state_file)["version"] == "2.0.0"
    assert sorted(os.listdir(spec.path("releases"))) == ["1.0.0", "2.0.0"]  # old releases stay for rollback
    assert check_health(spec.health_url(), "2.0.0")[0] is True


def test_deploy_check_mode_changes_nothing(slot_env):
    result = make_manager(slot_env).deploy(check_mode=True)
    assert result["changed"] is True
    assert not os.path.exists(slot_env.base_dir)
    assert {call[0] for call in slot_env.supervisor.calls} == {"info"}


def test_deploy_check_mode_on_deployed_slot_changes_nothing(slot_env, snapshot_tree):
    make_manager(slot_env).deploy()
    before = snapshot_tree(slot_env.base_dir)
    calls = len(slot_env.supervisor.calls_named("replace_program"))
    result = make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2).deploy(check_mode=True)
    assert result["changed"] is True
    assert result["previous_version"] == "1.0.0"
    assert snapshot_tree(slot_env.base_dir) == before
    assert len(slot_env.supervisor.calls_named("replace_program")) == calls


def test_deploy_port_in_use_fails_before_any_change(slot_env, listening_socket):
    port = listening_socket()
    with pytest.raises(ValidationError, match="port %d on 127.0.0.1 is already in use" % port):
        make_manager(slot_env, port=port).deploy()
    assert not os.path.exists(slot_env.base_dir)
    assert slot_env.supervisor.calls_named("replace_program") == []


def test_deploy_port_in_use_also_in_check_mode(slot_env, listening_socket):
    with pytest.raises(ValidationError, match="already in use"):
        make_manager(slot_env, port=listening_socket()).deploy(check_mode=True)


def test_deploy_corrupt_state_file(slot_env):
    spec = make_manager(slot_env).spec
    os.makedirs(os.path.dirname(spec.state_file))
    with open(spec.state_file, "w") as handle:
        handle.write("nope")
    with pytest.raises(ValidationError, match="corrupt"):
        make_manager(slot_env).deploy()
    assert os.listdir(spec.path("slots")) == ["green.json"]


def test_deploy_treats_supervisor_error_as_not_running(slot_env):
    slot_env.supervisor.info_error = SupervisorError("socket refused")
    manager = make_manager(slot_env)
    assert manager.process_info() is None
    assert manager.deploy(check_mode=True)["before"] == {"running": False}


def test_deploy_unhealthy_restores_previous_program_and_raises_with_log_tail(slot_env, snapshot_tree):
    make_manager(slot_env).deploy()
    spec = make_manager(slot_env).spec
    program_before = slot_env.supervisor.read_program("demo_green")
    assert None not in program_before
    state_before = read_json(spec.state_file)
    slot_env.supervisor.broken.add("2.0.0")
    with pytest.raises(SlotError) as exc:
        make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2, health_timeout=0.3).deploy()
    message = str(exc.value)
    assert message.startswith("slot green did not become healthy with version 2.0.0 within 0.3s (HTTP 503)")
    assert "the slot was put back as it was" in message
    log_part = message.split("Last lines of %s:\n" % spec.log_file, 1)[1]
    assert log_part.splitlines() == ["starting demo_green version 2.0.0", "Traceback: version 2.0.0 cannot start"]
    replaces = slot_env.supervisor.calls_named("replace_program")
    assert len(replaces) == 3 and replaces[2][2] == program_before
    assert slot_env.supervisor.read_program("demo_green") == program_before
    assert slot_env.supervisor.processes["demo_green"]["statename"] == "RUNNING"
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")
    assert read_json(spec.state_file) == state_before
    assert check_health(spec.health_url(), "1.0.0") == (True, "HTTP 200")  # the old release serves again


def test_deploy_fatal_process_fails_fast(slot_env):
    slot_env.supervisor.start_state = "FATAL"
    with pytest.raises(SlotError, match=r"within 30s \(process FATAL\)"):
        make_manager(slot_env, health_timeout=30).deploy()


def test_deploy_first_time_unhealthy_removes_program(slot_env):
    slot_env.supervisor.broken.add("1.0.0")
    with pytest.raises(SlotError, match="HTTP 503"):
        make_manager(slot_env, health_timeout=0.3).deploy()
    spec = make_manager(slot_env).spec
    assert slot_env.supervisor.read_program("demo_green") == (None, None)
    assert ("remove_program", "demo_green") in slot_env.supervisor.calls
    assert not os.path.exists(spec.state_file)
    assert not os.path.exists(spec.path("slots", "green.pid"))
    assert not os.path.lexists(spec.path("slots", "green"))  # there was no slot link before: none is left
    assert os.listdir(spec.path("slots")) == []


def test_deploy_healthy_but_still_starting_times_out(slot_env):
    slot_env.supervisor.start_state = "STARTING"
    with pytest.raises(SlotError, match=r"\(healthy but still starting\)"):
        make_manager(slot_env, health_timeout=0.3).deploy()


def test_deploy_version_check_can_be_disabled(slot_env):
    command = ["/bin/serve", "--port", "{port}"]  # the fake then serves a body without a version
    with pytest.raises(SlotError, match="serves version None, not 1.0.0"):
        make_manager(slot_env, command=command, health_timeout=0.3).deploy()
    result = make_manager(slot_env, command=command, health_check_version=False).deploy()
    assert result["changed"] is True


def test_deploy_restore_does_not_restart_a_previously_stopped_program(slot_env):
    make_manager(slot_env).deploy()
    slot_env.supervisor.kill("demo_green", "FATAL")
    program_before = slot_env.supervisor.read_program("demo_green")
    assert None not in program_before
    slot_env.supervisor.broken.add("2.0.0")
    with pytest.raises(SlotError):
        make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2, health_timeout=0.3).deploy()
    assert ("remove_program", "demo_green") in slot_env.supervisor.calls
    assert len(slot_env.supervisor.calls_named("replace_program")) == 2  # the failed one only, no restart of the old
    assert "demo_green" not in slot_env.supervisor.processes
    assert slot_env.supervisor.read_program("demo_green") == program_before  # both files written back as they were
    for path in slot_env.supervisor.program_files("demo_green"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the exec spec holds the environment's secrets
    spec = make_manager(slot_env).spec
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")


def test_env_value_with_nul_fails_cleanly_before_any_change(slot_env):
    with pytest.raises(ValidationError, match="environment variable KEY must not contain a NUL character"):
        make_manager(slot_env, env={"KEY": "a\0b"}).deploy()
    assert not os.path.exists(slot_env.base_dir)
    assert slot_env.supervisor.calls_named("replace_program") == []


def test_env_values_with_newline_and_carriage_return_reach_the_program(slot_env):
    """Formerly a bare ValueError after the slot link was repointed; the exec spec now carries any value but NUL."""
    env = {"KEY": "a\rb", "PEM": "-----BEGIN-----\nabc\n-----END-----\n", "MIXED": "x\r\ny #z ;w %(p)s \"q\" \\ '"}
    manager = make_manager(slot_env, env=env)
    result = manager.deploy()
    assert result["changed"] is True
    (started,) = slot_env.supervisor.started
    assert started[2] == env
    section, exec_text = slot_env.supervisor.read_program("demo_green")
    assert json.loads(exec_text)["env"] == env
    assert not any(value in section for value in env.values())
    assert read_json(manager.spec.state_file)["env_sha256"] == env_digest(env)
    assert make_manager(slot_env, env=env).deploy()["changed"] is False  # and the next run sees the same config


class _RefusingSupervisor(FakeSupervisor):
    """supervisord refuses the new program (reloadConfig fault) after the old process was stopped, as the real one does."""

    def replace_program(self, name, texts):
        if "2.0.0" in texts[1]:
            self.calls.append(("replace_program", name, tuple(texts)))
            self.stop(name)
            self.write_program(name, texts)
            raise SupervisorError("supervisord refused program %s: CANT_REREAD" % name)
        super().replace_program(name, texts)


def test_deploy_supervisor_refusal_puts_slot_back(slot_env):
    refusing = _RefusingSupervisor(slot_env.base_dir, slot_env.health, slot_env.port)
    slot_env.supervisor = refusing
    make_manager(slot_env).deploy()
    program_before = refusing.read_program("demo_green")
    state_before = read_json(make_manager(slot_env).spec.state_file)
    with pytest.raises(SlotError) as exc:
        make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2).deploy()
    message = str(exc.value)
    assert message.startswith("slot green did not become healthy with version 2.0.0 within 1s "
                              "(supervisord refused program demo_green: CANT_REREAD); the slot was put back as it was.")
    spec = make_manager(slot_env).spec
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")
    assert refusing.read_program("demo_green") == program_before
    assert refusing.processes["demo_green"]["statename"] == "RUNNING"
    assert read_json(spec.state_file) == state_before
    assert check_health(spec.health_url(), "1.0.0") == (True, "HTTP 200")  # the old release serves again


def test_deploy_supervisor_error_while_waiting_puts_slot_back(slot_env, monkeypatch):
    make_manager(slot_env).deploy()
    program_before = slot_env.supervisor.read_program("demo_green")
    manager = make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2)

    def lost(timeout):
        raise SupervisorError("supervisord: connection lost")

    monkeypatch.setattr(manager, "wait_healthy", lost)
    with pytest.raises(SlotError, match=r"within 1s \(supervisord: connection lost\); the slot was put back as it was"):
        manager.deploy()
    spec = manager.spec
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")
    assert slot_env.supervisor.read_program("demo_green") == program_before
    assert slot_env.supervisor.processes["demo_green"]["statename"] == "RUNNING"
    assert check_health(spec.health_url(), "1.0.0") == (True, "HTTP 200")
    assert read_json(spec.state_file)["version"] == "1.0.0"


def test_deploy_first_time_supervisor_refusal_leaves_no_program_and_no_link(slot_env):
    slot_env.supervisor = _RefusingSupervisor(slot_env.base_dir, slot_env.health, slot_env.port)
    with pytest.raises(SlotError, match="CANT_REREAD"):
        make_manager(slot_env, version="2.0.0", artifact=slot_env.artifact_v2).deploy()
    spec = make_manager(slot_env).spec
    assert slot_env.supervisor.read_program("demo_green") == (None, None)
    assert not os.path.lexists(spec.path("slots", "green"))
    assert not os.path.exists(spec.state_file)


# --- stop and absent ----------------------------------------------------------------------


def stop_manager(slot_env, state="stopped"):
    spec = SlotSpec({"app": "demo", "slot": "green", "base_dir": slot_env.base_dir, "state": state})
    return SlotManager(spec, slot_env.supervisor)


def test_stop_running_slot_keeps_release_and_state(slot_env):
    make_manager(slot_env).deploy()
    spec = make_manager(slot_env).spec
    result = stop_manager(slot_env).stop()
    assert result["changed"] is True
    assert result["version"] == "1.0.0"
    assert result["before"]["running"] is True
    assert result["after"]["running"] is False
    assert result["after"]["version"] == "1.0.0"
    assert ("remove_program", "demo_green") in slot_env.supervisor.calls
    assert not os.path.exists(slot_env.supervisor.program_file("demo_green"))
    assert not os.path.exists(spec.path("slots", "green.pid"))
    assert read_json(spec.state_file)["version"] == "1.0.0"
    assert os.readlink(spec.path("slots", "green")) == spec.release_dir("1.0.0")
    assert os.path.isdir(spec.release_dir("1.0.0"))
    again = stop_manager(slot_env).stop()
    assert again["changed"] is False


def test_stop_check_mode_changes_nothing(slot_env, snapshot_tree):
    make_manager(slot_env).deploy()
    before = snapshot_tree(slot_env.base_dir)
    result = stop_manager(slot_env).stop(check_mode=True)
    assert result["changed"] is True
    assert snapshot_tree(slot_env.base_dir) == before
    assert slot_env.supervisor.calls_named("remove_program") == []


@pytest.mark.parametrize("state", ["STARTING", "BACKOFF"])
def test_stop_counts_starting_processes_as_running(slot_env, state):
    make_manager(slot_env).deploy()
    slot_env.supervisor.processes["demo_green"]["statename"] = state
    os.unlink(slot_env.supervisor.program_file("demo_green"))
    assert stop_manager(slot_env).stop()["changed"] is True


def test_absent_forgets_slot_but_keeps_releases(slot_env):
    make_manager(slot_env).deploy()
    spec = make_manager(slot_env).spec
    result = stop_manager(slot_env, "absent").stop(remove=True)
    assert result["changed"] is True
    assert result["after"] == {}
    assert not os.path.exists(spec.state_file)
    assert not os.path.lexists(spec.path("slots", "green"))
    assert os.path.isdir(spec.release_dir("1.0.0"))
    assert stop_manager(slot_env, "absent").stop(remove=True)["changed"] is False


def test_absent_on_a_stopped_slot_removes_its_state(slot_env):
    make_manager(slot_env).deploy()
    stop_manager(slot_env).stop()
    result = stop_manager(slot_env, "absent").stop(remove=True)
    assert result["changed"] is True
    assert not os.path.exists(make_manager(slot_env).spec.state_file)


def test_stop_on_nothing_is_unchanged(slot_env):
    result = stop_manager(slot_env).stop()
    assert result["changed"] is False
    assert result["before"] == {"running": False}
    assert not os.path.exists(slot_env.base_dir)


def test_slot_manager_default_supervisor_lives_under_base_dir(slot_env):
    manager = SlotManager(SlotSpec(slot_env.params()))
    assert manager.supervisor.dir == os.path.join(slot_env.base_dir, "supervisor")
    assert isinstance(manager.supervisor, slot_mod.Supervisor)
