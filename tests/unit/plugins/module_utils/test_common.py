"""Validators and file helpers of module_utils/common.py."""

import os
import stat

import pytest

from ansible_collections.leanvibe.deploy.plugins.module_utils import common
from ansible_collections.leanvibe.deploy.plugins.module_utils.common import (
    ValidationError,
    atomic_write,
    other_color,
    read_text,
    restore_file,
    validate_absolute_path,
    validate_app_name,
    validate_color,
    validate_plain_path,
    validate_port,
    validate_server,
    validate_version,
    validate_weights,
)

# --- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0-rc.1", "1.0+build.7", "v2_beta", "a", "0", "A" * 64])
def test_validate_version_accepts_safe_versions(version):
    assert validate_version(version) == version


def test_validate_version_returns_text_for_numbers():
    assert validate_version(2) == "2"


@pytest.mark.parametrize("version", [None, "", "   ", "\t"])
def test_validate_version_rejects_empty(version):
    with pytest.raises(ValidationError, match="must not be empty"):
        validate_version(version)


@pytest.mark.parametrize("version", ["../x", "..", "1..2", "a/b", "/abs", "a\\b", "a b", "1.0\n", "tab\there"])
def test_validate_version_rejects_path_tricks_and_spaces(version):
    with pytest.raises(ValidationError, match="path separators"):
        validate_version(version)


@pytest.mark.parametrize("version", ["A" * 65, "1" * 100, ".hidden", "-flag", "_x", "1.0;rm", "1.0$", "ü1", "1:2"])
def test_validate_version_rejects_bad_characters_and_length(version):
    with pytest.raises(ValidationError, match="is not valid") as exc:
        validate_version(version)
    assert repr(version) in str(exc.value)


def test_version_length_limit_is_exactly_64():
    assert validate_version("9" * 64) == "9" * 64
    with pytest.raises(ValidationError):
        validate_version("9" * 65)


# --- colors -------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["blue", "green"])
def test_validate_color_accepts_known(color):
    assert validate_color(color) == color


@pytest.mark.parametrize("color", ["red", "Blue", "", None, " blue", 1])
def test_validate_color_rejects_unknown_and_names_what(color):
    with pytest.raises(ValidationError) as exc:
        validate_color(color, "canary color")
    message = str(exc.value)
    assert message.startswith("canary color %r is unknown" % (color,))
    assert "blue, green" in message


def test_other_color():
    assert other_color("blue") == "green"
    assert other_color("green") == "blue"
    assert {other_color(c) for c in common.COLORS} == set(common.COLORS)


# --- app names ----------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["demo", "d", "my_app2", "a" * 32])
def test_validate_app_name_accepts(app):
    assert validate_app_name(app) == app


@pytest.mark.parametrize("app", ["", None, "Demo", "1app", "_app", "my-app", "my app", "a/b", "../x", "a" * 33, "app.x", "démo"])
def test_validate_app_name_rejects(app):
    with pytest.raises(ValidationError, match="is not valid"):
        validate_app_name(app)


def test_validate_app_name_rejects_trailing_newline():
    with pytest.raises(ValidationError):
        validate_app_name("demo\n")


# --- ports and servers --------------------------------------------------------------------


@pytest.mark.parametrize("port,expected", [(1, 1), (65535, 65535), ("8080", 8080)])
def test_validate_port_accepts(port, expected):
    assert validate_port(port) == expected


@pytest.mark.parametrize("port,fragment", [(0, "outside 1 to 65535"), (65536, "outside 1 to 65535"), (-1, "outside"),
                                           ("http", "is not a number"), (None, "is not a number"), ("", "is not a number")])
def test_validate_port_rejects(port, fragment):
    with pytest.raises(ValidationError, match=fragment):
        validate_port(port, "listen port")


@pytest.mark.parametrize("server", ["127.0.0.1:9001", "10.0.0.5:1", "app-1.internal:65535", "localhost:80", "[::1]:9001",
                                    "[2001:db8::1]:443", "[::ffff:10.0.0.1]:8080"])
def test_validate_server_accepts_host_port_and_ipv6(server):
    assert validate_server(server) == server


@pytest.mark.parametrize("server", ["127.0.0.1", "::1:9001", "2001:db8::1:443", "[::1]", "host:", ":80", "host:abc", "a b:80",
                                    "host:80;", "-host:80", "[::g]:80", "http://host:80", "", None, "host:123456"])
def test_validate_server_rejects_malformed(server):
    with pytest.raises(ValidationError, match="is not of the form host:port"):
        validate_server(server)


@pytest.mark.parametrize("server", ["127.0.0.1:9001\n", "[::1]:9001\n", "host:80\r", "\nhost:80"])
def test_validate_server_rejects_trailing_and_leading_newline(server):
    with pytest.raises(ValidationError, match="is not of the form host:port"):
        validate_server(server)


@pytest.mark.parametrize("server", ["host:0", "host:65536", "[::1]:99999"])
def test_validate_server_rejects_port_out_of_range(server):
    with pytest.raises(ValidationError, match="outside 1 to 65535") as exc:
        validate_server(server)
    assert repr(server) in str(exc.value)


# --- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("weights,expected", [
    ({"blue": 90, "green": 10}, {"blue": 90, "green": 10}),
    ({"green": 100}, {"blue": 0, "green": 100}),
    ({"blue": 100}, {"blue": 100, "green": 0}),
    ({"blue": "50", "green": "50"}, {"blue": 50, "green": 50}),
    ({"blue": 0, "green": 100}, {"blue": 0, "green": 100}),
])
def test_validate_weights_accepts_and_fills_missing_colors(weights, expected):
    assert validate_weights(weights) == expected


@pytest.mark.parametrize("weights", [None, {}, [("blue", 100)], "blue=100", 100])
def test_validate_weights_requires_a_mapping(weights):
    with pytest.raises(ValidationError, match="mapping of color to percentage"):
        validate_weights(weights)


@pytest.mark.parametrize("weights,fragment", [
    ({"blue": 101}, "is 101, outside 0 to 100"),
    ({"blue": 150, "green": -50}, "outside 0 to 100"),
    ({"blue": -1, "green": 101}, "outside 0 to 100"),
    ({"blue": 50, "green": 40}, "must sum to 100, these sum to 90"),
    ({"blue": 60, "green": 60}, "these sum to 120"),
    ({"blue": 0}, "these sum to 0"),
    ({"blue": True, "green": 99}, "whole number"),
    ({"blue": False, "green": 100}, "whole number"),
    ({"blue": "ninety", "green": 10}, "whole number"),
    ({"blue": 90.5, "green": 9.5}, "whole number"),
    ({"blue": None, "green": 100}, "whole number"),
    ({"red": 100}, "weight color 'red' is unknown"),
    ({"blue": 50, "purple": 50}, "unknown"),
])
def test_validate_weights_rejects(weights, fragment):
    with pytest.raises(ValidationError, match=fragment):
        validate_weights(weights)


def test_validate_weights_does_not_modify_its_argument():
    weights = {"green": 100}
    validate_weights(weights)
    assert weights == {"green": 100}


# --- absolute paths -----------------------------------------------------------------------


def test_validate_absolute_path_normalises():
    assert validate_absolute_path("/opt//leanvibe/./demo/", "base_dir") == "/opt/leanvibe/demo"


@pytest.mark.parametrize("path,fragment", [("relative/dir", "must be an absolute path"), ("", "must be an absolute path"),
                                           (None, "must be an absolute path"), ("/opt/../etc", "must not contain '..'"),
                                           ("/opt/demo/..", "must not contain '..'")])
def test_validate_absolute_path_rejects(path, fragment):
    with pytest.raises(ValidationError, match=fragment) as exc:
        validate_absolute_path(path, "base_dir")
    assert str(exc.value).startswith("base_dir must")


# --- plain paths --------------------------------------------------------------------------


@pytest.mark.parametrize("path,expected", [("/opt/leanvibe/demo", "/opt/leanvibe/demo"), ("/srv/app+1@host/x-y_z.2", "/srv/app+1@host/x-y_z.2"),
                                           ("/opt//demo/./x/", "/opt/demo/x"), ("/", "/")])
def test_validate_plain_path_accepts_and_normalises(path, expected):
    assert validate_plain_path(path, "base_dir") == expected


@pytest.mark.parametrize("path", ["/tmp/a b", "/tmp/x#y", "/tmp/x;y", "/tmp/100%", "/tmp/it's", '/tmp/"q"', "/tmp/back\\slash",
                                  "/tmp/x\ny", "/tmp/x\n", "/tmp/x\ry", "/tmp/a\tb", "/tmp/dé", "/tmp/a,b", "/tmp/a=b", "/tmp/$HOME",
                                  "/tmp/a:b", "/tmp/x*"])
def test_validate_plain_path_rejects_characters_config_files_cannot_hold(path):
    with pytest.raises(ValidationError) as exc:
        validate_plain_path(path, "base_dir")
    assert str(exc.value) == "base_dir %r may only contain letters, digits and . _ / + @ -." % path


@pytest.mark.parametrize("path,fragment", [("relative/dir", "base_dir must be an absolute path"), ("", "must be an absolute path"),
                                           (None, "must be an absolute path"), ("/opt/../etc", "base_dir must not contain '..'")])
def test_validate_plain_path_is_also_absolute_and_without_dotdot(path, fragment):
    with pytest.raises(ValidationError, match=fragment):
        validate_plain_path(path, "base_dir")


# --- files --------------------------------------------------------------------------------


def test_read_text_default_for_missing_file(tmp_path):
    marker = object()
    assert read_text(str(tmp_path / "missing"), marker) is marker
    assert read_text(str(tmp_path / "missing")) is None


def test_read_text_replaces_undecodable_bytes(tmp_path):
    target = tmp_path / "latin1.conf"
    target.write_bytes(b"caf\xe9 ok\n\xff\xfe\n")
    assert read_text(str(target)) == "caf\ufffd ok\n\ufffd\ufffd\n"


def test_read_text_keeps_line_endings(tmp_path):
    target = tmp_path / "crlf.conf"
    target.write_bytes(b"a\r\nb\rc\n")
    assert read_text(str(target)) == "a\r\nb\rc\n"


def test_atomic_write_is_byte_exact(tmp_path):
    target = tmp_path / "f"
    atomic_write(str(target), "a\r\nb\rc\nü\n")
    assert target.read_bytes() == "a\r\nb\rc\nü\n".encode("utf-8")


@pytest.mark.parametrize("data", [b"line 1\r\nline 2\r\n", b"mixed\nend\r\nold mac\rlast", b"\xc3\xbcnicode \xe2\x9c\x93\r\n", b""])
def test_read_then_restore_file_puts_back_the_same_bytes(tmp_path, data):
    target = tmp_path / "upstreams.conf"
    target.write_bytes(data)
    previous = read_text(str(target))
    target.write_bytes(b"changed by a failed run\n")
    restore_file(str(target), previous)
    assert target.read_bytes() == data


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_atomic_write_content_and_mode(tmp_path, mode):
    target = tmp_path / "file.conf"
    atomic_write(str(target), "line 1\nünïcode ✓\n", mode=mode)
    assert target.read_text(encoding="utf-8") == "line 1\nünïcode ✓\n"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert os.listdir(str(tmp_path)) == ["file.conf"]


def test_atomic_write_replaces_existing_and_keeps_no_temp_files(tmp_path):
    target = tmp_path / "weights"
    target.write_text("old\n")
    old_inode = target.stat().st_ino
    atomic_write(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert sorted(os.listdir(str(tmp_path))) == ["weights"]


def test_atomic_write_default_mode_is_0644(tmp_path):
    target = tmp_path / "f"
    atomic_write(str(target), "x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_failure_leaves_original_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "app.upstreams.conf"
    target.write_bytes(b"original content\n")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(str(target), "replacement\n")
    assert target.read_bytes() == b"original content\n"
    assert os.listdir(str(tmp_path)) == ["app.upstreams.conf"]


def test_atomic_write_failure_on_rename_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("{}\n")

    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(common.os, "replace", failing_replace)
    with pytest.raises(PermissionError):
        atomic_write(str(target), '{"new": 1}\n')
    assert target.read_text() == "{}\n"
    assert os.listdir(str(tmp_path)) == ["state.json"]


def test_atomic_write_into_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(str(tmp_path / "missing" / "f"), "x")
    assert not (tmp_path / "missing").exists()


def test_restore_file_puts_back_content(tmp_path):
    target = tmp_path / "f"
    target.write_text("changed\n")
    restore_file(str(target), "before\n")
    assert target.read_text() == "before\n"


def test_restore_file_removes_a_file_that_did_not_exist(tmp_path):
    target = tmp_path / "f"
    target.write_text("created by a failed change\n")
    restore_file(str(target), None)
    assert not target.exists()
    restore_file(str(target), None)  # and is a no-op when it is already gone
    assert not target.exists()


# --- release versions given by a user (the one pattern of the product) --------------------


@pytest.mark.parametrize("version, expected", [("1.0.0", "1.0.0"), ("2.0.0-rc.1", "2.0.0-rc.1"), ("v2_beta+7", "v2_beta+7"),
                                               (3, "3"), ("A" * 64, "A" * 64)])
def test_validate_release_version_accepts_text_and_whole_numbers(version, expected):
    assert common.validate_release_version(version) == expected


@pytest.mark.parametrize("version, shown", [
    ("../x", '"../x"'), ("", '""'), ("1.0 beta", '"1.0 beta"'), ("a/b", '"a/b"'), ("a\\b", '"a\\\\b"'), ("1..2", '"1..2"'),
    ("1.0\n", '"1.0\\n"'), (".hidden", '".hidden"'), ("-flag", '"-flag"'), ("A" * 65, '"%s"' % ("A" * 65)),
    (None, "null"), (True, "true"), (2.1, "2.1"), (["1.0"], '["1.0"]'), ({"v": 1}, '{"v": 1}'),
])
def test_validate_release_version_refuses_with_one_sentence_naming_the_input(version, shown):
    with pytest.raises(ValueError) as caught:
        common.validate_release_version(version, "app_version", "given (-e app_version=X) as")
    message = str(caught.value)
    assert message.startswith("app_version must be given (-e app_version=X) as letters, digits, '.', '_', '+' or '-'"), message
    assert "without path separators or spaces" in message
    assert message.endswith("(got %s)." % shown), message


def test_validate_release_version_without_a_hint():
    with pytest.raises(ValidationError) as caught:
        common.validate_release_version("a b", "target_version")
    assert str(caught.value).startswith("target_version must be letters, digits")


def test_validate_version_and_validate_release_version_share_the_pattern():
    assert common.VERSION_PATTERN == common._VERSION_RE.pattern
