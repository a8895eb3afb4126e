# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors of the ledger and the deploy lock."""

from __future__ import annotations


class LedgerError(Exception):
    """The ledger cannot do what was asked; the message is one sentence for the user."""


class LockConflict(LedgerError):
    """Another run holds the deployment lock; `lock` is that lock (holder, acquired, heartbeat, stale_after_s)."""

    def __init__(self, message, lock):
        super().__init__(message)
        self.lock = lock
