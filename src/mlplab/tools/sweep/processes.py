"""Child processes that end with the launcher: each in its own session (process group), told to
receive SIGTERM when the launcher dies, and ended group by group (SIGTERM, a grace period, SIGKILL)
when the launcher is stopped by SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from mlplab.run.cli import STOP_SIGNALS  # the signals a run stops at are the ones the launcher stops at

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send the child SIGTERM when its parent dies; None elsewhere.

    The signal fires when the *thread* that forked the child ends, so the launcher starts every
    child from its main thread. prctl is looked up here, before the fork, so the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def start_process(command: list[str], env: dict[str, str], cwd: Path, log: IO) -> subprocess.Popen:
    """Start `command` (a list: no shell) in a new session with its output in `log`."""
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=parent_death_signal())


def signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP are recorded instead of ending the launcher at once."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)

    @property
    def stopping(self) -> bool:
        return bool(self.received)

    def exit_code(self) -> int | None:
        """128+N for the first signal N, as a shell reports a process ended by it."""
        return 128 + self.received[0] if self.received else None


def end_groups(processes: Iterable[subprocess.Popen], grace: float, stop: StopSignals) -> None:
    """SIGTERM each process group; SIGKILL what is left after `grace` seconds or at a further signal.

    The SIGKILL goes to every group, also of a leader that exited, to reach what it left behind
    (data loader workers).
    """
    processes = list(processes)
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline, signals_seen = time.monotonic() + grace, len(stop.received)
    while any(process.poll() is None for process in processes):
        if time.monotonic() > deadline or len(stop.received) > signals_seen:
            break
        time.sleep(0.1)
    for process in processes:
        signal_group(process.pid, signal.SIGKILL)
    for process in processes:
        process.wait()
