"""Start-up configuration: environment variables and the release VERSION file."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

DEV_VERSION = "0.0.0+dev"
API_PREFIX = "/api/v1"
# The release root is the directory that holds the leanvibe_demo package (and VERSION).
RELEASE_ROOT = Path(__file__).resolve().parent.parent


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


class ConfigError(ValueError):
    """Bad start-up configuration: the process must refuse to start."""


def read_version(release_root: Path = RELEASE_ROOT) -> str:
    """Return the release version, or DEV_VERSION when running from a checkout."""
    try:
        version = (release_root / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return DEV_VERSION
    if not version:
        log.warning("%s is empty; reporting version %s", release_root / "VERSION", DEV_VERSION)
        return DEV_VERSION
    return version


@dataclass(frozen=True)
class Settings:
    api_key: str
    data_dir: Path
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        return cls(
            api_key=environ.get("LEANVIBE_API_KEY", ""),
            # Relative to the working directory, as documented; resolved once so a later chdir cannot move it.
            data_dir=Path(environ.get("LEANVIBE_DATA_DIR") or "data").resolve(),
            database_url=environ.get("DATABASE_URL", "").strip(),
            redis_url=environ.get("REDIS_URL", "").strip(),
        )
