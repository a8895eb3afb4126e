"""Exit codes of every leanvibe-deploy subcommand (and RunResult.exit_code)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    """Success: promoted, switched, rolled back on request, probes passed, status read, report made."""
    FAILED_CLEAN = 1
    """The deployment failed and traffic is on the stable release: rolled back cleanly, or it never moved."""
    USAGE = 2
    """A usage or configuration error; nothing was started."""
    NEEDS_HUMAN = 3
    """Failed, and the rollback failed or the state is unknown (a report whose ledger cannot be read): a human is needed."""
    LOCKED = 4
    """Another deployment holds the deploy lock."""


class UsageError(ValueError):
    """Bad arguments or configuration, found before anything started (exit code 2)."""
