"""The collection's own Python (plugins/module_utils), so that the runner checks input with the same code as the modules.

Found, in this order: where Python already finds ``ansible_collections.leanvibe.deploy``; the checkout or installed
collection this package sits in (python_runner/ ships inside the collection); $ANSIBLE_COLLECTIONS_PATH and
Ansible's default collection folders.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from .codes import UsageError

MODULE_UTILS = "ansible_collections.leanvibe.deploy.plugins.module_utils"
DEFAULT_COLLECTIONS_PATHS = ("~/.ansible/collections", "/usr/share/ansible/collections")


def _search_paths() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    paths = [root / ".collections"]  # a checkout: `make setup` links it there
    if root.parent.name == "leanvibe" and root.parent.parent.name == "ansible_collections":
        paths.append(root.parents[2])  # an installed collection
    configured = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS") or ""
    paths.extend(Path(os.path.expanduser(path)) for path in configured.split(os.pathsep) if path)
    paths.extend(Path(os.path.expanduser(path)) for path in DEFAULT_COLLECTIONS_PATHS)
    return paths


def module_utils(name: str) -> ModuleType:
    """plugins/module_utils/<name>.py of leanvibe.deploy; UsageError when the collection cannot be found."""
    try:
        return importlib.import_module("%s.%s" % (MODULE_UTILS, name))
    except ImportError:
        pass
    for path in _search_paths():
        if (path / "ansible_collections" / "leanvibe" / "deploy" / "plugins").is_dir() and str(path) not in sys.path:
            sys.path.append(str(path))
            importlib.invalidate_caches()
            try:
                return importlib.import_module("%s.%s" % (MODULE_UTILS, name))
            except ImportError:
                continue
    raise UsageError("cannot import %s.%s: install the leanvibe.deploy collection or set ANSIBLE_COLLECTIONS_PATH"
                     % (MODULE_UTILS, name))


def probe_modes() -> tuple[str, ...]:
    """The probe engine's modes (module_utils/probes.py MODES), the one table of them."""
    return tuple(module_utils("probes").MODES)
