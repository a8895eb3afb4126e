#!/usr/bin/env python3
"""Build the demo service release artifact: leanvibe-demo-<version>.tar.gz.

The archive root holds VERSION, requirements.txt and leanvibe_demo/ (.py files only). It is
byte-for-byte reproducible: rebuilding the same version from the same sources gives the same
sha256, so a deployment can tell a real change from a rebuild.
"""

import argparse
import gzip
import importlib.util
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Dict, Union

SOURCE_DIR = Path(__file__).resolve().parent
PACKAGE = "leanvibe_demo"
DEFAULT_OUTPUT_DIR = Path(".run/artifacts")
# The collection's own version rule (plugins/module_utils/common.py), loaded by path: it needs only the standard library.
COMMON_PY = SOURCE_DIR.parent / "plugins" / "module_utils" / "common.py"
# Fixed metadata: nothing about the build machine, the clock or the user may leak into the archive.
MTIME = 946684800  # 2000-01-01T00:00:00Z
FILE_MODE = 0o644
DIR_MODE = 0o755


def _collection_common():
    spec = importlib.util.spec_from_file_location("leanvibe_collection_common", COMMON_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate_version(version: str) -> str:
    """The version as the playbooks and the runner check it; ValueError with their sentence."""
    if not isinstance(version, str):
        raise ValueError(f"invalid version {version!r}: it must be text")
    try:
        return _collection_common().validate_release_version(version)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def release_files(version: str, source_dir: Path = SOURCE_DIR) -> Dict[str, bytes]:
    """Archive member name -> content, for every file of the release."""
    files = {
        "VERSION": f"{version}\n".encode("utf-8"),
        "requirements.txt": (source_dir / "requirements.txt").read_bytes(),
    }
    package_dir = source_dir / PACKAGE
    for path in package_dir.rglob("*.py"):
        relative = path.relative_to(source_dir)
        if "__pycache__" not in relative.parts:
            files[relative.as_posix()] = path.read_bytes()
    if f"{PACKAGE}/__init__.py" not in files:
        raise FileNotFoundError(f"{package_dir / '__init__.py'} is missing")
    return files


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = DIR_MODE if directory else FILE_MODE
    info.size = size
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_archive(files: Dict[str, bytes]) -> bytes:
    """Deterministic tar.gz of files, with an entry for each directory."""
    directories = {parent.as_posix() for name in files for parent in PurePosixPath(name).parents} - {"."}
    members = sorted([(name, None) for name in directories] + list(files.items()))
    buffer = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of the output name and the build time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, content in members:
                if content is None:
                    tar.addfile(_tar_info(name, directory=True))
                else:
                    tar.addfile(_tar_info(name, size=len(content)), io.BytesIO(content))
    return buffer.getvalue()


def _write_atomically(target: Path, data: bytes) -> None:
    # A reader never sees a half-written artifact: write a temporary file beside it, then rename.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        os.unlink(tmp_name)
        raise


def build_release(version: str, output_dir: Union[str, Path] = DEFAULT_OUTPUT_DIR) -> Path:
    """Build output_dir/leanvibe-demo-<version>.tar.gz and return its path; ValueError on a bad version."""
    validate_version(version)
    data = build_archive(release_files(version))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = (output_dir / f"leanvibe-demo-{version}.tar.gz").resolve()
    _write_atomically(target, data)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the reproducible release artifact of the LeanVibe demo service.")
    parser.add_argument("--version", required=True, help="release version, e.g. 1.4.0 (written to VERSION in the artifact)")
    parser.add_argument("--output-dir", default=str(DEFAULT_OUTPUT_DIR), help="where to write the artifact (default: %(default)s)")
    parser.add_argument("--check-version", action="store_true",
                        help="only check the version, as the playbooks do, and print it (CI uses it before building)")
    args = parser.parse_args(argv)
    try:
        if args.check_version:
            print(validate_version(args.version))
            return 0
        path = build_release(args.version, args.output_dir)
    except ValueError as exc:
        print(f"build_release: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"build_release: cannot build the artifact: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
