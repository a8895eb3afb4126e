# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger file: read-modify-write under flock, written atomically.

Every change is a read-modify-write under an exclusive ``fcntl.flock`` on ``<path>.lock``, written atomically (temp
file in the same folder, fsync, rename, fsync of the folder) with mode 0640; readers take a shared lock. A corrupt
ledger is refused with one sentence and never overwritten.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import os
import time

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import ValidationError, atomic_write, validate_app_name
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_document import check_document, empty_ledger, render, validate_environment
from ansible_collections.leanvibe.deploy.plugins.module_utils.ledger_errors import LedgerError

LOCK_WAIT_S = 30.0
FILE_MODE = 0o640


def validate_ledger_path(path):
    if not path or not os.path.isabs(str(path)):
        raise ValidationError("ledger path must be absolute, not %r." % (path,))
    if any(part == ".." for part in str(path).split(os.sep)):
        raise ValidationError("ledger path must not contain '..': %r." % (path,))
    path = os.path.normpath(str(path))
    if os.path.isdir(path):
        raise ValidationError("ledger path %s is a folder; give the path of the ledger file." % path)
    return path


def folder_is_read_only(folder):
    """Whether `folder` sits on a file system mounted read-only (then no permission would help)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


class Ledger:
    """The ledger file of one app in one environment, with its flock file `<path>.lock`."""

    def __init__(self, path, app, environment, lock_wait_s=LOCK_WAIT_S):
        self.path = validate_ledger_path(path)
        self.app = validate_app_name(app)
        self.environment = validate_environment(environment)
        self.lock_path = self.path + ".lock"
        self.lock_wait_s = lock_wait_s

    @property
    def folder(self):
        return os.path.dirname(self.path)

    def exists(self):
        return os.path.exists(self.path)

    def empty(self):
        return empty_ledger(self.app, self.environment)

    def check_folder(self, write):
        if not os.path.isdir(self.folder):
            raise LedgerError("folder %s of ledger %s does not exist; create it first (playbooks/site.yml does)."
                              % (self.folder, self.path))
        if write and not os.access(self.folder, os.W_OK | os.X_OK):
            if folder_is_read_only(self.folder):
                raise LedgerError("folder %s of ledger %s is on a read-only file system, so the ledger cannot be written."
                                  % (self.folder, self.path))
            raise LedgerError("folder %s of ledger %s is not writable by this user." % (self.folder, self.path))

    def corrupt(self, detail):
        return LedgerError("ledger %s is corrupt (%s); fix it or move it away." % (self.path, detail))

    def _load(self):
        """The document on disk (validated), or None when there is no file."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError("could not read ledger %s: %s." % (self.path, exc.strerror or exc))
        try:
            doc = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise self.corrupt("not UTF-8")
        except ValueError as exc:
            raise self.corrupt("not JSON: %s" % exc)
        try:
            check_document(doc)
        except ValueError as exc:
            raise self.corrupt(str(exc))
        if doc["app"] != self.app or doc["environment"] != self.environment:
            raise LedgerError("ledger %s belongs to app %s in %s, not to %s in %s; use the ledger of this app."
                              % (self.path, doc["app"], doc["environment"], self.app, self.environment))
        return doc

    @contextlib.contextmanager
    def _flock(self, exclusive):
        """Hold flock on `<path>.lock`: exclusive for writers (the file is created), shared for readers.

        A reader finds no lock file when no writer ever ran; the rename makes a read without it safe anyway.
        """
        fd = None
        try:
            if exclusive:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            else:
                fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError as exc:
            if exclusive:
                raise LedgerError("could not open the lock file %s: %s." % (self.lock_path, exc.strerror or exc))
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
                raise LedgerError("could not open the lock file %s: %s." % (self.lock_path, exc.strerror or exc))
        if fd is None:
            yield
            return
        try:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            deadline = time.monotonic() + self.lock_wait_s
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise LedgerError("could not lock %s: %s." % (self.lock_path, exc.strerror or exc))
                    if time.monotonic() >= deadline:
                        raise LedgerError("could not lock ledger %s within %g s: another task keeps %s locked."
                                          % (self.path, self.lock_wait_s, self.lock_path))
                    time.sleep(0.002)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def read(self):
        """The ledger (an empty one when there is no file yet), under a shared lock."""
        self.check_folder(write=False)
        with self._flock(exclusive=False):
            doc = self._load()
        return doc if doc is not None else self.empty()

    def update(self, change, check_mode=False):
        """Read-modify-write: `change(doc)` edits the document and returns a result.

        Returns (before, after, result, written); `before` is None when there was no file. Nothing is written in
        check mode, when `change` raises, or when the document is the same.
        """
        self.check_folder(write=not check_mode)
        if check_mode:
            with self._flock(exclusive=False):
                current = self._load()
            doc = copy.deepcopy(current) if current is not None else self.empty()
            result = change(doc)
            return current, doc, result, False
        with self._flock(exclusive=True):
            current = self._load()
            doc = copy.deepcopy(current) if current is not None else self.empty()
            result = change(doc)
            written = doc != (current if current is not None else self.empty())
            if written:
                try:
                    # Never write what the next read would refuse as corrupt.
                    check_document(doc)
                except ValueError as exc:
                    raise LedgerError("ledger %s was not written: the change would make it invalid (%s)." % (self.path, exc))
                try:
                    atomic_write(self.path, render(doc), mode=FILE_MODE)
                except OSError as exc:
                    raise LedgerError("could not write ledger %s: %s." % (self.path, exc.strerror or exc))
        return current, doc, result, written
