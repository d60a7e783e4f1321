"""Whether the launcher running a trial of a shared study is still there, so that another can take it over.

A launcher stamps each trial it takes with itself (`launcher`: host, pid, the process's start time,
when it took it) and, while the trial runs, touches the trial's trial.json every few seconds. Another
launcher counts it gone:

- on the same host: when that process (pid and start time, so a reused pid is not mistaken for it) has
  ended and so has the trial's own process (trials.trial_state), which ends with it (SIGTERM on its
  parent's death) after saving a checkpoint to continue from;
- on another host, with the journal: when neither the stamp nor trial.json has changed for
  `stale_after` seconds (clocks within a few seconds of each other, as NTP keeps them). With a
  database, Optuna's heartbeat decides that instead (storage.py);
- a trial without a stamp (taken by a launcher that died at once, or by one before this file existed):
  when it has been running for `stale_after` seconds.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mlplab.run.records import RUNNING, process_alive
from mlplab.tools.sweep.trials import TRIAL_FILE, trial_state

STAMP = "launcher"  # the Optuna trial's user attribute naming the launcher that runs it


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat), None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])


def this_launcher() -> dict[str, Any]:
    """The stamp of this launcher, put on each trial it takes."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()), "taken": time.time()}


def is_this_launcher(stamp: Any) -> bool:
    return (isinstance(stamp, dict) and stamp.get("host") == socket.gethostname() and stamp.get("pid") == os.getpid()
            and stamp.get("start") == process_start(os.getpid()))


def launcher_alive(stamp: dict[str, Any]) -> bool:
    pid = stamp.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = process_start(pid)
    if start is None and not Path("/proc/self/stat").exists():  # no /proc (off Linux): the pid alone
        return process_alive(pid)
    return start is not None and start == stamp.get("start")


def last_sign_of_life(stamp: dict[str, Any], trial_dir: Path) -> float:
    try:
        touched = (trial_dir / TRIAL_FILE).stat().st_mtime
    except OSError:
        touched = 0.0
    taken = stamp.get("taken")
    return max(touched, taken if isinstance(taken, (int, float)) else 0.0)


def launcher_gone(stamp: Any, started: datetime | None, trial_dir: Path, stale_after: float,
                  other_hosts_by_files: bool) -> bool:
    """Whether the launcher that runs this trial is gone (see the module's docstring)."""
    if not isinstance(stamp, dict):
        # Optuna's datetime_start is local time without a zone.
        return started is None or (datetime.now() - started).total_seconds() > stale_after
    if stamp.get("host") == socket.gethostname():
        return not launcher_alive(stamp) and trial_state(trial_dir) != RUNNING
    if not other_hosts_by_files:
        return False
    return time.time() - last_sign_of_life(stamp, trial_dir) > stale_after


def show_signs_of_life(trial_dirs: list[Path]) -> None:
    """Touch each running trial's trial.json, which launchers on other hosts watch."""
    for trial_dir in trial_dirs:
        try:
            os.utime(trial_dir / TRIAL_FILE)
        except OSError:
            pass  # not written yet, or the disk is gone: the run loop reports what matters
