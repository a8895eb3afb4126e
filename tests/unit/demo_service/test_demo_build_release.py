"""build_release.py: reproducible, well-formed artifacts and strict version validation."""

import gzip
import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from demo_service_helpers import DEMO_SERVICE_DIR

import build_release
from build_release import MTIME, build_release as build, release_files

SOURCE_FILES = sorted(p.relative_to(DEMO_SERVICE_DIR).as_posix() for p in (DEMO_SERVICE_DIR / "leanvibe_demo").glob("*.py"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_version_gives_the_same_bytes(tmp_path):
    first = build("1.2.3", tmp_path / "a")
    second = build("1.2.3", tmp_path / "b")
    assert first == (tmp_path / "a" / "leanvibe-demo-1.2.3.tar.gz").resolve()
    assert sha256(first) == sha256(second)
    rebuilt = build("1.2.3", tmp_path / "a")  # overwrite in place
    assert sha256(rebuilt) == sha256(second)
    assert sha256(build("1.2.4", tmp_path / "a")) != sha256(first)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["leanvibe-demo-1.2.3.tar.gz", "leanvibe-demo-1.2.4.tar.gz"]


def test_artifact_contents_and_metadata(tmp_path):
    artifact = build("2.0.0-rc.1+build7", tmp_path)
    raw = artifact.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0

    with tarfile.open(artifact) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert set(names) == {"VERSION", "requirements.txt", "leanvibe_demo", *SOURCE_FILES}
        for member in members:
            assert (member.uid, member.gid, member.mtime) == (0, 0, MTIME)
            assert member.mode == (0o755 if member.isdir() else 0o644)
            assert member.isdir() or member.isfile()
        assert tar.extractfile("VERSION").read() == b"2.0.0-rc.1+build7\n"
        assert tar.extractfile("requirements.txt").read() == (DEMO_SERVICE_DIR / "requirements.txt").read_bytes()
        assert tar.extractfile("leanvibe_demo/app.py").read() == (DEMO_SERVICE_DIR / "leanvibe_demo" / "app.py").read_bytes()
    assert gzip.decompress(raw)  # the stream is complete


def test_release_files_skip_pycache_and_non_python_files(tmp_path):
    (tmp_path / "leanvibe_demo" / "__pycache__").mkdir(parents=True)
    (tmp_path / "leanvibe_demo" / "__init__.py").write_text("")
    (tmp_path / "leanvibe_demo" / "__pycache__" / "x.py").write_text("")
    (tmp_path / "leanvibe_demo" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "leanvibe_demo" / "notes.txt").write_text("")
    (tmp_path / "requirements.txt").write_text("fastapi\n")
    assert sorted(release_files("1", tmp_path)) == ["VERSION", "leanvibe_demo/__init__.py", "requirements.txt"]


def test_cli_prints_the_path_and_defaults_to_run_artifacts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert build_release.main(["--version", "3.1"]) == 0
    expected = tmp_path / ".run" / "artifacts" / "leanvibe-demo-3.1.tar.gz"
    assert capsys.readouterr().out == f"{expected}\n"
    assert expected.is_file()
    assert [p.name for p in expected.parent.iterdir()] == [expected.name]  # no temporary file left behind


BAD_VERSIONS = ["", "../x", "a/b", "1 0", "..", "1..2", "-1", ".hidden", "x" * 65, "1.0\n", "1.0;rm", "v1\\2", "é1"]


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_bad_versions_are_rejected_and_nothing_is_written(tmp_path, capsys, version):
    output = tmp_path / "out"
    assert build_release.main(["--version", version, "--output-dir", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # The collection's sentence (plugins/module_utils/common.py), as the playbooks and the runner give it.
    assert captured.err.startswith("build_release: version must be letters, digits")
    assert captured.err.count("\n") == 1
    assert not output.exists()
    with pytest.raises(ValueError):
        build(version, output)


def test_longest_valid_version_is_accepted(tmp_path):
    version = "A" + "b" * 63
    assert build(version, tmp_path).name == f"leanvibe-demo-{version}.tar.gz"


def test_script_exit_status_for_a_bad_version(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DEMO_SERVICE_DIR / "build_release.py"), "--version", "../../etc", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("version, code", [("2.1.0-rc.1", 0), ("../x", 2), ("1..2", 2)])
def test_check_version_checks_without_building(tmp_path, capsys, monkeypatch, version, code):
    monkeypatch.chdir(tmp_path)
    assert build_release.main(["--check-version", "--version", version]) == code
    captured = capsys.readouterr()
    assert captured.out == ("%s\n" % version if code == 0 else "")
    assert list(tmp_path.iterdir()) == []
