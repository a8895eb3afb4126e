# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation and file helpers shared by every leanvibe.deploy module.

Validation runs before anything touches a file, a path or a command, so a
bad argument fails with one sentence and leaves the host exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

COLORS = ("blue", "green")

# The release version pattern of the whole product (playbooks, roles and the runner call the validators below).
# fullmatch everywhere: `$` would also accept a trailing newline.
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}"
_VERSION_RE = re.compile(VERSION_PATTERN)
_APP_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SERVER_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9]{1,5})")
_PLAIN_PATH_RE = re.compile(r"/[A-Za-z0-9._/+@-]*")


class ValidationError(ValueError):
    """An argument that must not reach the system; its message is the sentence shown to the user."""


def validate_version(version):
    if version is None or str(version).strip() == "":
        raise ValidationError("version must not be empty.")
    version = str(version)
    if "/" in version or "\\" in version or ".." in version or any(c.isspace() for c in version):
        raise ValidationError("version %r must not contain path separators, '..' or spaces." % version)
    if not _VERSION_RE.fullmatch(version):
        raise ValidationError(
            "version %r is not valid: use letters, digits, '.', '_', '+' or '-', starting with a letter or digit, at most 64 characters." % version)
    return version


def validate_release_version(value, what="version", how=""):
    """A release version given by a user (-e, a survey): text or a whole number, nothing YAML turned into something else.

    `what` names the input in the sentence, `how` says how to give it (e.g. "given (-e app_version=X) as").
    """
    # null, true or 2.10 would deploy "None", "True" or "2.1".
    # '..' is refused too, as the ledger refuses it (validate_version).
    if (isinstance(value, bool) or not isinstance(value, (str, int)) or not _VERSION_RE.fullmatch(str(value))
            or ".." in str(value)):
        raise ValidationError(
            "%s must be %sletters, digits, '.', '_', '+' or '-' (1 to 64, starting with a letter or digit, no '..'), without"
            " path separators or spaces (got %s)." % (what, how.strip() + " " if how.strip() else "", json.dumps(value, default=str)))
    return str(value)


def validate_color(color, what="slot"):
    if color not in COLORS:
        raise ValidationError("%s %r is unknown: it must be one of %s." % (what, color, ", ".join(COLORS)))
    return color


def other_color(color):
    return COLORS[1] if color == COLORS[0] else COLORS[0]


def validate_app_name(app):
    if not app or not _APP_RE.fullmatch(str(app)):
        raise ValidationError(
            "app %r is not valid: use lower-case letters, digits and '_', starting with a letter, at most 32 characters." % (app,))
    return app


def validate_port(port, what="port"):
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise ValidationError("%s %r is not a number." % (what, port))
    if not 1 <= value <= 65535:
        raise ValidationError("%s %d is outside 1 to 65535." % (what, value))
    return value


def validate_server(server):
    """A `host:port` upstream address (IPv6 in brackets)."""
    match = _SERVER_RE.fullmatch(str(server))
    if not match:
        raise ValidationError("upstream server %r is not of the form host:port." % (server,))
    validate_port(match.group(1), "port of upstream server %r" % (server,))
    return str(server)


def validate_weights(weights):
    """Percentages per color, integers from 0 to 100 that sum to 100."""
    if not isinstance(weights, dict) or not weights:
        raise ValidationError("weights must be a mapping of color to percentage, for example {blue: 90, green: 10}.")
    clean = {}
    for color, weight in weights.items():
        validate_color(color, "weight color")
        if isinstance(weight, bool):
            raise ValidationError("weight of %s must be a whole number from 0 to 100, not %r." % (color, weight))
        try:
            value = int(str(weight))
        except ValueError:
            raise ValidationError("weight of %s must be a whole number from 0 to 100, not %r." % (color, weight))
        if not 0 <= value <= 100:
            raise ValidationError("weight of %s is %d, outside 0 to 100." % (color, value))
        clean[color] = value
    for color in COLORS:
        clean.setdefault(color, 0)
    total = sum(clean.values())
    if total != 100:
        raise ValidationError("weights must sum to 100, these sum to %d." % total)
    return clean


def validate_absolute_path(path, what):
    if not path or not os.path.isabs(str(path)):
        raise ValidationError("%s must be an absolute path, not %r." % (what, path))
    if any(part == ".." for part in str(path).split(os.sep)):
        raise ValidationError("%s must not contain '..': %r." % (what, path))
    return os.path.normpath(str(path))


def is_plain_path(path):
    """Absolute, of letters, digits and . _ / + @ - only: safe in config files that have no quoting."""
    return bool(_PLAIN_PATH_RE.fullmatch(str(path)))


def validate_plain_path(path, what):
    path = validate_absolute_path(path, what)
    if not is_plain_path(path):
        raise ValidationError("%s %r may only contain letters, digits and . _ / + @ -." % (what, path))
    return path


def read_text(path, default=None):
    """The file's text, or `default` when it does not exist. Undecodable bytes become U+FFFD, never an exception."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return default


def atomic_write(path, content, mode=0o644):
    """Write through a temp file in the same folder, fsync, then rename over the target."""
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def restore_file(path, previous):
    """Put back what `read_text` returned before a change: the old content, or no file."""
    if previous is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        atomic_write(path, previous)
