"""Live progress of a run: rich in a terminal, plain timestamped lines anywhere else."""

from __future__ import annotations

import sys
import time
from typing import IO, Optional

from .events import RunEvent

STYLES = {"gate": None, "rollback": "bold yellow", "failure": "red", "lock_held": "bold red", "plan": "bold",
          "step": "cyan", "finished": "bold"}
# The end of a run is the CLI's summary, not a progress line.
SHOWN = ("started", "plan", "phase", "step", "probes", "analysis", "gate", "rollback", "failure", "lock_held")


class PlainProgress:
    """One line per event, for CI logs and pipes."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, event: RunEvent) -> None:
        if event.kind not in SHOWN:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        self.stream.write("%s %-9s %s\n" % (stamp, event.kind, event.message))
        self.stream.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A spinner with the current task, and a coloured line per step, gate, rollback and failure."""

    def __init__(self, stream: IO[str]):
        from rich.console import Console

        self.console = Console(file=stream, highlight=False)
        self.status = self.console.status("starting")
        self.status.start()

    def __call__(self, event: RunEvent) -> None:
        if event.kind == "task":
            self.status.update(event.message or "working")
            return
        if event.kind not in SHOWN:
            return
        style: Optional[str] = STYLES.get(event.kind)
        if event.kind == "gate":
            style = "green" if event.data.get("verdict") == "pass" else "bold red"
        if event.kind == "finished":
            style = "bold green" if event.data.get("exit_code") == 0 else "bold red"
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        self.console.print("[dim]%s[/dim] %s" % (stamp, _escape(event.message)), style=style)

    def close(self) -> None:
        self.status.stop()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def progress_for(stream: IO[str], quiet: bool = False):
    """The renderer that suits ``stream``; None when quiet."""
    if quiet:
        return None
    if stream.isatty() and sys.platform != "win32":
        return RichProgress(stream)
    return PlainProgress(stream)
