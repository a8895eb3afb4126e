"""Checks of everything a caller hands over, before anything starts (UsageError, exit code 2)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .codes import UsageError
from .collection import module_utils

# Variables the runner sets from its own options; -e must not set them behind its back.
RESERVED_VARS = ("app_version", "canary_steps", "canary_abort_file", "target_version", "emergency", "rollback_reason",
                 "probe_mode", "history_limit")


def check_version(version: Any, what: str = "version") -> str:
    """A release version, checked by the collection's own validator (module_utils/common.py), as the playbooks do."""
    try:
        return module_utils("common").validate_release_version(version, what)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_steps(steps: Any) -> list[Any]:
    """Canary steps from "10,25,50,100" or a list of percentages or step mappings, checked by the collection's own
    steps validator (module_utils/plan.py parse_steps), as rollout_plan does. Text becomes a list of percentages; a
    list goes to the playbook as given, so that the steps' own settings and the -e defaults still apply there."""
    try:
        parsed = module_utils("plan").parse_steps(steps, what="steps")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(steps, str):
        return [step["weight"] for step in parsed]
    return list(steps)


def resolve_inventory(inventory: Any, project_dir: Path) -> Path:
    """An inventory path, or the name of one under <project>/inventories (``-i staging``)."""
    if not inventory or not str(inventory).strip():
        raise UsageError("an inventory is required (-i inventories/<environment>)")
    given = Path(os.path.expanduser(str(inventory)))
    for candidate in (given, project_dir / given, project_dir / "inventories" / given):
        if candidate.exists():
            if not os.access(candidate, os.R_OK):
                raise UsageError("inventory %s is not readable" % candidate)
            return candidate.resolve()
    raise UsageError("inventory %s not found (neither a path nor one of %s)" % (
        inventory, ", ".join(sorted(p.name for p in (project_dir / "inventories").iterdir() if p.is_dir()))
        if (project_dir / "inventories").is_dir() else "the project's inventories"))


def _load_vars_file(path: str) -> Mapping[str, Any]:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise UsageError("extra vars file %s cannot be read: %s" % (path, exc.strerror or exc)) from None
    except yaml.YAMLError as exc:
        raise UsageError("extra vars file %s is not YAML or JSON: %s" % (path, str(exc).splitlines()[0])) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError("extra vars file %s must hold a mapping of variables" % path)
    return data


def _parse_key_values(text: str) -> dict[str, Any]:
    from ansible.parsing.splitter import parse_kv  # same rules as ansible-playbook -e

    try:
        pairs = parse_kv(text)
    except Exception as exc:  # ansible raises several error types for bad quoting
        raise UsageError("extra vars %r cannot be parsed: %s" % (text, exc)) from None
    if "_raw_params" in pairs or not pairs:
        raise UsageError("extra vars %r must be KEY=VALUE pairs, @FILE or a JSON object" % text)
    return pairs


def parse_extra_vars(values: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, Any]:
    """-e values (KEY=VALUE, @FILE, JSON/YAML object) or a mapping, merged left to right like ansible-playbook."""
    if values is None:
        return {}
    if isinstance(values, Mapping):
        merged = dict(values)
    else:
        merged = {}
        for value in values:
            if isinstance(value, Mapping):
                merged.update(value)
                continue
            text = str(value).strip()
            if text.startswith("@"):
                merged.update(_load_vars_file(text[1:]))
            elif text.startswith("{"):
                try:
                    data = json.loads(text)
                except ValueError:
                    try:
                        data = yaml.safe_load(text)
                    except yaml.YAMLError:
                        raise UsageError("extra vars %r are neither JSON nor YAML" % text) from None
                if not isinstance(data, dict):
                    raise UsageError("extra vars %r must be an object" % text)
                merged.update(data)
            else:
                merged.update(_parse_key_values(text))
    for key in merged:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError("extra var name %r is not a valid variable name" % (key,))
    reserved = sorted(set(merged) & set(RESERVED_VARS))
    if reserved:
        raise UsageError("set %s with the command's own options (--version, --steps, --emergency, --reason, --mode,"
                         " --limit), not with -e"
                         % ", ".join(reserved))
    return merged
